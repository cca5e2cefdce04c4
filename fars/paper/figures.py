"""Figures of an experiment: each condition's metric with its interval, and the learning curves.

``condition_figure`` draws the template's metric for every condition (mean over seeds, the Student-t
interval of the mean, each seed as a dot, the baseline's mean as a reference line, conditions the
corrected test calls better or worse marked). ``learning_curve_figures`` draws one figure per
quantity (the metric, and training plus validation loss when the template trains): each condition's
mean over seeds as a line with a band of one standard deviation, clipped to the quantity's range (an
accuracy stays in [0, 1], a loss above 0). Written as PNG (Markdown, and LaTeX when no PDF is drawn)
and, when the paper will be compiled, as vector PDF (LaTeX), with matplotlib's object API (no pyplot
state). The Experiment stage calls these in a worker process (``fars.offload``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from experiments.metrics import Metrics
from fars.run.contracts import ConditionResult, FigureFile

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def mean_curve(runs: list[Metrics], key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Steps, mean and standard deviation of one curve over runs (truncated to the shortest run)."""
    length = min(len(m.curves.step) for m in runs)
    values = np.array([getattr(m.curves, key)[:length] for m in runs], dtype=float)
    steps = np.array(runs[0].curves.step[:length])
    std = values.std(axis=0, ddof=1) if len(runs) > 1 else np.zeros(length)
    return steps, values.mean(axis=0), std


def band_limits(values: np.ndarray) -> tuple[float, float]:
    """The natural range of a quantity seen in ``values``: [0, 1] for shares, [0, inf) for non-negatives."""
    finite = values[np.isfinite(values)]
    if finite.size and finite.min() >= 0 and finite.max() <= 1:
        return 0.0, 1.0
    if finite.size and finite.min() >= 0:
        return 0.0, float("inf")
    return -float("inf"), float("inf")


def _by_test(table: dict[str, ConditionResult]) -> str:
    """How the figure's verdicts were tested, as the table's rows were (families or one Holm family)."""
    families = [row.family for row in table.values() if row.family and not row.registered_against]
    # an ablation's mark is its descriptive test against the baseline; its registered test, against what it ablates,
    # is the table's (a relay figure marked an ablation "better" beside the table's "worse (vs method)")
    ablations = (
        "; an ablation's mark is its uncorrected, descriptive test against the baseline (its registered test, "
        "against the condition it ablates, is in the table)"
        if any(row.registered_against for row in table.values())
        else ""
    )
    if families:
        # Holm only where a family has more than one member: a relay figure's caption named Holm's correction
        # with one comparison in it
        corrected = any(families.count(f) > 1 for f in set(families) if f != "primary")
        others = "the others with Holm's correction within their family" if corrected else "each other one uncorrected"
        if families == ["primary"]:
            return f"by the pre-registered primary test the results table names{ablations}"
        return f"by the test the results table names for each (the pre-registered primary alone, {others}){ablations}"
    return "after Holm's correction" if len(table) > 2 else "by a two-sided Welch t-test"


def _paths(folder: Path, stem: str, project_dir: Path, vector: bool) -> tuple[str, str | None]:
    """A figure's PNG and (with ``vector``) PDF, relative to the project folder."""
    png, pdf = folder / f"{stem}.png", folder / f"{stem}.pdf"
    return str(png.relative_to(project_dir)), str(pdf.relative_to(project_dir)) if vector else None


def _save(fig: Figure, folder: Path, stem: str, project_dir: Path, vector: bool) -> tuple[str, str | None]:
    png, pdf = folder / f"{stem}.png", folder / f"{stem}.pdf"
    fig.savefig(png)
    if vector:
        fig.savefig(pdf)
    return _paths(folder, stem, project_dir, vector)


def experiment_figures(
    per_condition: dict[str, list[Metrics]],
    table: dict[str, ConditionResult],
    metric: str,
    higher_is_better: bool,
    folder: Path,
    project_dir: Path,
    vector: bool = True,
    draw: bool = True,
) -> list[FigureFile]:
    """Every figure of an experiment, the conditions' metric first, then the learning curves; ``draw=False``
    gives the same files and captions without drawing them (the Experiment stage lists them while a worker
    draws them)."""
    return [
        condition_figure(table, metric, higher_is_better, folder, project_dir, vector=vector, draw=draw),
        *learning_curve_figures(per_condition, metric, folder, project_dir, vector=vector, draw=draw),
    ]


