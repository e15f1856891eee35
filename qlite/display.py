"""Rich display in notebooks: small HTML tables and an inline loss curve.

Jupyter shows an object through its ``_repr_html_`` when it has one; the result objects of qlite
(:class:`~qlite.training.FitResult`, :class:`~qlite.comparison.Comparison`, the compression
report and evaluation, :class:`~qlite.spectrum.ModelSpectrum`, the hybrid-LM ledger) build theirs
from these helpers. Pure string functions: no matplotlib, no IPython, nothing imported at
``import qlite`` time.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence


def fmt(value, digits: int = 4) -> str:
    """A number for a table: ints with thousands separators, floats to ``digits`` significant
    digits, ``None`` / nan as ``-``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def table(rows: Iterable[Sequence], header: Sequence[str] | None = None, *, caption: str | None = None,
          digits: int = 4) -> str:
    """An HTML ``<table>``; cells are formatted with :func:`fmt` and escaped."""
    out = ['<table class="qlite">']
    if caption:
        out.append(f"<caption style='text-align:left'>{html.escape(caption)}</caption>")
    if header:
        out.append("<tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in header) + "</tr>")
    for row in rows:
        out.append("<tr>" + "".join(f"<td>{html.escape(fmt(v, digits))}</td>" for v in row) + "</tr>")
    out.append("</table>")
    return "".join(out)


def loss_svg(values: Sequence[float], *, width: int = 320, height: int = 110, max_points: int = 400,
             title: str = "training loss (log scale)") -> str:
    """An inline SVG polyline of a positive series on a log axis (a few KB however long the run:
    at most ``max_points`` points, evenly subsampled). Empty string when fewer than two finite
    positive values exist."""
    vals = [float(v) for v in values if v is not None and math.isfinite(v) and v > 0]
    if len(vals) < 2:
        return ""
    if len(vals) > max_points:
        step = (len(vals) - 1) / (max_points - 1)
        vals = [vals[round(i * step)] for i in range(max_points)]
    logs = [math.log10(v) for v in vals]
    lo, hi = min(logs), max(logs)
    span = hi - lo or 1.0
    pad = 6
    pts = " ".join(
        f"{pad + i * (width - 2 * pad) / (len(logs) - 1):.1f},{pad + (hi - y) * (height - 2 * pad) / span:.1f}"
        for i, y in enumerate(logs))
    return (f'<svg width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">'
            f"<title>{html.escape(title)}</title>"
            f'<rect width="{width}" height="{height}" fill="white" stroke="#ccc"/>'
            f'<polyline fill="none" stroke="#1f77b4" stroke-width="1.5" points="{pts}"/>'
            f'<text x="{width - pad}" y="14" font-size="10" text-anchor="end">{html.escape(fmt(vals[0], 3))} '
            f"&#8594; {html.escape(fmt(vals[-1], 3))}</text></svg>")


def scatter_svg(xy: Sequence[Sequence[float]], *, size: int = 220, max_points: int = 2000,
                title: str = "frequency vectors") -> str:
    """An inline SVG scatter of 2-D points (evenly strided down to ``max_points``), axes through 0;
    empty string for no points."""
    pts = [(float(p[0]), float(p[1])) for p in xy]
    if not pts:
        return ""
    if len(pts) > max_points:
        step = (len(pts) - 1) / (max_points - 1)
        pts = [pts[round(i * step)] for i in range(max_points)]
    r = max(max(abs(x), abs(y)) for x, y in pts) or 1.0
    half, pad = size / 2, 8

    def px(v):
        return half + v / r * (half - pad)

    dots = "".join(f'<circle cx="{px(x):.1f}" cy="{size - px(y):.1f}" r="1.5"/>' for x, y in pts)
    return (f'<svg width="{size}" height="{size}" xmlns="http://www.w3.org/2000/svg"><title>{html.escape(title)}</title>'
            f'<rect width="{size}" height="{size}" fill="white" stroke="#ccc"/>'
            f'<line x1="0" y1="{half}" x2="{size}" y2="{half}" stroke="#ddd"/>'
            f'<line x1="{half}" y1="0" x2="{half}" y2="{size}" stroke="#ddd"/>'
            f'<g fill="#1f77b4">{dots}</g>'
            f'<text x="{size - pad}" y="14" font-size="10" text-anchor="end">|w| &lt;= {html.escape(fmt(r, 3))}</text></svg>')
