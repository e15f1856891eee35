"""Where does the factored strategy overtake dense GEMMs? Forward + backward of one layer per
strategy and qubit count; writes experiments/results/bench_strategy_<device>.{json,md}.

    python experiments/bench_strategy.py --device cuda
"""

import argparse
import json
import logging

from simulator_bench import strategy_sweep
from study_io import write_results


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--qubits", type=int, nargs="+", default=list(range(2, 13)))
    ap.add_argument("--batches", type=int, nargs="+", default=[1024, 65536])
    ap.add_argument("--chunks", type=int, nargs="+", default=[0], help="0 = halves (default chunking)")
    ap.add_argument("--out", default="experiments/results")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    chunks = tuple(None if c == 0 else c for c in args.chunks)
    res = strategy_sweep(args.qubits, args.batches, args.device, chunks)
    m = res["machine"]
    lines = [f"### {m.get('cuda_device') or m['cpu']} ({m['torch_threads']} threads) — {m['date']}", "",
             "| batch | qubits | strategy | chunk | ms (fwd+bwd, one layer) |", "|---:|---:|---|---|---:|"]
    for r in res["rows"]:
        val = f"{r['ms']:.3f}" if "ms" in r else r["error"]
        lines.append(f"| {r['batch']} | {r['qubits']} | {r['strategy']} | {'-' if r['strategy'] == 'dense' else r['chunk'] or 'halves'} | {val} |")
    write_results(args.out, f"bench_strategy_{m['device'].split(':')[0]}", "\n".join(lines), res)
    print("\n".join(lines))
    print(json.dumps({"rows": len(res["rows"])}))


if __name__ == "__main__":
    main()
