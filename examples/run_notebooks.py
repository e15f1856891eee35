"""Execute the example notebooks in a real Jupyter kernel (nbclient + ipykernel).

    python examples/run_notebooks.py                       # all, quick mode, outputs discarded
    python examples/run_notebooks.py 01 --full --out runs/nb   # full mode, executed copies kept

The notebooks in git carry no outputs (tests/examples/test_notebooks.py checks it); executed
copies go to ``--out``. A failing cell stops the run with that cell's source and error.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def notebooks(selection=()) -> list[Path]:
    """The example notebooks, optionally those whose name starts with one of ``selection``."""
    found = sorted(HERE.glob("[0-9][0-9]_*.ipynb"))
    if selection:
        found = [p for p in found if any(p.name.startswith(s) for s in selection)]
    return found


def execute(path: Path, *, quick: bool = True, timeout: int = 600, env: dict | None = None, prepend: str | None = None):
    """Run ``path`` top to bottom in a fresh ``python3`` kernel started from this interpreter, in the
    notebook's folder; returns ``(executed notebook, seconds)``. ``prepend``: code run first (tests
    use it to hide a package). Raises ``nbclient.exceptions.CellExecutionError`` on a failing cell."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    if prepend:
        nb.cells.insert(0, nbformat.v4.new_code_cell(prepend))
    kernel_env = {**os.environ, **(env or {}), "QLITE_QUICK": "1" if quick else "0"}
    kernel_env.setdefault("OMP_NUM_THREADS", "1")  # two threads on a shared 2-core machine are slower
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
    t0 = time.perf_counter()
    # the kernel inherits the environment of the process that starts it
    old = os.environ.copy()
    os.environ.update(kernel_env)
    try:
        client.execute()
    finally:
        os.environ.clear()
        os.environ.update(old)
    return nb, time.perf_counter() - t0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("names", nargs="*", help="notebook name prefixes (default: all)")
    p.add_argument("--full", action="store_true", help="full mode instead of quick mode")
    p.add_argument("--out", type=Path, help="folder for the executed copies")
    args = p.parse_args(argv)
    import nbformat

    for path in notebooks(args.names):
        nb, seconds = execute(path, quick=not args.full)
        print(f"{path.name}: {seconds:.1f} s ({'full' if args.full else 'quick'} mode)", flush=True)
        if args.out:
            args.out.mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, args.out / path.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
