"""Small inline-SVG charts for the HTML report: no plotting library, nothing fetched at view time."""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Sequence
from html import escape

import numpy as np

PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
           "#9c755f", "#bab0ac")

Fmt = Callable[[float], str]


def colour(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    if not math.isfinite(lo) or not math.isfinite(hi):
        return [0.0]
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / count
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    ticks = []
    v = start
    while v <= hi + step * 1e-9:
        ticks.append(round(v, 12))
        v += step
    if ticks[-1] < hi:
        ticks.append(round(v, 12))
    return ticks


def general(v: float) -> str:
    return f"{v:.3g}"


def _open(width: int, height: int, title: str, plot_id: str) -> list[str]:
    return [
        f'<svg id="{escape(plot_id)}" class="plot" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<text x="{width / 2}" y="18" text-anchor="middle" class="plot-title">{escape(title)}</text>',
    ]


def scatter(
    points: Sequence[tuple[str, float, float]],
    *,
    title: str,
    x_label: str,
    y_label: str,
    plot_id: str,
    x_fmt: Fmt = general,
    y_fmt: Fmt = general,
    y_range: tuple[float, float] | None = None,
    frontier: bool = True,
    width: int = 640,
    height: int = 400,
) -> str:
    """Labelled points (label, x, y); `frontier` joins the points no other point beats on both axes
    (lower x and higher y), the cost-quality Pareto front."""
    left, right, top, bottom = 70, 150, 30, 50
    out = _open(width, height, title, plot_id)
    if not points:
        out.append(f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle">no data</text></svg>')
        return "".join(out)
    xs = [p[1] for p in points]
    ys = [p[2] for p in points]
    xt = nice_ticks(min(0.0, min(xs)), max(xs) if max(xs) > 0 else 1.0)
    yt = nice_ticks(*(y_range or (min(0.0, min(ys)), max(1.0, max(ys)))))
    pw, ph = width - left - right, height - top - bottom

    def sx(v: float) -> float:
        return left + (v - xt[0]) / ((xt[-1] - xt[0]) or 1.0) * pw

    def sy(v: float) -> float:
        return top + ph - (v - yt[0]) / ((yt[-1] - yt[0]) or 1.0) * ph

    out += _axes(xt, yt, sx, sy, left, top, pw, ph, x_fmt, y_fmt, x_label, y_label)
    if frontier and len(points) > 1:
        best: list[tuple[float, float]] = []
        for _, x, y in sorted(points, key=lambda p: (p[1], -p[2])):
            if not best or y > best[-1][1]:
                best.append((x, y))
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in best)
        out.append(f'<polyline class="frontier" points="{path}" fill="none" stroke="#999" stroke-dasharray="4 3"/>')
    for i, (label, x, y) in enumerate(points):
        out.append(
            f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="6" fill="{colour(i)}">'
            f"<title>{escape(label)}: {escape(x_fmt(x))}, {escape(y_fmt(y))}</title></circle>"
            f'<text x="{sx(x) + 9:.1f}" y="{sy(y) + 4:.1f}" class="point-label">{escape(label)}</text>'
        )
    out.append("</svg>")
    return "".join(out)


def _axes(
    xt: list[float], yt: list[float], sx: Callable[[float], float], sy: Callable[[float], float],
    left: int, top: int, pw: int, ph: int, x_fmt: Fmt, y_fmt: Fmt, x_label: str, y_label: str,
) -> list[str]:
    out = []
    for v in yt:
        y = sy(v)
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
                   f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">{escape(y_fmt(v))}</text>')
    for v in xt:
        x = sx(v)
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{top + ph}" class="grid"/>'
                   f'<text x="{x:.1f}" y="{top + ph + 16}" text-anchor="middle" class="tick">{escape(x_fmt(v))}</text>')
    out.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" class="frame"/>')
    out.append(f'<text x="{left + pw / 2}" y="{top + ph + 38}" text-anchor="middle" class="axis-label">'
               f"{escape(x_label)}</text>")
    out.append(f'<text x="16" y="{top + ph / 2}" text-anchor="middle" class="axis-label" '
               f'transform="rotate(-90 16 {top + ph / 2})">{escape(y_label)}</text>')
    return out


