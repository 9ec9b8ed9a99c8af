"""Small inline SVG charts for the reports: no plotting library, no files, crisp at any zoom.

Example:
    >>> svg = strip_plot(3.2, [1.0, 1.5, 2.0], 2.5)
    >>> svg.startswith("<svg") and "this scan" in svg
    True
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import numpy as np

from pipeline.render import heat_colour

_FONT = "font-family='system-ui,sans-serif' font-size='11'"
CURVE_COLOURS = ("#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#7f7f7f")


def _f(v: float) -> str:
    return f"{v:.1f}"


def strip_plot(score: float, healthy: Sequence[float], threshold: float,
               width: int = 560, height: int = 74) -> str:
    """Where one scan's score falls among the healthy calibration scans' scores."""
    values = [float(v) for v in healthy if np.isfinite(v)]
    lo = min([*values, threshold, score])
    hi = max([*values, threshold, score])
    pad = 0.08 * (hi - lo) if hi > lo else 1.0
    lo, hi = lo - pad, hi + pad
    left, right, mid = 10, width - 10, 30

    def x(v: float) -> str:
        return _f(left + (v - lo) / (hi - lo) * (right - left))

    ticks = "".join(f"<line x1='{x(v)}' x2='{x(v)}' y1='{mid - 10}' y2='{mid + 10}' "
                    f"stroke='#888' stroke-width='1.5'/>" for v in values)
    axis_ticks = "".join(
        f"<text x='{x(v)}' y='{mid + 26}' text-anchor='middle' {_FONT}>{v:.3g}</text>"
        for v in np.linspace(lo + pad, hi - pad, 4))
    return (f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
            f"role='img' aria-label='scan score among healthy calibration scans'>"
            f"<line x1='{left}' x2='{right}' y1='{mid}' y2='{mid}' stroke='#ccc'/>{ticks}"
            f"<line x1='{x(threshold)}' x2='{x(threshold)}' y1='{mid - 18}' y2='{mid + 14}' "
            f"stroke='#e67e00' stroke-width='2' stroke-dasharray='4 3'/>"
            f"<circle cx='{x(score)}' cy='{mid}' r='6' fill='#d00' stroke='white'/>"
            f"{axis_ticks}"
            f"<text x='{left}' y='12' {_FONT} fill='#555'>grey: {len(values)} healthy "
            f"calibration scans · dashed: threshold · red: this scan</text></svg>")


def line_chart(curves: Sequence[tuple[str, Sequence[float], Sequence[float]]], xlabel: str,
               ylabel: str, diagonal: bool = False, size: int = 300) -> str:
    """Curves on the unit square (ROC, PR), each ``(label, xs, ys)``, with a legend."""
    m, w = 40, size - 50

    def px(v: float) -> str:
        return _f(m + v * w)

    def py(v: float) -> str:
        return _f(10 + (1 - v) * w)

    grid = "".join(
        f"<line x1='{px(t)}' x2='{px(t)}' y1='{py(0)}' y2='{py(1)}' stroke='#eee'/>"
        f"<line x1='{px(0)}' x2='{px(1)}' y1='{py(t)}' y2='{py(t)}' stroke='#eee'/>"
        f"<text x='{px(t)}' y='{_f(10 + w + 14)}' text-anchor='middle' {_FONT}>{t:g}</text>"
        f"<text x='{_f(m - 4)}' y='{py(t)}' text-anchor='end' {_FONT}>{t:g}</text>"
        for t in (0.0, 0.25, 0.5, 0.75, 1.0))
    lines = []
    for n, (label, xs, ys) in enumerate(curves):
        colour = CURVE_COLOURS[n % len(CURVE_COLOURS)]
        pts = " ".join(f"{px(float(a))},{py(float(b))}" for a, b in zip(xs, ys, strict=True))
        lines.append(f"<polyline points='{pts}' fill='none' stroke='{colour}' "
                     f"stroke-width='1.8'/><text x='{px(0.45)}' y='{_f(24 + 14 * n)}' "
                     f"fill='{colour}' {_FONT}>{html.escape(label)}</text>")
    diag = (f"<line x1='{px(0)}' y1='{py(0)}' x2='{px(1)}' y2='{py(1)}' stroke='#bbb' "
            f"stroke-dasharray='4 3'/>") if diagonal else ""
    return (f"<svg xmlns='http://www.w3.org/2000/svg' width='{size}' height='{size}' "
            f"role='img' aria-label='{html.escape(ylabel)} against {html.escape(xlabel)}'>"
            f"{grid}<rect x='{px(0)}' y='{py(1)}' width='{w}' height='{w}' fill='none' "
            f"stroke='#444'/>{diag}{''.join(lines)}"
            f"<text x='{px(0.5)}' y='{size - 4}' text-anchor='middle' {_FONT}>"
            f"{html.escape(xlabel)}</text><text transform='translate(11,{py(0.5)}) rotate(-90)' "
            f"text-anchor='middle' {_FONT}>{html.escape(ylabel)}</text></svg>")


def colour_bar(lo: float, hi: float, threshold: float, unit: str, width: int = 300) -> str:
    """Horizontal bar of the heat colours from ``lo`` to ``hi`` with the threshold marked."""
    colours = heat_colour(np.linspace(0.0, 1.0, 9))
    stops = "".join(f"<stop offset='{n / 8:.3f}' stop-color='rgb({r},{g},{b})'/>"
                    for n, (r, g, b) in enumerate(colours.tolist()))
    left, right = 8, width - 8

    def x(v: float) -> str:
        return _f(left + (v - lo) / max(hi - lo, 1e-6) * (right - left))

    marks = "".join(
        f"<text x='{x(v)}' y='40' text-anchor='{anchor}' {_FONT}>{v:.2f}</text>"
        for v, anchor in ((lo, "start"), (hi, "end")))
    return (f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='58' role='img' "
            f"aria-label='colour scale'><defs><linearGradient id='heat'>{stops}"
            f"</linearGradient></defs><rect x='{left}' y='8' width='{right - left}' "
            f"height='16' fill='url(#heat)' stroke='#444'/>"
            f"<line x1='{x(threshold)}' x2='{x(threshold)}' y1='4' y2='28' stroke='#00d8ff' "
            f"stroke-width='2'/>{marks}<text x='{x(threshold)}' y='54' text-anchor='middle' "
            f"{_FONT}>threshold {threshold:.2f} ({html.escape(unit)})</text></svg>")
