"""The calibration report as Markdown with plots (PNG, drawn with matplotlib's Agg backend).

The reviewer's scores, the human-human baseline and the trivial baselines (text length, bag of words)
share one table; below it come each score's Spearman controlling for text length, the verdict per
baseline, and the reviewer's test-retest reliability. Plots are written as new files renamed over
their names, never through a link standing there.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from fars.safe_files import write_atomic
from review.calibration.harness import CalibrationReport, ScoreMetrics
from review.calibration.metrics import METRICS

LABELS = {
    "spearman": "Spearman (all)",
    "spearman_accepted": "Spearman (accepted)",
    "spearman_rejected": "Spearman (rejected)",
    "kendall": "Kendall tau-b (all)",
    "kendall_accepted": "Kendall (accepted)",
    "kendall_rejected": "Kendall (rejected)",
    "pairwise_accuracy": "pairwise ranking accuracy",
    "decision_auc": "decision AUC",
    "balanced_accuracy": "balanced accuracy",
    "mae": "MAE (rating points)",
    "bias": "mean bias (reviewer - human)",
}


def _cell(values: dict[str, float | None]) -> str:
    v, lo, hi = values.get("value"), values.get("low"), values.get("high")
    if v is None:
        return "undefined"
    if lo is None or hi is None:
        return f"{v:.3f} (no interval)"
    return f"{v:.3f} [{lo:.3f}, {hi:.3f}]"


def _save(fig: Any, path: Path) -> None:
    """Save a figure as a new file renamed over ``path`` (``fars.safe_files.write_atomic``): a link
    standing at the name is replaced, never written through."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format=path.suffix.lstrip(".").lower() or "png", dpi=110)
    write_atomic(path.parent, path.name, buffer.getvalue())


def plot_scatter(report: CalibrationReport, path: Path) -> Path:
    """Reviewer scores against the mean human rating, accepted and rejected papers apart."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = [s.kind for s in report.scores]
    fig, axes = plt.subplots(1, len(kinds), figsize=(4.2 * len(kinds), 4), squeeze=False)
    for ax, kind in zip(axes[0], kinds, strict=True):
        for decision, colour in (("accept", "#2a9d8f"), ("reject", "#e76f51")):
            rows = [r for r in report.papers if r.decision.startswith(decision) and getattr(r, kind) is not None]
            ax.scatter(
                [r.human_mean for r in rows],
                [getattr(r, kind) for r in rows],
                s=16,
                c=colour,
                label=decision,
                alpha=0.8,
            )
        ax.plot([1, 10], [1, 10], ls="--", c="grey", lw=0.8)
        ax.set(xlim=(0.5, 10.5), ylim=(0.5, 10.5), xlabel="mean human rating", ylabel=f"reviewer ({kind})", title=kind)
        ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return path


def plot_metrics(report: CalibrationReport, path: Path) -> Path:
    """Each metric with its 95% interval, for every score kind and the human-human baseline."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups: list[ScoreMetrics] = [*report.scores, report.human_baseline, *report.baselines]
    names = [m for m in METRICS if m not in ("mae", "bias")]
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(names) * len(groups) / 2 + 2))
    colours = ["#264653", "#2a9d8f", "#e9c46a", "#9d4edd", "#e76f51", "#8d99ae", "#6c584c"]
    for g, group in enumerate(groups):
        for i, name in enumerate(names):
            vals = group.metrics[name]
            y = i + (g - (len(groups) - 1) / 2) * 0.18
            if vals["value"] is None:
                continue
            lo, hi = vals["low"], vals["high"]
            if lo is not None and hi is not None:
                ax.plot([lo, hi], [y, y], c=colours[g % len(colours)], lw=2)
            ax.plot([vals["value"]], [y], "o", c=colours[g % len(colours)], label=group.kind if i == 0 else None)
    ax.set_yticks(range(len(names)), [LABELS[n] for n in names])
    ax.axvline(0, c="grey", lw=0.6)
    ax.axvline(0.5, c="grey", lw=0.6, ls=":")
    ax.invert_yaxis()
    ax.set_xlabel("value (95% interval)")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return path


