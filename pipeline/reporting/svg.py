"""Small inline SVG charts for the reports: no plotting library, no files, crisp at any zoom.

Charts are :class:`markupsafe.Markup` built with :meth:`Markup.format`, which escapes every
value it inserts (labels, units), so a chart is safe to place in a page as it is.

Example:
    >>> svg = strip_plot(3.2, [1.0, 1.5, 2.0], 2.5)
    >>> svg.startswith("<svg") and "this scan" in svg
    True
    >>> "&lt;b&gt;" in line_chart([("<b>", [0, 1], [0, 1])], "x", "y")
    True
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from markupsafe import Markup

from pipeline.reporting.render import heat_colour

FONT = Markup("font-family='system-ui,sans-serif' font-size='11'")
CURVE_COLOURS = ("#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#7f7f7f")
GRID_TICKS = (0.0, 0.25, 0.5, 0.75, 1.0)
CHART_MARGIN = 60  # px left of a chart's axes: the y label and tick labels such as 0.0721
LEGEND_ROW = 14    # px per legend line below a chart


def _f(v: float) -> str:
    return f"{v:.1f}"


def strip_plot(score: float, healthy: Sequence[float], threshold: float,
               width: int = 560, height: int = 74) -> Markup:
    """Where one scan's score falls among the healthy calibration scans' scores."""
    values = [float(v) for v in healthy if np.isfinite(v)]
    lo = min([*values, threshold, score])
    hi = max([*values, threshold, score])
    pad = 0.08 * (hi - lo) if hi > lo else 1.0
    lo, hi = lo - pad, hi + pad
    left, right, mid = 10, width - 10, 30

    def x(v: float) -> str:
        return _f(left + (v - lo) / (hi - lo) * (right - left))

    ticks = Markup("").join(
        Markup("<line x1='{0}' x2='{0}' y1='{1}' y2='{2}' stroke='#888' stroke-width='1.5'/>")
        .format(x(v), mid - 10, mid + 10) for v in values)
    axis = Markup("").join(
        Markup("<text x='{}' y='{}' text-anchor='middle' {}>{:.3g}</text>").format(
            x(v), mid + 26, FONT, v) for v in np.linspace(lo + pad, hi - pad, 4))
    return Markup(
        "<svg xmlns='http://www.w3.org/2000/svg' width='{w}' height='{h}' role='img' "
        "aria-label='scan score among healthy calibration scans'>"
        "<line x1='{l}' x2='{r}' y1='{m}' y2='{m}' stroke='#ccc'/>{ticks}"
        "<line x1='{t}' x2='{t}' y1='{t0}' y2='{t1}' stroke='#e67e00' stroke-width='2' "
        "stroke-dasharray='4 3'/><circle cx='{s}' cy='{m}' r='6' fill='#d00' stroke='white'/>"
        "{axis}<text x='{l}' y='12' {font} fill='#555'>grey: {n} healthy calibration scans · "
        "dashed: threshold · red: this scan</text></svg>").format(
        w=width, h=height, l=left, r=right, m=mid, ticks=ticks, t=x(threshold), t0=mid - 18,
        t1=mid + 14, s=x(score), axis=axis, font=FONT, n=len(values))


Range = tuple[float, float]
UNIT: Range = (0.0, 1.0)


def _grid(px: Callable[[float], str], py: Callable[[float], str], w: int, m: int,
          xr: Range, yr: Range) -> Markup:
    return Markup("").join(Markup(
        "<line x1='{x}' x2='{x}' y1='{y0}' y2='{y1}' stroke='#eee'/>"
        "<line x1='{x0}' x2='{x1}' y1='{y}' y2='{y}' stroke='#eee'/>"
        "<text x='{x}' y='{yb}' text-anchor='middle' {font}>{tx:.3g}</text>"
        "<text x='{xl}' y='{y}' text-anchor='end' {font}>{ty:.3g}</text>").format(
        x=px(t), y=py(t), y0=py(0), y1=py(1), x0=px(0), x1=px(1), yb=_f(10 + w + 14),
        xl=_f(m - 4), tx=xr[0] + t * (xr[1] - xr[0]), ty=yr[0] + t * (yr[1] - yr[0]),
        font=FONT) for t in GRID_TICKS)


def line_chart(curves: Sequence[tuple[str, Sequence[float], Sequence[float]]], xlabel: str,
               ylabel: str, diagonal: bool = False, size: int = 300,
               x_range: Range = UNIT, y_range: Range = UNIT) -> Markup:
    """Curves (each ``(label, xs, ys)``) with a legend below the axes, which span ``x_range``
    and ``y_range`` (the unit square of ROC and PR curves by default)."""
    m, w = CHART_MARGIN, size - CHART_MARGIN - 10

    def px(v: float) -> str:
        return _f(m + v * w)

    def py(v: float) -> str:
        return _f(10 + (1 - v) * w)

    def unit(v: float, r: Range) -> float:
        return (float(v) - r[0]) / max(r[1] - r[0], 1e-12)

    lines = Markup("").join(Markup(
        "<polyline points='{pts}' fill='none' stroke='{c}' stroke-width='1.8'/>"
        "<text x='{x}' y='{y}' fill='{c}' {font}>— {label}</text>").format(
        pts=" ".join(f"{px(unit(a, x_range))},{py(unit(b, y_range))}"
                     for a, b in zip(xs, ys, strict=True)),
        c=CURVE_COLOURS[n % len(CURVE_COLOURS)], x=px(0), y=_f(size + 12 + LEGEND_ROW * n),
        font=FONT, label=label) for n, (label, xs, ys) in enumerate(curves))
    diag = Markup("<line x1='{}' y1='{}' x2='{}' y2='{}' stroke='#bbb' stroke-dasharray='4 3'/>"
                  ).format(px(0), py(0), px(1), py(1)) if diagonal else Markup("")
    return Markup(
        "<svg xmlns='http://www.w3.org/2000/svg' width='{s}' height='{h}' role='img' "
        "aria-label='{yl} against {xl}'>{grid}<rect x='{x0}' y='{y1}' width='{w}' height='{w}' "
        "fill='none' stroke='#444'/>{diag}{lines}<text x='{xm}' y='{yb}' text-anchor='middle' "
        "{font}>{xl}</text><text transform='translate(11,{ym}) rotate(-90)' "
        "text-anchor='middle' {font}>{yl}</text></svg>").format(
        s=size, h=size + LEGEND_ROW * len(curves), yl=ylabel, xl=xlabel,
        grid=_grid(px, py, w, m, x_range, y_range), x0=px(0), y1=py(1), w=w, diag=diag,
        lines=lines, xm=px(0.5), yb=size - 4, font=FONT, ym=py(0.5))


def colour_bar(lo: float, hi: float, threshold: float, unit: str, width: int = 300) -> Markup:
    """Horizontal bar of the heat colours from ``lo`` to ``hi`` with the threshold marked."""
    stops = Markup("").join(
        Markup("<stop offset='{:.3f}' stop-color='rgb({},{},{})'/>").format(n / 8, r, g, b)
        for n, (r, g, b) in enumerate(heat_colour(np.linspace(0.0, 1.0, 9)).tolist()))
    left, right = 8, width - 8

    def x(v: float) -> str:
        return _f(left + (v - lo) / max(hi - lo, 1e-6) * (right - left))

    marks = Markup("").join(
        Markup("<text x='{}' y='40' text-anchor='{}' {}>{:.2f}</text>").format(x(v), a, FONT, v)
        for v, a in ((lo, "start"), (hi, "end")))
    return Markup(
        "<svg xmlns='http://www.w3.org/2000/svg' width='{w}' height='58' role='img' "
        "aria-label='colour scale'><defs><linearGradient id='heat'>{stops}</linearGradient>"
        "</defs><rect x='{l}' y='8' width='{bw}' height='16' fill='url(#heat)' stroke='#444'/>"
        "<line x1='{t}' x2='{t}' y1='4' y2='28' stroke='#00d8ff' stroke-width='2'/>{marks}"
        "<text x='{t}' y='54' text-anchor='middle' {font}>threshold {th:.2f} ({unit})</text>"
        "</svg>").format(w=width, stops=stops, l=left, bw=right - left, t=x(threshold),
                         marks=marks, font=FONT, th=threshold, unit=unit)
