"""Experiment tracking: Weights & Biases (offline by default) or nothing.

Every tracker call is guarded: a failing tracker logs one warning and the run goes on.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from fars.config import TrackerConfig
from fars.run.records import ProjectStatus, ProjectSummary, RunRecord
from fars.run.summary import Progress

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])

PAPER_COLUMNS: list[str | int] = [
    "project",
    "status",
    "title",
    "rating",
    "soundness",
    "presentation",
    "contribution",
    "confidence",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "ideation_s",
    "planning_s",
    "experiment_s",
    "writing_s",
    "review_s",
    "grounded_number_rate",
    "verified_citation_rate",
    "grounding_flagged",
    "claim_grounding_rate",
    "degenerate_fields",
]


def guarded(method: F) -> F:
    """Wrap a tracker method so an exception becomes a warning and disables the tracker."""

    @functools.wraps(method)
    def wrapper(self: WandbTracker, *args: Any, **kwargs: Any) -> Any:
        if self.broken:
            return None
        try:
            return method(self, *args, **kwargs)
        except Exception as exc:  # a tracker must never stop the run
            self.broken = True
            log.warning(
                "W&B tracking failed in %s (%s: %s); the run goes on without it",
                method.__name__,
                type(exc).__name__,
                exc,
            )
            return None

    return wrapper  # type: ignore[return-value]  # functools.wraps loses the Callable type the decorator promises


class NullTracker:
    """Tracking switched off."""

    def start(self, config: dict[str, Any], run_dir: Path, name: str, run_id: str | None = None) -> None:
        """Do nothing."""

    def log_project(self, project: ProjectSummary, progress: Progress) -> None:
        """Do nothing."""

    def finish(self, record: RunRecord) -> None:
        """Do nothing."""


def paper_row(p: ProjectSummary) -> list[Any]:
    """One row of the per-paper table."""
    sub = p.review.subscores if p.review is not None else {}
    secs = p.stage_seconds
    return [
        p.id,
        p.status.value,
        p.title,
        p.rating,
        sub.get("soundness"),
        sub.get("presentation"),
        sub.get("contribution"),
        sub.get("confidence"),
        p.usage.input_tokens,
        p.usage.output_tokens,
        p.usage.cost_usd,
        *(round(secs.get(s, 0.0), 2) for s in ("ideation", "planning", "experiment", "writing", "review")),
        p.grounded_number_rate,
        p.verified_citation_rate,
        p.grounding_flagged,
        p.claim_grounding_rate,
        p.degenerate_fields,
    ]


class WandbTracker:
    """Logs config, per-project progress, the per-paper table, funnel, usage and scores to W&B."""

    def __init__(self, cfg: TrackerConfig) -> None:
        self.cfg = cfg
        self.broken = False
        self.run: Any = None
        self.run_dir: Path | None = None

    @guarded
    def start(self, config: dict[str, Any], run_dir: Path, name: str, run_id: str | None = None) -> None:
        """Open the W&B run (offline unless configured online) in the run folder.

        ``run_id`` (kept in the run's ledger) makes every session of a resumed run continue the same
        W&B run (``resume="allow"``) instead of opening a new one.
        """
        os.environ.setdefault("WANDB_DISABLE_WEAVE", "true")  # no Weave advertisement: litellm is imported
        import wandb

        self.run_dir = run_dir
        overrides = run_dir / ".hydra" / "overrides.yaml"  # a sweep job is named by what it changes
        if self.cfg.group and overrides.is_file():
            import yaml

            # overrides every job of the sweep shares (as typed on the command line) do not name a job
            sweep_file = run_dir.parent / "multirun.yaml"
            shared: set[str] = set()
            if sweep_file.is_file():
                sweep = yaml.safe_load(sweep_file.read_text(encoding="utf-8")) or {}
                shared = set(sweep.get("hydra", {}).get("overrides", {}).get("task", []) or [])
            changed = [
                o
                for o in yaml.safe_load(overrides.read_text(encoding="utf-8")) or []
                if not o.startswith("hydra.") and o not in shared
            ]
            name = f"{name}: {' '.join(changed)}" if changed else name
        self.run = wandb.init(
            project=self.cfg.project,
            entity=self.cfg.entity,
            group=self.cfg.group,
            job_type="sweep-job" if self.cfg.group else "run",
            tags=list(self.cfg.tags),
            name=name,
            mode=self.cfg.mode,
            dir=str(run_dir),
            config=config,
            id=run_id,
            resume="allow" if run_id else None,
            settings=wandb.Settings(console="off", silent=True, x_disable_stats=True),
        )

    @guarded
    def log_project(self, project: ProjectSummary, progress: Progress) -> None:
        """Log running totals when a project ends, and what the project made: its ratings (final, raw,
        calibrated, area chair's), its training curves (one table a project), its figures, and its paper
        (Markdown and PDF) and review as a W&B artifact of type ``paper``."""
        self.run.log(
            {
                **project_ratings(project),
                **({"failed": 1} if project.status == ProjectStatus.failed else {}),
                "projects_finished": progress.finished,
                "papers": progress.papers,
                "tokens/total": progress.usage.total_tokens,
                "cost_usd/total": progress.usage.cost_usd,
                "papers_per_hour": progress.papers_per_hour,
                **(
                    {
                        "grounding/last_number_rate": project.grounded_number_rate,
                        "grounding/last_citation_rate": project.verified_citation_rate,
                    }
                    if project.grounded_number_rate is not None and project.verified_citation_rate is not None
                    else {}
                ),
            }
        )

        if self.run_dir is not None:
            self._log_outputs(project, self.run_dir)

    def _log_outputs(self, project: ProjectSummary, run_dir: Path) -> None:
        import wandb

        files = [(a.kind, run_dir / a.path) for a in project.artifacts]
        files = [(kind, path) for kind, path in files if path.is_file() and not path.is_symlink()]
        rows = []
        for kind, path in files:
            if kind == "results" and path.name == "metrics.json":
                rows += curve_rows(project.id, path)
        logged: dict[str, Any] = {}
        if rows:
            logged[f"curves/{project.id}"] = wandb.Table(columns=CURVE_COLUMNS, data=rows)
        for kind, path in files:
            if kind == "figure" and path.suffix == ".png":
                logged[f"figures/{project.id}/{path.stem}"] = wandb.Image(str(path))
        if logged:
            self.run.log(logged)
        papers = [
            (kind, path) for kind, path in files if kind in ("paper", "review") and path.suffix in (".md", ".pdf")
        ]
        if papers:
            artifact = wandb.Artifact(
                f"paper-{project.id}",
                type="paper",
                metadata={
                    "title": project.title,
                    "rating": project.rating,
                    "status": project.status.value,
                },
            )
            for _, path in papers:
                artifact.add_file(str(path), name=path.name)
            self.run.log_artifact(artifact)

    @guarded
    def finish(self, record: RunRecord) -> None:
        """Log the paper table, funnel, usage by stage and score distribution; close the run."""
        import wandb

        if self.run is None:  # the run failed before the tracker started: nothing to close
            return

        table = wandb.Table(columns=PAPER_COLUMNS, data=[paper_row(p) for p in record.projects])
        scalars = summary_metrics(record)
        summary: dict[str, Any] = {"papers_table": table, **scalars}
        if record.scores:
            summary["score/hist"] = wandb.Histogram(record.scores, num_bins=10)
        self.run.log(summary)
        for key, value in scalars.items():
            self.run.summary[key] = value
        self.run.summary["status"] = record.status
        if record.error:
            self.run.summary["error"] = record.error[:500]
        self.run.finish(exit_code=0 if record.status == "completed" else 1)


CURVE_COLUMNS: list[str | int] = ["project", "condition", "seed", "step", "val_metric", "train_loss", "val_loss"]


def curve_rows(project: str, metrics_path: Path) -> list[list[Any]]:
    """One row per logged step of a training run's ``metrics.json`` (the run folder names its condition)."""
    from experiments.metrics import read_metrics

    try:
        metrics = read_metrics(metrics_path)
    except (OSError, ValueError):
        return []
    condition = metrics_path.parent.name.rsplit("-seed", 1)[0]
    curves = metrics.curves

    def at(values: list[float], i: int) -> float | None:
        return values[i] if i < len(values) else None

    return [
        [
            project,
            condition,
            metrics.seed,
            step,
            at(curves.val_metric, i),
            at(curves.train_loss, i),
            at(curves.val_loss, i),
        ]
        for i, step in enumerate(curves.step)
    ]


def project_ratings(project: ProjectSummary) -> dict[str, float]:
    """The project's final rating and, where there are, the raw, calibrated and area chair's ratings."""
    out: dict[str, float] = {}
    if project.rating is not None:
        out["score/last"] = project.rating
    review = project.review
    if review is not None:
        out["score/last_raw"] = review.raw_rating
        if review.calibrated_rating is not None:
            out["score/last_calibrated"] = review.calibrated_rating
        if review.meta_rating is not None:
            out["score/last_area_chair"] = review.meta_rating
    return out


def summary_metrics(record: RunRecord) -> dict[str, float | int]:
    """The run's scalar results as W&B summary metrics, each equal to the RunRecord's figure.

    The dashboard (``fars.evaluation.dashboard``) plots these names; keep the two in step.
    """
    overall = record.totals.overall
    papers = record.papers
    metrics: dict[str, float | int] = {
        "papers": papers,
        "projects": len(record.projects),
        "papers_per_hour": record.papers_per_hour,
        "wall_s": record.wall_s,
        "tokens/total": overall.total_tokens,
        "tokens/input": overall.input_tokens,
        "tokens/output": overall.output_tokens,
        "cost_usd/total": overall.cost_usd,
        "calls/total": overall.calls,
        "calls/cache_hits": overall.cache_hits,
        "tokens/cached_input": overall.cached_input_tokens,  # served by a prompt cache (provider or embedded)
        "tokens/evaluated_input": overall.evaluated_input_tokens,
        "cost_usd/saved": overall.saved_usd,  # what the cached input tokens saved at litellm's prices
        **{f"funnel/{k}": v for k, v in record.funnel.model_dump().items()},
        **{f"tokens/{stage}": u.total_tokens for stage, u in record.totals.by_stage.items()},
        **{f"cost_usd/{stage}": u.cost_usd for stage, u in record.totals.by_stage.items()},
    }
    if papers:
        metrics["tokens_per_paper"] = overall.total_tokens / papers
        metrics["cost_usd_per_paper"] = overall.cost_usd / papers
    if record.grounded_number_rate is not None and record.verified_citation_rate is not None:
        metrics["grounding/number_rate"] = record.grounded_number_rate
        metrics["grounding/citation_rate"] = record.verified_citation_rate
        metrics["grounding/papers_flagged"] = record.papers_flagged
    if record.claim_grounding_rate is not None:
        metrics["grounding/claim_rate"] = record.claim_grounding_rate
    if record.claims_before_rate is not None:
        metrics["grounding/claim_rate_before_repair"] = record.claims_before_rate
    if record.degenerate_rate is not None:
        metrics["text/degenerate_rate"] = record.degenerate_rate
    if record.scores:
        metrics["score/mean"] = record.mean_score if record.mean_score is not None else 0.0
        metrics["score/n"] = len(record.scores)
        metrics["score/min"] = min(record.scores)
        metrics["score/max"] = max(record.scores)
    return metrics


def make_tracker(cfg: TrackerConfig) -> NullTracker | WandbTracker:
    """The tracker the config asks for."""
    return WandbTracker(cfg) if cfg.backend == "wandb" else NullTracker()
