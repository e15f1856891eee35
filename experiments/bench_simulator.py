"""Time a full QIREN training step with qlite and with PennyLane; write the table to experiments/results.

    python experiments/bench_simulator.py --quick                 # a minute on a laptop CPU
    python experiments/bench_simulator.py --device cuda           # the full study on a GPU
"""

import argparse
import json
import logging

from simulator_bench import run, to_markdown
from study_io import write_results


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--quick", action="store_true", help="small sizes and few repeats")
    ap.add_argument("--points", type=int, nargs="+", default=None)
    ap.add_argument("--qubits", type=int, nargs="+", default=None)
    ap.add_argument("--qubit-points", type=int, default=None)
    ap.add_argument("--strategies", nargs="+", default=["auto"])
    ap.add_argument("--no-pennylane", action="store_true")
    ap.add_argument("--pennylane-max-points", type=int, default=None,
                    help="largest batch given a PennyLane row (default: all on a GPU, 16384 on a CPU, where "
                         "default.qubit's backprop of 65,536 points was OOM-killed on a 24 GiB machine)")
    ap.add_argument("--backends", nargs="*", default=None,
                    help="simulator backends given one row each (default: torch pennylane jax qiskit; none with --quick)")
    ap.add_argument("--backend-points", type=int, nargs="+", default=[1024])
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--out", default="experiments/results")
    ap.add_argument("--tag", default=None, help="file name suffix (default: the device type)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("qiskit").setLevel(logging.WARNING)  # its transpiler logs every pass at INFO
    quick = args.quick
    result = run(
        points=args.points or ((256, 1024) if quick else (1024, 16384, 65536)),
        qubits=args.qubits or ((4, 6) if quick else (4, 6, 10, 12, 14)),
        qubit_points=args.qubit_points or (1024 if quick else 65536),
        device=args.device,
        pennylane=not args.no_pennylane,
        pennylane_max_points=args.pennylane_max_points or (None if args.device.startswith("cuda") else 16384),
        repeats=args.repeats or (3 if quick else 7),
        strategies=tuple(args.strategies),
        backends=tuple(args.backends if args.backends is not None else (() if quick else ("torch", "pennylane", "jax", "qiskit"))),
        backend_points=tuple(args.backend_points),
    )
    tag = args.tag or ("quick_" if quick else "") + result["machine"]["device"].split(":")[0]
    md = to_markdown(result)
    path = write_results(args.out, f"bench_simulator_{tag}", md, result)
    print(md)
    print(json.dumps({"rows": len(result["rows"]), "out": str(path)}))


if __name__ == "__main__":
    main()