def report_markdown(report: CalibrationReport, plots: list[Path]) -> str:
    """The report as Markdown (plots linked by file name, next to the Markdown file)."""
    groups = [*report.scores, report.human_baseline, *report.baselines]
    lines = [
        f"# Reviewer calibration: {report.reviewer} on the {report.form} form",
        "",
        f"Data: `{report.data.get('path')}` (sha256 {str(report.data.get('sha256', ''))[:12]}...), "
        f"{report.selected} papers selected, {report.reviewed} reviewed ({report.accepted} accepted, "
        f"{report.rejected} rejected), {report.failed} failed. **Valid-form rate: {report.valid_form_rate:.1%}**.",
        "",
        f"Target: the mean human rating of each paper (for the oracle, the mean of the humans it did not return). "
        f"Intervals: {report.bootstrap_draws} bootstrap resamples of papers, 95% percentile. Balanced accuracy "
        f"predicts accept when the score is at least {report.threshold:g}. Within-group correlations are the ones "
        "free of the text-version confound (accepted papers' texts are camera-ready versions).",
        "",
        *[f"**Note:** {note}\n" for note in report.notes],
        "| metric | " + " | ".join(g.kind for g in groups) + " |",
        "|---|" + "---:|" * len(groups),
    ]
    for name in METRICS:
        lines.append(f"| {LABELS[name]} | " + " | ".join(_cell(g.metrics[name]) for g in groups) + " |")
    lines += ["", "Score kinds:", ""]
    lines += [f"- **{g.kind}** (n={g.n}): {g.description}" for g in groups]
    lines += _baseline_sections(report)
    u = report.usage
    lines += [
        "",
        f"Usage: {u.get('tokens_total')} tokens, {float(u.get('tokens_per_review') or 0):.0f} tokens per review, "
        f"{float(u.get('review_wall_s_mean') or 0):.1f} s per review "
        f"({float(u.get('reviews_per_hour') or 0):.0f} reviews per hour, one at a time).",
        "",
    ]
    fitted = report.calibration.get("fitted")
    if fitted:
        lines += [
            f"Calibration model fitted here: `{fitted['name']}` (ridge, alpha {fitted['alpha']:g}, features "
            f"{', '.join(fitted['features'])}). The calibrated figures above are nested cross-validated "
            "predictions on these same papers (no paper is scored by a model fitted on it); the dev set is the "
            "only split at hand, so there is no separate held-out test of the fitted model here.",
            "",
        ]
        if report.calibration.get("signal") is False:
            lines += [
                f"**This calibration shows no signal on its own validation ({report.calibration.get('figures')}).** "
                "Reviews it is applied to will not present a calibrated score; they say so, with these figures.",
                "",
            ]
    elif report.calibration.get("applied"):
        lines += [f"Calibration applied: {', '.join(report.calibration['applied'])}.", ""]
        if report.calibration.get("notes"):
            lines += ["Calibration notes: " + "; ".join(report.calibration["notes"]), ""]
    lines += [f"![{p.stem}]({p.name})" for p in plots]
    if report.failures:
        lines += ["", "## Failures", ""] + [f"- {k}: {v[:200]}" for k, v in report.failures.items()]
    lines += [
        "",
        "## Papers",
        "",
        "| id | decision | human mean | raw | calibrated | meta | length | bow | characters | tokens |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report.papers:
        fmt = lambda v: "" if v is None else f"{v:.2f}"  # noqa: E731
        lines.append(
            f"| {r.id} | {r.decision} | {r.human_mean:.2f} | {fmt(r.raw)} | {fmt(r.calibrated)} | {fmt(r.meta)} "
            f"| {fmt(r.length)} | {fmt(r.bow)} | {r.text_chars or ''} | {r.tokens or ''} |"
        )
    return "\n".join(lines) + "\n"


def _baseline_sections(report: CalibrationReport) -> list[str]:
    """Partial Spearman controlling for length, the verdicts, and the reliability, as Markdown lines."""
    lines: list[str] = []
    if report.partial_length:
        lines += [
            "",
            "## Controlling for text length",
            "",
            "Spearman with the mean human rating after text length is accounted for (partial rank correlation; "
            "95% bootstrap intervals). A score that only rewards long papers falls to about 0 here.",
            "",
            "| score | all | accepted | rejected |",
            "|---|---:|---:|---:|",
        ]
        if report.length_spearman:
            lines.insert(
                -4,
                "Text length itself (characters, no fit) has Spearman "
                + ", ".join(f"{_cell(report.length_spearman[s])} ({s})" for s in ("all", "accepted", "rejected"))
                + " with the mean human rating here.\n",
            )
        for kind, strata in report.partial_length.items():
            lines.append(f"| {kind} | " + " | ".join(_cell(strata[s]) for s in ("all", "accepted", "rejected")) + " |")
    if report.verdicts:
        lines += ["", "## Verdicts against the baselines", ""]
        lines += [f"- {v.line}" for v in report.verdicts]
        lines += [
            "",
            "Each difference is the reviewer's Spearman minus the baseline's on the same papers, with a paired "
            "bootstrap 95% interval; 'beats' needs the overall interval above 0.",
        ]
    rel = report.reliability
    if rel is not None:
        icc = "undefined (every rating equal)" if rel.icc is None else f"{rel.icc:.2f}"
        lines += [
            "",
            "## Test-retest reliability",
            "",
            f"From {rel.source}: {rel.n_papers} papers, {rel.k_mean:.1f} ratings each. Within-paper SD "
            f"{rel.within_sd:.2f} rating points; ICC(1) {icc}"
            + (f" [{rel.icc_interval[0]:.2f}, {rel.icc_interval[1]:.2f}]" if rel.icc_interval[0] is not None else "")
            + (f"; ICC of the mean of {rel.k_mean:.0f}: {rel.icc_mean:.2f}" if rel.icc_mean is not None else "")
            + ". `fars compare --noise` can take this file to size the smallest detectable effect.",
        ]
    return [*lines, ""]