def condition_figure(
    table: dict[str, ConditionResult],
    metric: str,
    higher_is_better: bool,
    folder: Path,
    project_dir: Path,
    vector: bool = True,
    draw: bool = True,
) -> FigureFile:
    """The metric of every condition: mean, interval, seeds, the baseline line; verdicts in the labels."""
    seeds = max(len(r.values) for r in table.values())
    caption = (
        f"Final {metric.replace('_', ' ')} of each condition: mean over up to {seeds} seeds (dots) with its "
        "95% Student-t interval (cut to the metric's range); the dashed line is the baseline's mean. Conditions marked better or worse "
        f"differ from the baseline {_by_test(table)}."
    )
    stem = f"conditions_{metric}"
    if not draw:
        png, pdf = _paths(folder, stem, project_dir, vector)
        return FigureFile(png=png, pdf=pdf, caption=caption)
    from matplotlib.figure import Figure

    folder.mkdir(parents=True, exist_ok=True)
    names = list(table)
    fig = Figure(figsize=(5.0, 0.6 + 0.42 * len(names)), dpi=150)
    ax = fig.add_subplot()
    base = table["baseline"].metric.mean
    ax.axvline(base, color="0.6", linewidth=1, linestyle="--", label="baseline mean")
    colors = {"better": "C2", "worse": "C3"}
    for y, name in enumerate(names):
        row = table[name]
        color = colors.get(row.verdict, "C0")
        low = row.ci_low if row.ci_low is not None else row.metric.mean
        high = row.ci_high if row.ci_high is not None else row.metric.mean
        ax.errorbar(
            row.metric.mean,
            y,
            xerr=[[row.metric.mean - low], [high - row.metric.mean]],
            fmt="o",
            color=color,
            capsize=3,
        )
        ax.scatter(row.values, [y] * len(row.values), s=9, color=color, alpha=0.45, zorder=3)
    labels = [f"{n} ({table[n].verdict})" if table[n].verdict in colors else n for n in names]
    ax.set_yticks(range(len(names)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel(f"{metric.replace('_', ' ')} ({'higher' if higher_is_better else 'lower'} is better)")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    png, pdf = _save(fig, folder, stem, project_dir, vector)
    return FigureFile(png=png, pdf=pdf, caption=caption)


def learning_curve_figures(
    per_condition: dict[str, list[Metrics]],
    metric: str,
    folder: Path,
    project_dir: Path,
    vector: bool = True,
    draw: bool = True,
) -> list[FigureFile]:
    """Draw the learning curves into ``folder``; return their files (relative to ``project_dir``) and captions.

    ``vector``: also write each as PDF (about 40% of the drawing cost; only a LaTeX compile uses it). ``draw``:
    False gives the files and captions only.
    """
    runs = {name: ms for name, ms in per_condition.items() if ms}
    seeds = max(len(ms) for ms in runs.values())
    has_losses = all(m.curves.val_loss and m.curves.train_loss for ms in runs.values() for m in ms)
    panels = [("val_metric", metric.replace("_", " "), f"curve_{metric}")]
    if has_losses:
        panels.append(("loss", "loss", "curve_loss"))
    out = []
    for key, label, stem in panels:
        what = (
            f"Validation {metric.removeprefix('val_').replace('_', ' ')}"
            if key != "loss"
            else "Training (dotted) and validation (solid) loss"
        )
        caption = (
            f"{what} over steps for each condition; lines are means over up to {seeds} seeds, bands "
            "one standard deviation (clipped to the quantity's range)."
        )
        if draw:
            png, pdf = _draw_curves(runs, key, label, folder, stem, project_dir, vector)
        else:
            png, pdf = _paths(folder, stem, project_dir, vector)
        out.append(FigureFile(png=png, pdf=pdf, caption=caption))
    return out


def _draw_curves(
    runs: dict[str, list[Metrics]], key: str, label: str, folder: Path, stem: str, project_dir: Path, vector: bool
) -> tuple[str, str | None]:
    """One learning-curve panel drawn and saved."""
    from matplotlib.figure import Figure

    folder.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(5.0, 3.4), dpi=150)
    ax = fig.add_subplot()
    for i, (name, ms) in enumerate(runs.items()):
        color = f"C{i % 10}"
        keys = [("val_loss", "-"), ("train_loss", ":")] if key == "loss" else [(key, "-")]
        for curve, style in keys:
            steps, mean, std = mean_curve(ms, curve)
            low, high = band_limits(np.concatenate([np.asarray(getattr(m.curves, curve), float) for m in ms]))
            suffix = f" ({curve.split('_')[0]})" if key == "loss" else ""
            ax.plot(steps, mean, style, color=color, label=f"{name}{suffix}", linewidth=1.5)
            ax.fill_between(
                steps,
                np.clip(mean - std, low, high),
                np.clip(mean + std, low, high),
                color=color,
                alpha=0.18,
                linewidth=0,
            )
    ax.set_xlabel("step")
    ax.set_ylabel(label)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, frameon=False)
    fig.tight_layout()
    return _save(fig, folder, stem, project_dir, vector)
