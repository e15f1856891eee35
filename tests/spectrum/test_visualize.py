"""Plot functions draw on the given axes and return them; bad shapes raise."""

import pytest
import torch

from qlite import HybridLayer
from qlite.spectrum import compare_spectra, model_spectrum, power_spectrum, visualize

plt = pytest.importorskip("matplotlib.pyplot")


@pytest.fixture(autouse=True)
def _agg():
    import matplotlib

    matplotlib.use("Agg")
    yield
    plt.close("all")


@pytest.mark.parametrize("kind", ["violin", "box", "bar"])
def test_coefficient_distributions(kind):
    coeffs = torch.randn(10, 5, 3, dtype=torch.complex128, generator=torch.Generator().manual_seed(0))
    fig, ax = plt.subplots(1, 2)
    out = visualize.coefficient_distribution(coeffs, 2, ax, kind)
    assert out is ax
    labels = [t.get_text() for t in ax[0].get_xticklabels()]
    assert len(labels) == 15 and labels[0] == "(-2,-1)" and labels[7] == "(0,0)"
    # a one-output model's coefficients, (2d + 1, 1), are one set on a 1-input grid, not 7 sets of one point
    fig, ax = plt.subplots(1, 2)
    visualize.coefficient_distribution(torch.randn(7, 1, dtype=torch.complex128), 1, ax, kind)
    assert len(ax[0].get_xticklabels()) == 7


def test_radial_box_and_errors():
    coeffs = [torch.randn(5, dtype=torch.complex128) for _ in range(6)]
    fig, ax = plt.subplots(1, 2, subplot_kw={"polar": True})
    assert visualize.radial_box(coeffs, 1, ax) is ax
    fig, flat = plt.subplots(1, 2)
    with pytest.raises(ValueError, match="polar axes"):
        visualize.radial_box(coeffs, 1, flat)
    with pytest.raises(ValueError, match="odd length"):
        visualize.violin(torch.zeros(3, 4, dtype=torch.complex128), 1, flat)
    with pytest.raises(ValueError, match="two axes"):
        visualize.box(torch.zeros(5, dtype=torch.complex128), 1, flat[0])
    with pytest.raises(ValueError, match="unknown kind"):
        visualize.coefficient_distribution(torch.zeros(5), 1, flat, "pie")
    with pytest.raises(ValueError, match="2-input function"):
        visualize.bar(torch.zeros(5, dtype=torch.complex128), 2, flat)


def test_spectrum_views():
    v = torch.randn(16, 16, dtype=torch.float64)
    fig, ax = plt.subplots(2, 3)
    assert visualize.spectrum_image(power_spectrum(v, spacing=2 / 15), ax[0, 0]) is ax[0, 0]
    spec = model_spectrum(HybridLayer(2, 3, 1).eval())
    assert visualize.frequency_scatter(spec, ax[0, 1]) is ax[0, 1]
    assert visualize.frequency_scatter(model_spectrum(HybridLayer(1, 2, 1).eval()), ax[0, 2]) is ax[0, 2]
    rows = [dict(family="QIREN", parameters=100, size=125, enumerated=True),
            dict(family="SIREN", parameters=300, size=33, enumerated=True)]
    assert visualize.size_vs_parameters(rows, ax[1, 0]) is ax[1, 0]
    cmp = {"a": compare_spectra(v, v * 0.5), "b": compare_spectra(v, v * 0.9)}
    assert visualize.radial_profile(cmp, ax[1, 1]) is ax[1, 1]
    assert visualize.error_split(cmp, ax[1, 2]) is ax[1, 2]
    with pytest.raises(ValueError, match="2-D power spectrum"):
        visualize.spectrum_image(torch.zeros(4), ax[0, 0])


def test_frequency_scatter_subsamples_symmetrically():
    spec = model_spectrum(HybridLayer(2, 6, 1).eval())  # 729 sorted vectors
    fig, ax = plt.subplots()
    visualize.frequency_scatter(spec, ax, max_points=100)
    pts = ax.collections[0].get_offsets()
    assert len(pts) == 100
    assert pts[:, 1].min() < 0 < pts[:, 1].max()  # w_1 on both sides of 0, not the sorted head
