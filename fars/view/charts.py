"""Inline SVG for the view's charts that ``fars report`` has no drawing of: training curves.

The run page reuses the report's score histogram (with the ICLR 2026 reference lines), bars and
papers-over-time charts (``fars.evaluation.report``), so both show a run the same way.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Sequence

from markupsafe import Markup

from fars.view.reader import TrainingRun

PALETTE = ("#5470c6", "#ee6666", "#91cc75", "#fac858", "#73c0de", "#3ba272", "#fc8452", "#9a60b4", "#ea7ccc")
_SEED = re.compile(r"[-_]seed\d+$")


def condition_of(run_name: str) -> str:
    """A training run's condition: its folder name without the ``-seedN`` suffix."""
    return _SEED.sub("", run_name)


def _ticks(low: float, high: float, count: int = 4) -> list[float]:
    if high <= low:
        return [low]
    return [low + (high - low) * k / count for k in range(count + 1)]


def _fmt(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 1e4 else f"{value:.2e}"


def curves_svg(runs: Sequence[TrainingRun], series: str, width: int = 460, height: int = 230) -> Markup:
    """One line per training run of ``series`` against step, coloured by condition, with a legend."""
    left, right, top, bottom = 48, 10, 22, 28
    plot_w, plot_h = width - left - right, height - top - bottom
    lines = [
        (r, [(s, v) for s, v in zip(r.steps, r.curves.get(series, []), strict=False) if math.isfinite(v)]) for r in runs
    ]
    lines = [(r, pts) for r, pts in lines if pts]
    parts = [
        f'<svg role="img" aria-label="{html.escape(series)} against step" class="curves" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}">',
        f'<text x="{left}" y="14">{html.escape(series)}</text>',
    ]
    if not lines:
        parts.append(f'<text x="{left}" y="{top + plot_h / 2:.0f}">no values</text></svg>')
        return Markup("".join(parts))
    xs = [s for _, pts in lines for s, _ in pts]
    ys = [v for _, pts in lines for _, v in pts]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    if y1 - y0 < 1e-12:
        y0, y1 = y0 - 0.5, y1 + 0.5
    x1 = x1 if x1 > x0 else x0 + 1

    def x(s: float) -> float:
        return left + (s - x0) / (x1 - x0) * plot_w

    def y(v: float) -> float:
        return top + plot_h - (v - y0) / (y1 - y0) * plot_h

    conditions = list(dict.fromkeys(condition_of(r.name) for r, _ in lines))
    colour = {c: PALETTE[i % len(PALETTE)] for i, c in enumerate(conditions)}
    for v in _ticks(y0, y1):
        parts.append(f'<line x1="{left}" y1="{y(v):.1f}" x2="{width - right}" y2="{y(v):.1f}" stroke="#eef"/>')
        parts.append(f'<text x="{left - 4}" y="{y(v) + 4:.1f}" text-anchor="end">{_fmt(v)}</text>')
    for s in _ticks(x0, x1):
        parts.append(f'<text x="{x(s):.1f}" y="{height - 10}" text-anchor="middle">{_fmt(s)}</text>')
    for run, pts in lines:
        path = " ".join(f"{x(s):.1f},{y(v):.1f}" for s, v in pts)
        parts.append(
            f'<polyline points="{path}" fill="none" stroke="{colour[condition_of(run.name)]}" stroke-width="1.5">'
            f"<title>{html.escape(run.name)}</title></polyline>"
        )
    for i, cond in enumerate(conditions[:8]):
        parts.append(
            f'<text x="{width - right - 4}" y="{top + 12 + 13 * i}" text-anchor="end" '
            f'fill="{colour[cond]}">{html.escape(cond)}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))
