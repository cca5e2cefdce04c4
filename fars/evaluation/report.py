"""One self-contained HTML page of a run, drawn from its RunRecord alone.

Charts are inline SVG made here, the style is inline CSS and the only script sorts the paper table,
so the page opens anywhere with no network: the score histogram with the ICLR reference lines, the
funnel, papers over time, tokens and cost by stage and by model, and a table of papers linking to
each paper and review.
"""

from __future__ import annotations

import html
import os
import time
from collections.abc import Sequence
from pathlib import Path

from fars.evaluation.compare import calibrated_scores
from fars.run.records import ProjectStatus, ProjectSummary, RunRecord, Usage
from fars.run.summary import is_paper

# reference means on the ICLR 1-10 scale (the design's figures)
ICLR_2026_SUBMISSIONS = 4.21
ICLR_2026_ACCEPTED = 5.39
REPORT_FILE = "report.html"

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1100px;color:#1d2433;padding:0 16px}
h1{font-size:1.5em;margin-bottom:4px}h2{font-size:1.15em;margin-top:28px;border-bottom:1px solid #dde;padding-bottom:4px}
.muted{color:#667}.cards{display:flex;flex-wrap:wrap;gap:10px;margin:14px 0}
.card{border:1px solid #dde;border-radius:6px;padding:8px 12px;min-width:120px}
.card b{display:block;font-size:1.3em}.grid{display:grid;grid-template-columns:1fr 1fr;gap:18px}
table{border-collapse:collapse;width:100%;font-size:.88em}th,td{padding:4px 6px;border-bottom:1px solid #eef;text-align:left}
th{cursor:pointer;background:#f5f6fa;user-select:none}td.n,th.n{text-align:right}
.status-done{color:#17803d}.status-failed{color:#b42318}.status-screened_out{color:#8a6d00}
svg text{font-size:11px;fill:#334}
"""

_SORT_JS = """
document.querySelectorAll('table.sortable th').forEach(function(th, col){
  th.addEventListener('click', function(){
    var body = th.closest('table').tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    var asc = th.dataset.asc !== '1'; th.dataset.asc = asc ? '1' : '0';
    rows.sort(function(a, b){
      var x = a.cells[col].dataset.v || a.cells[col].textContent, y = b.cells[col].dataset.v || b.cells[col].textContent;
      var nx = parseFloat(x), ny = parseFloat(y);
      var c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
      return asc ? c : -c;
    });
    rows.forEach(function(r){ body.appendChild(r); });
  });
});
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _num(value: float | None, spec: str = ".2f") -> str:
    return "–" if value is None else format(value, spec)


def histogram_svg(scores: Sequence[float], calibrated: Sequence[float] | None = None) -> str:
    """Scores binned on the ICLR 1-10 scale with reference lines for human submissions and accepted papers."""
    width, height, left, bottom, top = 520, 256, 36, 30, 40  # the legend row sits above the plot
    plot_w, plot_h = width - left - 12, height - bottom - top
    bins = list(range(1, 11))
    counts = [sum(1 for s in scores if round(s) == b or (b == 1 and s < 1.5) or (b == 10 and s > 9.5)) for b in bins]
    cal_counts = [sum(1 for s in (calibrated or []) if min(10, max(1, round(s))) == b) for b in bins]
    peak = max([*counts, *cal_counts, 1])

    def x(v: float) -> float:
        return left + (v - 0.5) / 10 * plot_w

    def y(c: float) -> float:
        return top + plot_h - c / peak * plot_h

    parts = [
        f'<svg role="img" aria-label="score histogram" width="{width}" height="{height}" viewBox="0 0 {width} {height}">'
    ]
    bar = plot_w / 10
    for b, c, cc in zip(bins, counts, cal_counts, strict=True):
        w = bar * (0.42 if calibrated else 0.8)
        parts.append(
            f'<rect x="{x(b) - bar * 0.4:.1f}" y="{y(c):.1f}" width="{w:.1f}" height="{top + plot_h - y(c):.1f}" fill="#5470c6"><title>{c} paper(s) rated {b}</title></rect>'
        )
        if calibrated:
            parts.append(
                f'<rect x="{x(b) + bar * 0.02:.1f}" y="{y(cc):.1f}" width="{w:.1f}" height="{top + plot_h - y(cc):.1f}" fill="#91cc75"><title>{cc} calibrated near {b}</title></rect>'
            )
        parts.append(f'<text x="{x(b):.1f}" y="{height - 12}" text-anchor="middle">{b}</text>')
    for k in range(0, peak + 1, max(1, peak // 4)):
        parts.append(f'<text x="{left - 6}" y="{y(k) + 4:.1f}" text-anchor="end">{k}</text>')
    parts.append(f'<line x1="{left}" y1="{top + plot_h}" x2="{width - 12}" y2="{top + plot_h}" stroke="#889"/>')
    lines = [
        (ICLR_2026_SUBMISSIONS, "#ee6666", f"ICLR 2026 submissions {ICLR_2026_SUBMISSIONS}"),
        (ICLR_2026_ACCEPTED, "#17803d", f"accepted {ICLR_2026_ACCEPTED}"),
    ]
    if scores:
        lines.append((sum(scores) / len(scores), "#1d2433", f"this run {sum(scores) / len(scores):.2f}"))
    at = float(left)  # the legend: one row above the plot, so no reference line crosses a label
    for value, colour, label in lines:
        parts.append(
            f'<line x1="{x(value):.1f}" y1="{top - 4}" x2="{x(value):.1f}" y2="{top + plot_h}" stroke="{colour}" stroke-width="2" stroke-dasharray="5 3"/>'
        )
        parts.append(
            f'<line x1="{at:.1f}" y1="14" x2="{at + 16:.1f}" y2="14" stroke="{colour}" stroke-width="2" stroke-dasharray="5 3"/>'
        )
        parts.append(f'<text x="{at + 20:.1f}" y="18" style="fill:{colour}">{_e(label)}</text>')
        at += 20 + 6.2 * len(label) + 14  # 11px text: at most about 6.2px a character
    parts.append("</svg>")
    return "".join(parts)


def bars_svg(items: Sequence[tuple[str, float]], unit: str = "", colour: str = "#5470c6", spec: str = ",.0f") -> str:
    """Horizontal bars, one per (label, value)."""
    width, row, label_w = 520, 24, 150
    height = max(1, len(items)) * row + 8
    peak = max([v for _, v in items] + [1e-12])
    parts = [f'<svg role="img" width="{width}" height="{height}" viewBox="0 0 {width} {height}">']
    for i, (label, value) in enumerate(items):
        w = (width - label_w - 90) * value / peak
        yy = 4 + i * row
        parts.append(f'<text x="{label_w - 6}" y="{yy + 15}" text-anchor="end">{_e(label)}</text>')
        parts.append(f'<rect x="{label_w}" y="{yy + 3}" width="{w:.1f}" height="{row - 8}" fill="{colour}"/>')
        parts.append(f'<text x="{label_w + w + 5:.1f}" y="{yy + 15}">{format(value, spec)}{_e(unit)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def throughput_svg(record: RunRecord) -> str:
    """Papers finished against hours since the start, with the run's average rate as a dashed line."""
    ends = sorted(p.finished_at for p in record.projects if is_paper(p.status) and p.finished_at)
    width, height, left, bottom, top = 520, 220, 40, 30, 14
    plot_w, plot_h = width - left - 14, height - bottom - top
    span = max(record.wall_s, (ends[-1] - record.started_at) if ends else 0.0, 1e-9)
    peak = max(len(ends), 1)

    def x(t: float) -> float:
        return left + t / span * plot_w

    def y(n: float) -> float:
        return top + plot_h - n / peak * plot_h

    points = [(0.0, 0)]
    for i, end in enumerate(ends, start=1):
        t = end - record.started_at
        points += [(t, i - 1), (t, i)]
    points.append((span, len(ends)))
    path = " ".join(f"{x(t):.1f},{y(n):.1f}" for t, n in points)
    unit, scale = ("h", 3600.0) if span >= 7200 else ("min", 60.0) if span >= 120 else ("s", 1.0)
    parts = [
        f'<svg role="img" aria-label="papers over time" width="{width}" height="{height}" viewBox="0 0 {width} {height}">'
    ]
    parts.append(f'<polyline points="{path}" fill="none" stroke="#5470c6" stroke-width="2"/>')
    parts.append(
        f'<line x1="{x(0)}" y1="{y(0)}" x2="{x(span):.1f}" y2="{y(len(ends)):.1f}" stroke="#999" stroke-dasharray="4 3"/>'
    )
    parts.append(f'<line x1="{left}" y1="{top + plot_h}" x2="{width - 14}" y2="{top + plot_h}" stroke="#889"/>')
    for k in range(5):
        t = span * k / 4
        parts.append(
            f'<text x="{x(t):.1f}" y="{height - 12}" text-anchor="{"end" if k == 4 else "middle"}">{t / scale:.1f}{unit}</text>'
        )
    for k in sorted({0, peak // 2, peak}):
        parts.append(f'<text x="{left - 6}" y="{y(k) + 4:.1f}" text-anchor="end">{k}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _share(usage: Usage) -> str:
    """Cached input tokens as a share of all input tokens."""
    return f"{usage.cached_input_tokens / usage.input_tokens:.0%}" if usage.input_tokens else "0%"


def _usage_table(title: str, usage: dict[str, Usage]) -> str:
    rows = "".join(
        f"<tr><td>{_e(name)}</td><td class=n>{u.calls}</td><td class=n>{u.input_tokens:,}</td>"
        f"<td class=n>{u.cached_input_tokens:,}</td><td class=n>{u.output_tokens:,}</td>"
        f"<td class=n>{u.cost_usd:.4f}</td><td class=n>{u.saved_usd:.4f}</td><td class=n>{u.cache_hits}</td>"
        f"<td class=n>{u.latency_s:.1f}</td></tr>"
        for name, u in usage.items()
    )
    return (
        f"<table class=sortable><thead><tr><th>{_e(title)}</th><th class=n>calls</th><th class=n>input tokens</th>"
        "<th class=n>cached input</th><th class=n>output tokens</th><th class=n>cost $</th><th class=n>saved $</th>"
        "<th class=n>cache hits</th><th class=n>model s</th>"
        f"</tr></thead><tbody>{rows}</tbody></table>"
    )


def _link(run_dir: Path, out_dir: Path, project: ProjectSummary, kind: str) -> str:
    found = [a for a in project.artifacts if a.kind == kind]
    links = []
    for artifact in found:
        target = os.path.relpath(run_dir / artifact.path, out_dir)
        links.append(
            f'<a href="{_e(Path(target).as_posix())}">{_e(Path(artifact.path).suffix.lstrip(".") or kind)}</a>'
        )
    return " ".join(links) or "–"


def _status(project: ProjectSummary) -> str:
    """The status, with the stage a project ended in when it did not finish (``failed in experiment``)."""
    if project.status in (ProjectStatus.failed, ProjectStatus.budget_exhausted) and project.stage:
        return f"{project.status.value} in {project.stage}"
    return project.status.value


def _review_links(run_dir: Path, out_dir: Path, project: ProjectSummary) -> str:
    """The review as a person reads it (review.md) first, then its record (json)."""
    readable = _link(run_dir, out_dir, project, "review_md")
    record = _link(run_dir, out_dir, project, "review")
    return " ".join(link for link in (readable, record) if link != "–") or "–"


def _papers_table(record: RunRecord, run_dir: Path, out_dir: Path) -> str:
    rows = []
    for p in record.projects:
        sub = p.review.subscores if p.review is not None else {}
        calibrated = p.review.calibrated_rating if p.review is not None else None
        seconds = sum(p.stage_seconds.values())
        rows.append(
            f"<tr><td>{_e(p.id)}</td><td class='status-{_e(p.status.value)}'>{_e(_status(p))}</td>"
            f"<td>{_e(p.title or p.hypothesis or '')}{'<br><span class=muted>' + _e(p.error[:200]) + '</span>' if p.error else ''}</td>"
            f"<td class=n data-v='{p.rating if p.rating is not None else -1}'>{_num(p.rating, '.1f')}</td>"
            f"<td class=n>{_num(calibrated if isinstance(calibrated, int | float) else None)}</td>"
            f"<td class=n>{_e(sub.get('soundness', '–'))}</td><td class=n>{_e(sub.get('presentation', '–'))}</td>"
            f"<td class=n>{_e(sub.get('contribution', '–'))}</td>"
            f"<td class=n data-v='{p.usage.total_tokens}'>{p.usage.total_tokens:,}</td>"
            f"<td class=n>{p.usage.cost_usd:.4f}</td><td class=n>{seconds:.0f}</td>"
            f"<td>{_link(run_dir, out_dir, p, 'paper')}</td><td>{_review_links(run_dir, out_dir, p)}</td></tr>"
        )
    return (
        "<table class=sortable id=papers><thead><tr><th>project</th><th>status</th><th>title</th><th class=n>rating</th>"
        "<th class=n>calibrated</th><th class=n>sound.</th><th class=n>pres.</th><th class=n>contrib.</th>"
        "<th class=n>tokens</th><th class=n>cost $</th><th class=n>seconds</th><th>paper</th><th>review</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def render_report(record: RunRecord, run_dir: Path, out_dir: Path) -> str:
    """The report page's HTML; links point from ``out_dir`` to the artifacts under ``run_dir``."""
    papers = record.papers
    overall = record.totals.overall
    calibrated = calibrated_scores(record)
    llm = record.config.get("llm", {}) if isinstance(record.config.get("llm"), dict) else {}
    cards = [
        ("papers", f"{papers} / {len(record.projects)} projects"),
        ("mean rating", _num(record.mean_score)),
        ("calibrated", _num(sum(calibrated) / len(calibrated) if calibrated else None)),
        ("papers / hour", f"{record.papers_per_hour:.2f}"),
        ("wall time", f"{record.wall_s / 60:.1f} min"),
        ("tokens", f"{overall.total_tokens:,}"),
        ("tokens / paper", f"{overall.total_tokens / papers:,.0f}" if papers else "–"),
        ("cost", f"${overall.cost_usd:.4f}"),
        ("cost / paper", f"${overall.cost_usd / papers:.4f}" if papers else "–"),
        ("model calls", f"{overall.calls:,} ({overall.cache_hits} cached)"),
        ("cached input tokens", f"{overall.cached_input_tokens:,} ({_share(overall)} of input)"),
        ("saved by prompt caching", f"${overall.saved_usd:.4f}"),
    ]
    f = record.funnel
    funnel = [
        ("projects", float(len(record.projects))),
        ("hypotheses", float(f.hypotheses)),
        ("passed screening", float(f.screened)),
        ("novel", float(f.novel)),
        ("planned", float(f.planned)),
        ("experimented", float(f.experimented)),
        ("written", float(f.written)),
        ("reviewed", float(f.reviewed)),
        ("papers", float(papers)),
    ]
    by_stage_tokens = [(k, float(u.total_tokens)) for k, u in record.totals.by_stage.items()]
    by_model_tokens = [(k, float(u.total_tokens)) for k, u in record.totals.by_model.items()]
    by_stage_cost = [(k, u.cost_usd) for k, u in record.totals.by_stage.items()]
    started = time.strftime("%Y-%m-%d %H:%M", time.localtime(record.started_at))
    title = f"FARS run {Path(record.run_dir).name}"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)}</title><style>{_CSS}</style></head>
<body>
<h1>{_e(title)}</h1>
<div class=muted>{_e(record.run_dir)} · {_e(record.status)} · started {_e(started)} · model {_e(llm.get("model", "?"))} ·
RunRecord v{record.version}{f" · resumed {record.resumed}x" if record.resumed else ""}</div>
<div class=cards>{"".join(f"<div class=card><span class=muted>{_e(k)}</span><b>{_e(v)}</b></div>" for k, v in cards)}</div>
<div class=grid>
<section><h2>Review scores</h2>{histogram_svg(record.scores, calibrated)}
<div class=muted>Blue: raw ratings{", green: calibrated" if calibrated else ""}. Dashed: mean of ICLR 2026 human submissions
({ICLR_2026_SUBMISSIONS}), of accepted papers ({ICLR_2026_ACCEPTED}) and of this run.</div></section>
<section><h2>Funnel</h2>{bars_svg(funnel)}</section>
<section><h2>Papers over time</h2>{throughput_svg(record)}
<div class=muted>Papers finished since the start; dashed: the run's average rate ({record.papers_per_hour:.2f} papers/hour).</div></section>
<section><h2>Tokens by stage</h2>{bars_svg(by_stage_tokens)}<h2>Cost by stage</h2>{bars_svg(by_stage_cost, " $", "#fac858", ".4f")}</section>
<section><h2>Tokens by model</h2>{bars_svg(by_model_tokens, "", "#73c0de")}</section>
</div>
<h2>Usage by stage</h2>{_usage_table("stage", record.totals.by_stage)}
<h2>Usage by model</h2>{_usage_table("model", record.totals.by_model)}
<h2>Papers</h2>{_papers_table(record, run_dir, out_dir)}
<p class=muted>Written by <code>fars report</code> from run_record.json; click a column heading to sort.</p>
<script>{_SORT_JS}</script>
</body></html>
"""


def write_report(run_dir: Path, record: RunRecord, out: Path | None = None) -> Path:
    """Write the report (default ``RUN/report.html``) and return its path."""
    out = out or run_dir / REPORT_FILE
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_report(record, run_dir, out.parent), encoding="utf-8")
    return out