def boxplots(
    series: Sequence[tuple[str, Sequence[float]]],
    *,
    title: str,
    x_label: str,
    plot_id: str,
    x_fmt: Fmt = general,
    width: int = 640,
) -> str:
    """One horizontal box per series: whiskers p5-p95, box p25-p75, a bar at the median, and
    every value as a dot (deterministic jitter) so small samples are not hidden by the box."""
    left, right, top, bottom, row = 150, 30, 30, 50, 44
    height = top + bottom + row * max(1, len(series))
    out = _open(width, height, title, plot_id)
    values = [v for _, vs in series for v in vs]
    if not values:
        out.append(f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle">no data</text></svg>')
        return "".join(out)
    xt = nice_ticks(0.0, max(values) if max(values) > 0 else 1.0)
    pw, ph = width - left - right, height - top - bottom

    def sx(v: float) -> float:
        return left + (v - xt[0]) / ((xt[-1] - xt[0]) or 1.0) * pw

    for v in xt:
        x = sx(v)
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{top + ph}" class="grid"/>'
                   f'<text x="{x:.1f}" y="{top + ph + 16}" text-anchor="middle" class="tick">{escape(x_fmt(v))}</text>')
    out.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" class="frame"/>')
    out.append(f'<text x="{left + pw / 2}" y="{top + ph + 38}" text-anchor="middle" class="axis-label">'
               f"{escape(x_label)}</text>")
    for i, (label, vs) in enumerate(series):
        cy = top + row * i + row / 2
        c = colour(i)
        out.append(f'<text x="{left - 8}" y="{cy + 4:.1f}" text-anchor="end" class="series-label">{escape(label)}</text>')
        if not vs:
            out.append(f'<text x="{left + 8}" y="{cy + 4:.1f}" class="tick">no data</text>')
            continue
        p5, p25, p50, p75, p95 = (float(q) for q in np.percentile(np.asarray(vs, dtype=np.float64), [5, 25, 50, 75, 95]))
        out.append(
            f'<g class="box"><title>{escape(label)}: p5 {escape(x_fmt(p5))}, p50 {escape(x_fmt(p50))}, '
            f'p95 {escape(x_fmt(p95))} (n={len(vs)})</title>'
            f'<line x1="{sx(p5):.1f}" x2="{sx(p95):.1f}" y1="{cy:.1f}" y2="{cy:.1f}" stroke="{c}"/>'
            f'<rect x="{sx(p25):.1f}" y="{cy - 10:.1f}" width="{max(1.0, sx(p75) - sx(p25)):.1f}" height="20" '
            f'fill="{c}" fill-opacity="0.25" stroke="{c}"/>'
            f'<line x1="{sx(p50):.1f}" x2="{sx(p50):.1f}" y1="{cy - 10:.1f}" y2="{cy + 10:.1f}" stroke="{c}" '
            f'stroke-width="3"/></g>'
        )
        for j, v in enumerate(vs[:500]):
            jitter = (zlib.crc32(f"{label}:{j}".encode()) % 1000) / 1000 * 14 - 7
            out.append(f'<circle cx="{sx(v):.1f}" cy="{cy + jitter:.1f}" r="2" fill="{c}" fill-opacity="0.6"/>')
    out.append("</svg>")
    return "".join(out)


def bars(
    items: Sequence[tuple[str, float]],
    *,
    title: str,
    x_label: str,
    plot_id: str,
    x_fmt: Fmt = general,
    x_max: float | None = None,
    width: int = 640,
) -> str:
    left, right, top, bottom, row = 150, 70, 30, 50, 32
    height = top + bottom + row * max(1, len(items))
    out = _open(width, height, title, plot_id)
    top_value = x_max if x_max is not None else max([v for _, v in items] + [1e-12])
    xt = nice_ticks(0.0, top_value)
    pw, ph = width - left - right, height - top - bottom

    def sx(v: float) -> float:
        return left + v / ((xt[-1] - xt[0]) or 1.0) * pw

    for v in xt:
        x = sx(v)
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{top + ph}" class="grid"/>'
                   f'<text x="{x:.1f}" y="{top + ph + 16}" text-anchor="middle" class="tick">{escape(x_fmt(v))}</text>')
    out.append(f'<text x="{left + pw / 2}" y="{top + ph + 38}" text-anchor="middle" class="axis-label">'
               f"{escape(x_label)}</text>")
    for i, (label, v) in enumerate(items):
        y = top + row * i + 6
        out.append(
            f'<text x="{left - 8}" y="{y + 14}" text-anchor="end" class="series-label">{escape(label)}</text>'
            f'<rect class="bar" x="{left}" y="{y}" width="{max(0.0, sx(v) - left):.1f}" height="{row - 12}" '
            f'fill="{colour(i)}"><title>{escape(label)}: {escape(x_fmt(v))}</title></rect>'
            f'<text x="{sx(v) + 6:.1f}" y="{y + 14}" class="tick">{escape(x_fmt(v))}</text>'
        )
    out.append("</svg>")
    return "".join(out)
