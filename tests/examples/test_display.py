"""Rich display: every ``_repr_html_`` shows the numbers it summarises; plain repr is one short line."""

import re

import pytest
import torch
from torch import nn

import qlite
from qlite import data
from qlite.display import fmt, loss_svg, scatter_svg, table


def _one_short_line(obj, limit=200):
    r = repr(obj)
    assert "\n" not in r and len(r) <= limit, r
    return r


def test_helpers_format_and_escape():
    assert fmt(1234567) == "1,234,567" and fmt(0.123456) == "0.1235" and fmt(None) == "-" and fmt(float("nan")) == "-"
    html = table([["<b>", 1.5]], ["a&b", "x"])
    assert "&lt;b&gt;" in html and "a&amp;b" in html and "<td>1.5</td>" in html
    assert loss_svg([1.0]) == "" and loss_svg([1.0, float("nan")]) == ""
    svg = loss_svg([1.0, 0.5, 0.1])
    assert svg.startswith("<svg") and svg.count(",") == 3 + 0  # three points, one comma each
    long = loss_svg([1.0 / (i + 1) for i in range(5000)], max_points=50)
    assert long.split('points="')[1].split('"')[0].count(",") == 50


def test_fit_result_html_has_metrics_and_loss_curve():
    signal = data.function(lambda x: torch.sin(3 * x), 32)
    torch.manual_seed(0)
    res = qlite.fit(qlite.SIREN(1, 1, hidden_features=8, hidden_layers=1), signal, epochs=5, lr=1e-3, progress=False)
    r = _one_short_line(res)
    assert r.startswith("FitResult(SIREN") and f"psnr={res.metrics['psnr']:.4g}" in r
    html = res._repr_html_()
    for key in ("mse", "psnr"):
        assert f"<td>{key}</td><td>{fmt(res.metrics[key])}</td>" in html
    assert f"{res.params:,} trainable parameters" in html and "5 epochs" in html
    assert "<svg" in html and "polyline" in html


def test_comparison_html_is_its_table():
    from qlite.comparison import Comparison

    cmp = Comparison(rows=[{"model": "qiren", "params": 657, "seeds": 2, "psnr_mean": 24.6789, "psnr_std": 0.51},
                           {"model": "siren", "params": 641, "seeds": 2, "psnr_mean": 19.25, "psnr_std": None}],
                     runs=[{}] * 4)
    assert _one_short_line(cmp) == "Comparison(models=['qiren', 'siren'], seeds=2, runs=4)"
    html = cmp._repr_html_()
    assert "<th>psnr_mean</th>" in html and "<td>24.68</td>" in html and "<td>657</td>" in html
    assert "<td>19.25</td><td>-</td>" in html  # a missing std shows as -


def test_compression_report_html_has_bytes_and_ratio():
    from qlite.classical import RTN, compress

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64))
    rep = compress(model, RTN(bits=4, group_size=32)).report
    r = _one_short_line(rep)
    assert f"{rep.bytes_before:,} -> {rep.bytes_after:,}" in r
    html = rep._repr_html_()
    assert f"<td>{rep.bytes_before:,}</td>" in html and f"<td>{rep.bytes_after:,}</td>" in html
    assert f"<td>{fmt(round(rep.ratio, 3))}</td>" in html and "RTN" in html


def test_eval_result_html_has_perplexity_bytes_speed_label():
    from qlite.classical.evaluation import EvalResult

    ev = EvalResult(label="gptq-w4", perplexity=23.4567, nll=3.155, seqlen=128, n_windows=4, n_tokens=508,
                    bytes=1_234_567, reference_bytes=4_000_000, compression_ratio=3.24, latency={
                        "prefill_ms": 12.5, "decode_ms_per_token": 8.25, "decode_tokens_per_s": 121.2},
                    kernel="simulated", device="cpu", seed=0, seconds=1.0)
    r = _one_short_line(ev)
    assert "23.46" in r and "1,234,567" in r and "simulated" in r
    html = ev._repr_html_()
    for s in ("<td>23.46</td>", "<td>1,234,567</td>", "<td>3.24</td>", "<td>12.5</td>", "<td>8.25</td>",
              "<td>simulated</td>", "508 (4 windows of 128)", "gptq-w4"):
        assert s in html, s


def test_model_spectrum_html_has_size_and_bandwidth():
    from qlite.spectrum import model_spectrum

    torch.manual_seed(0)
    spec = model_spectrum(qlite.QIREN(2, 1).eval().net[0])
    r = _one_short_line(spec)
    assert f"{spec.size:,}" in r
    html = spec._repr_html_()
    assert f"<td>{spec.size:,}</td>" in html and f"<td>{spec.bound:,}</td>" in html
    for b in spec.bandwidth.tolist():
        assert f"<td>{fmt(float(b))}</td>" in html
    assert spec.enumerated and html.count("<circle") == min(len(spec.frequencies), 2000)  # the scatter of the set
    assert scatter_svg([]) == "" and scatter_svg([[1.0, 2.0]] * 5000, max_points=10).count("<circle") == 10


def test_ledger_html_has_counts_and_rows():
    from qlite.lm import QuantumAdapterConfig, inject, parameter_ledger

    m = inject(nn.Sequential(nn.Linear(8, 8)), QuantumAdapterConfig(n_qubits=2, spectrum_layers=1, sublayers=1),
               target_modules=["0"])
    led = parameter_ledger(m)
    _one_short_line(led)
    html = led._repr_html_()
    assert "<td>circuit angles</td><td>12</td>" in html and "<td>adapter weights</td><td>36</td>" in html
    assert "<td>frozen</td><td>72</td>" in html and f"<td>{led.bytes_stored:,}</td>" in html
    assert re.search(r"<td>0</td><td>QuantumAdapter</td><td>12</td><td>36</td>", html)
