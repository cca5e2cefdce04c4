"""The one acceptance of what a training job reports, before any of it is aggregated, plotted or written.

``accept_metrics`` reads a job's ``metrics.json`` (``read_metrics``: no link followed, no FIFO blocked on, a
bounded size, the ``Metrics`` schema) and checks it (``check_result``). A file that fits the schema may
still be poison: model-written code controls its own file, so it can report NaN, infinity or 1e300 (named
best, then ``OverflowError`` while writing), leave out the template's metric (``KeyError`` in aggregation),
or carry millions of curve points (gigabytes while plotting). Either way the job ends in ``ResultRejected``
with every problem named, a ``JobFailed`` like any other failed job: the Experiment stage counts it as a
failed job of its condition, never of the project.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path

from pydantic import ValidationError

from experiments.metrics import Metrics
from fars.executor.launch import JobFailed
from fars.safe_files import UnsafeFileError, read_file, write_atomic

METRICS_FILE = "metrics.json"
# a metrics.json is a few kB (a long run's curves a few hundred); anything far larger is refused unread
METRICS_MAX_BYTES = 8 * 1024 * 1024
VALUE_LIMIT = 1e9  # no loss or metric of a training run is larger; sums and means of these cannot overflow
MAX_CURVE_POINTS = 10_000
MAX_KEYS = 64  # entries of ``final``, ``config`` and ``provenance.files``
MAX_TEXT = 512  # characters of any name or value string
# besides the template's metric, nothing in ``final`` is required: a policy-gradient or inference template
# reports no losses, and aggregation reads the other values only where every seed has them
REQUIRED: tuple[str, ...] = ()


class ResultRejected(JobFailed):
    """A job's result that must not be used (missing, unsafe, not metrics, or poison); ``problems`` holds one
    line per problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("result refused: " + "; ".join(problems[:8]) + (" ..." if len(problems) > 8 else ""))


def _bad_numbers(
    label: str, values: Iterable[float], *, low: float = -VALUE_LIMIT, high: float = VALUE_LIMIT
) -> list[str]:
    """The first value that is not a finite number within [low, high], as one problem (or none)."""
    for i, value in enumerate(values):
        if not isinstance(value, int | float) or not math.isfinite(value):
            return [f"{label}[{i}] is {value!r}, not a finite number"]
        if not low <= value <= high:
            return [f"{label}[{i}] is {value:g}, outside [{low:g}, {high:g}]"]
    return []


def result_problems(
    metrics: Metrics, metric: str, *, seed: int | None = None, template: str | None = None
) -> list[str]:
    """Every reason ``metrics`` cannot be used as a result for the template metric ``metric`` (empty: fine)."""
    problems: list[str] = []
    if metrics.metric != metric:
        problems.append(f"metric is {metrics.metric[:MAX_TEXT]!r}, the template reports {metric!r}")
    if template is not None and metrics.template != template:
        problems.append(f"template is {metrics.template[:MAX_TEXT]!r}, the job ran {template!r}")
    if seed is not None and metrics.seed != seed:
        problems.append(f"seed is {metrics.seed}, the job ran seed {seed}")
    missing = [key for key in (metric, *REQUIRED) if key not in metrics.final]
    if missing:
        problems.append(f"final lacks {', '.join(missing)}")
    for name, mapping in (
        ("final", metrics.final),
        ("config", metrics.config),
        ("provenance.files", metrics.provenance.files),
    ):
        if len(mapping) > MAX_KEYS:
            problems.append(f"{name} has {len(mapping)} entries, more than {MAX_KEYS}")
    for key, value in list(metrics.final.items())[:MAX_KEYS]:
        low = 0.0 if key.endswith("loss") else -VALUE_LIMIT
        problems += _bad_numbers(f"final.{key[:MAX_TEXT]}", [value], low=low)
    curves = metrics.curves
    if len(curves.step) > MAX_CURVE_POINTS:
        problems.append(f"curves have {len(curves.step):,} points, more than {MAX_CURVE_POINTS:,}")
    else:
        problems += _bad_numbers("curves.step", curves.step, low=0)
        for name in ("train_loss", "val_loss", "val_metric"):
            problems += _bad_numbers(
                f"curves.{name}", getattr(curves, name), low=0.0 if "loss" in name else -VALUE_LIMIT
            )
    scalars = {
        "wall_s": metrics.wall_s,
        "examples_per_s": metrics.examples_per_s,
        "tokens_per_s": metrics.tokens_per_s,
        "steps": metrics.steps,
    }
    for name, value in scalars.items():
        problems += _bad_numbers(name, [value], low=0.0)
    problems += _bad_numbers("parameters", [metrics.parameters], low=0, high=1e13)
    if metrics.flops_per_token is not None:
        problems += _bad_numbers("flops_per_token", [metrics.flops_per_token], low=0.0, high=1e15)
    if metrics.mfu is not None:  # a share of the device's peak
        problems += _bad_numbers("mfu", [metrics.mfu], low=0.0, high=1.0)
    texts = [
        metrics.template,
        metrics.engine,
        metrics.device,
        metrics.precision,
        metrics.device_name,
        metrics.method or "",
        *map(str, metrics.config.values()),
        *metrics.config,
    ]
    if any(len(text) > MAX_TEXT for text in texts[: 6 + 2 * MAX_KEYS]):
        problems.append(f"a name or setting is longer than {MAX_TEXT} characters")
    return problems


def check_result(
    metrics: Metrics, metric: str | None = None, *, seed: int | None = None, template: str | None = None
) -> Metrics:
    """``metrics`` when it can be used as a result for ``metric`` (the result's own metric when not given);
    ``ResultRejected`` naming every problem otherwise."""
    problems = result_problems(metrics, metric or metrics.metric, seed=seed, template=template)
    if problems:
        raise ResultRejected(problems)
    return metrics


def read_metrics(out_dir: Path) -> Metrics:
    """The ``metrics.json`` a job wrote, as ``Metrics``; ``ResultRejected`` when it is absent, unsafe (a link,
    a special file, too large) or not metrics."""
    try:
        data = read_file(out_dir, METRICS_FILE, max_bytes=METRICS_MAX_BYTES)
    except FileNotFoundError:
        raise ResultRejected([f"job {out_dir.name} wrote no {METRICS_FILE} (log beside it)"]) from None
    except UnsafeFileError as exc:
        raise ResultRejected([f"job {out_dir.name}: {METRICS_FILE} refused: {exc.strerror}"]) from None
    try:
        return Metrics.model_validate_json(data)
    except (ValidationError, ValueError) as exc:
        raise ResultRejected([f"job {out_dir.name}: {METRICS_FILE} is not valid metrics: {str(exc)[:500]}"]) from None


def accept_metrics(
    out_dir: Path, metric: str | None = None, *, seed: int | None = None, rewrite: bool = False
) -> Metrics:
    """The job's ``metrics.json`` when it can be used as its result (``read_metrics``, then ``check_result``);
    ``ResultRejected`` naming why not.

    With ``rewrite`` (a sandboxed job) the metrics read replace the file the job left, checked or not, so what
    the harness reads later is a regular file the harness wrote, not one model code controls.
    """
    metrics = read_metrics(out_dir)
    if rewrite:
        write_atomic(out_dir, METRICS_FILE, metrics.model_dump_json(indent=1))
    return check_result(metrics, metric, seed=seed)
