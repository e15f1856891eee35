"""The package layout: subpackage mapping is complete and `import qlite` stays light."""

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_package_folder_is_listed_in_pyproject():
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(cfg["packages"])
    found = set()
    for top, name in (("qlite", "qlite"), ("simulators", "qlite.simulators"), ("classical", "qlite.classical")):
        for init in (ROOT / top).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / top).parts
            found.add(".".join((name, *rel)))
    assert found <= listed, f"add these to [tool.setuptools].packages: {sorted(found - listed)}"


def test_import_qlite_does_not_import_heavy_optional_packages():
    code = (
        "import sys, qlite, qlite.simulators, qlite.classical; "
        "heavy = [m for m in ('pennylane', 'qiskit', 'jax', 'transformers', 'matplotlib') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"importing qlite pulled in: {out.stdout.strip()}"
