"""Experiment: train the planned conditions over seeds, then aggregate with a significance test.

Each (condition, seed) is one ``python -m <template>.train`` subprocess with its own folder, log,
time limit, one thread, and an environment without secrets; it writes ``metrics.json``. Runs that
already wrote a valid ``metrics.json`` (a resumed project) are not trained again. Jobs share the
run's experiment slots (``executor.slots``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import signal
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from scipy import stats

from experiments.metrics import Metrics, read_metrics
from experiments.spec import load_template
from fars.config import FarsConfig
from fars.stages.base import StageContext, StageFn, StageOutput, register_stage
from fars.stages.planning import Plan

# environment variables a training job may see; everything else (API keys, tokens) is dropped
_ENV_KEEP = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "VIRTUAL_ENV", "PYTHONPATH", "TORCH_EXTENSIONS_DIR")


class ExperimentError(RuntimeError):
    """A training job failed; the message carries the tail of its log."""


def job_env(threads: int) -> dict[str, str]:
    """A minimal environment for a training job: no secrets, one thread unless configured."""
    env = {k: v for k, v in os.environ.items() if k in _ENV_KEEP}
    env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1")
    return env


async def train_one(
    module: str,
    overrides: dict[str, Any],
    seed: int,
    steps: int,
    out_dir: Path,
    *,
    timeout_s: float,
    threads: int,
) -> Metrics:
    """Run one training job (or reuse its finished metrics) and return its validated metrics."""
    metrics_path = out_dir / "metrics.json"
    if metrics_path.exists():
        try:
            return read_metrics(metrics_path)
        except (ValidationError, ValueError):
            metrics_path.unlink()  # a half-written file from a killed run: train again
    out_dir.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        module,
        "--out_dir",
        str(out_dir),
        "--seed",
        str(seed),
        "--steps",
        str(steps),
    ]
    for key, value in overrides.items():
        cmd += [f"--{key}", str(value)]
    log_path = out_dir / "train.log"
    with log_path.open("wb") as log_file:
        proc = await asyncio.create_subprocess_exec(
            *cmd,
            stdout=log_file,
            stderr=asyncio.subprocess.STDOUT,
            env=job_env(threads),
            start_new_session=True,
        )
        try:
            code = await asyncio.wait_for(proc.wait(), timeout=timeout_s)
        except (asyncio.TimeoutError, asyncio.CancelledError):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
            raise
    if code != 0:
        tail = log_path.read_text(errors="replace")[-1500:]
        raise ExperimentError(f"{' '.join(cmd[2:4])} seed {seed} exited {code}; log {log_path}:\n{tail}")
    return read_metrics(metrics_path)


def summarise(values: list[float]) -> dict[str, float]:
    """Mean, sample standard deviation and count."""
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return {"mean": mean, "std": std, "n": n}


def welch_p(a: list[float], b: list[float]) -> float | None:
    """Two-sided Welch t-test p-value of a against b; None when it is undefined."""
    if len(a) < 2 or len(b) < 2:
        return None
    p = float(stats.ttest_ind(a, b, equal_var=False).pvalue)
    return None if math.isnan(p) else p


@register_stage("experiment")
def experiment(cfg: FarsConfig) -> StageFn:
    """Factory of the Experiment stage."""

    async def run(ctx: StageContext) -> StageOutput:
        plan = Plan.model_validate(ctx.outputs["planning"]["plan"])
        template = load_template(plan.template)
        base = template.defaults()
        slots = ctx.semaphores["experiment"]

        async def job(condition: str, overrides: dict[str, Any], seed: int) -> tuple[str, int, Metrics | str]:
            folder = ctx.project_dir / "runs" / f"{_slug(condition)}-seed{seed}"
            async with slots:
                try:
                    metrics = await train_one(
                        template.module,
                        {**base, **overrides},
                        seed,
                        plan.steps,
                        folder,
                        timeout_s=cfg.experiment.timeout_s,
                        threads=cfg.experiment.threads_per_job,
                    )
                except (ExperimentError, asyncio.TimeoutError) as exc:
                    return condition, seed, f"{type(exc).__name__}: {exc}"
            ctx.record_artifact("results", folder / "metrics.json")
            return condition, seed, metrics

        jobs = [job(name, ov, seed) for name, ov in plan.conditions().items() for seed in plan.seeds]
        finished = await asyncio.gather(*jobs)
        per_condition: dict[str, list[Metrics]] = {name: [] for name in plan.conditions()}
        failures = []
        for condition, seed, result in finished:
            if isinstance(result, Metrics):
                per_condition[condition].append(result)
            else:
                failures.append({"condition": condition, "seed": seed, "error": result[-500:]})
        if not per_condition["baseline"] or not any(per_condition[c] for c in per_condition if c != "baseline"):
            raise ExperimentError(f"too many training jobs failed to compare anything: {failures[:2]}")
        metric = template.metric
        baseline_values = [m.final[metric] for m in per_condition["baseline"]]
        conditions: dict[str, dict[str, Any]] = {}
        for name, runs in per_condition.items():
            if not runs:
                continue
            values = [m.final[metric] for m in runs]
            conditions[name] = {
                "overrides": plan.conditions()[name],
                metric: summarise(values),
                "val_loss": summarise([m.final["val_loss"] for m in runs]),
                "train_loss": summarise([m.final["train_loss"] for m in runs]),
                "seeds": [m.seed for m in runs],
                "values": values,
                "p_vs_baseline": None if name == "baseline" else welch_p(values, baseline_values),
                "wall_s": sum(m.wall_s for m in runs),
            }
        best = (max if template.higher_is_better else min)(conditions, key=lambda c: conditions[c][metric]["mean"])
        results = {
            "template": template.name,
            "metric": metric,
            "higher_is_better": template.higher_is_better,
            "knob": plan.knob,
            "steps": plan.steps,
            "conditions": conditions,
            "best": best,
            "failures": failures,
        }
        ctx.save_artifact("results", "results.json", json.dumps(results, indent=1))
        return {"results": results}

    return run


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text)[:60]
