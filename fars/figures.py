"""Learning-curve figures of an experiment, drawn from its runs' ``metrics.json`` curves.

One figure per quantity (the template's metric, and training plus validation loss): each condition's
mean over seeds as a line with a band of one standard deviation. Written as PNG (Markdown, and LaTeX
when no PDF is drawn) and, when the paper will be compiled, as vector PDF (LaTeX), with matplotlib's
object API (no pyplot state). The Experiment stage calls it in a worker process (``fars.offload``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from experiments.metrics import Metrics
from fars.contracts import FigureFile


def mean_curve(runs: list[Metrics], key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Steps, mean and standard deviation of one curve over runs (truncated to the shortest run)."""
    length = min(len(m.curves.step) for m in runs)
    values = np.array([getattr(m.curves, key)[:length] for m in runs], dtype=float)
    steps = np.array(runs[0].curves.step[:length])
    std = values.std(axis=0, ddof=1) if len(runs) > 1 else np.zeros(length)
    return steps, values.mean(axis=0), std


def learning_curve_figures(
    per_condition: dict[str, list[Metrics]], metric: str, folder: Path, project_dir: Path, vector: bool = True
) -> list[FigureFile]:
    """Draw the figures into ``folder``; return their files (relative to ``project_dir``) and captions.

    ``vector``: also write each as PDF (about 40% of the drawing cost; only a LaTeX compile uses it).
    """
    from matplotlib.figure import Figure

    folder.mkdir(parents=True, exist_ok=True)
    runs = {name: ms for name, ms in per_condition.items() if ms}
    seeds = max(len(ms) for ms in runs.values())
    panels = [
        ("val_metric", metric.replace("_", " "), f"curve_{metric}"),
        ("loss", "cross-entropy loss", "curve_loss"),
    ]
    out = []
    for key, label, stem in panels:
        fig = Figure(figsize=(5.0, 3.4), dpi=150)
        ax = fig.add_subplot()
        for i, (name, ms) in enumerate(runs.items()):
            color = f"C{i}"
            keys = [("val_loss", "-"), ("train_loss", ":")] if key == "loss" else [(key, "-")]
            for curve, style in keys:
                steps, mean, std = mean_curve(ms, curve)
                suffix = f" ({curve.split('_')[0]})" if key == "loss" else ""
                ax.plot(steps, mean, style, color=color, label=f"{name}{suffix}", linewidth=1.5)
                ax.fill_between(steps, mean - std, mean + std, color=color, alpha=0.18, linewidth=0)
        ax.set_xlabel("training step")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, frameon=False)
        fig.tight_layout()
        png, pdf = folder / f"{stem}.png", folder / f"{stem}.pdf"
        fig.savefig(png)
        if vector:
            fig.savefig(pdf)
        what = (
            f"Validation {metric.removeprefix('val_').replace('_', ' ')}"
            if key != "loss"
            else "Training (dotted) and validation (solid) loss"
        )
        out.append(
            FigureFile(
                png=str(png.relative_to(project_dir)),
                pdf=str(pdf.relative_to(project_dir)) if vector else None,
                caption=f"{what} over training steps for each condition; lines are means over up to {seeds} "
                "seeds, bands one standard deviation.",
            )
        )
    return out
