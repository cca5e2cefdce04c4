"""Experiment: train the planned conditions over seeds, then aggregate with a significance test.

A plan becomes baseline plus variants (plus, optionally, a model-written method) times seeds. Each run
is one job of the template's ``train.py`` in its own folder, with its own log, a time limit, a scrubbed
environment, and the engine the config names (plain, DDP or DeepSpeed; ``ds_config.json`` written from
``experiment.deepspeed``). Jobs take whole GPUs (or CPU slots) from one pool shared by every project
of the run, or go to SLURM through submitit. Runs that already wrote a valid ``metrics.json`` (a
resumed project) are not trained again. Results: mean, std and Welch's t-test of each condition
against the baseline, and learning-curve figures for the paper.
"""

from __future__ import annotations

import asyncio
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from scipy import stats

from experiments.metrics import Metrics
from experiments.spec import TemplateSpec, load_template
from fars.config import DeepSpeedConfig, ExperimentConfig, FarsConfig, SandboxConfig
from fars.contracts import (
    CodeAttemptRecord,
    ConditionResult,
    EngineInfo,
    ExperimentOutput,
    IdeationOutput,
    JobFailure,
    MethodInfo,
    PlanningOutput,
    Results,
    Stat,
)
from fars.executor.launch import JobFailed, JobTimeout
from fars.executor.runner import Runner, RunnerConfigError
from fars.figures import learning_curve_figures
from fars.offload import run_in_worker
from fars.results_check import ResultRejected, check_result
from fars.safe_files import remove_tree
from fars.sandbox import SandboxError
from fars.stages.base import StageContext, StageFn, register_stage
from fars.stages.model_code import CodeAttempt, write_method

if TYPE_CHECKING:
    from fars.services import Services

METHOD = "method"  # the condition name of a model-written method


class ExperimentError(RuntimeError):
    """Too many training jobs failed to compare anything, or the config cannot be run."""


def deepspeed_json(node: DeepSpeedConfig) -> dict[str, Any]:
    """The Hydra node ``experiment.deepspeed`` as DeepSpeed's JSON (unset values left out)."""
    raw = asdict(node)
    return {k: v for k, v in raw.items() if v is not None}


def engine_args(cfg: ExperimentConfig, ds_config: Path) -> list[str]:
    """The engine flags every job of this config passes to its ``train.py``."""
    args = ["--engine", cfg.engine, "--device", cfg.device, "--ds_config", str(ds_config)]
    return [*args, "--compile"] if cfg.compile else args


def base_config(template: TemplateSpec, overrides: dict[str, float | int | str]) -> dict[str, float | int | str]:
    """The template's defaults with ``experiment.template_overrides`` applied (unknown knobs refused)."""
    base = template.defaults()
    for key, value in overrides.items():
        try:
            base[key] = template.knob(key).coerce(value)
        except KeyError as exc:
            raise ExperimentError(f"experiment.template_overrides: {exc.args[0]}") from None
    return base


def summarise(values: list[float]) -> Stat:
    """Mean, sample standard deviation and count."""
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return Stat(mean=mean, std=std, n=n)


def welch_p(a: list[float], b: list[float]) -> float | None:
    """Two-sided Welch t-test p-value of a against b; None when it is undefined."""
    if len(a) < 2 or len(b) < 2:
        return None
    p = float(stats.ttest_ind(a, b, equal_var=False).pvalue)
    return None if math.isnan(p) else p


def aggregate(
    per_condition: dict[str, list[Metrics]], overrides: dict[str, dict[str, Any]], metric: str, higher_is_better: bool
) -> tuple[dict[str, ConditionResult], str]:
    """Per-condition statistics (mean, std, p against baseline, throughput) and the best condition."""
    baseline_values = [m.final[metric] for m in per_condition["baseline"]]
    conditions: dict[str, ConditionResult] = {}
    for name, runs in per_condition.items():
        if not runs:
            continue
        values = [m.final[metric] for m in runs]
        conditions[name] = ConditionResult(
            overrides=overrides[name],
            metric=summarise(values),
            val_loss=summarise([m.final["val_loss"] for m in runs]),
            train_loss=summarise([m.final["train_loss"] for m in runs]),
            seeds=[m.seed for m in runs],
            values=values,
            p_vs_baseline=None if name == "baseline" else welch_p(values, baseline_values),
            wall_s=sum(m.wall_s for m in runs),
            tokens_per_s=summarise([m.tokens_per_s for m in runs]).mean,
            mfu=None if any(m.mfu is None for m in runs) else summarise([m.mfu or 0.0 for m in runs]).mean,
        )
    best = (max if higher_is_better else min)(conditions, key=lambda c: conditions[c].metric.mean)
    return conditions, best


@dataclass(frozen=True)
class ExperimentSettings:
    """What the Experiment stage needs of the run's config."""

    experiment: ExperimentConfig
    sandbox: SandboxConfig
    vector_figures: bool  # also draw figures as PDF (only a LaTeX compile uses them)

    @classmethod
    def of(cls, cfg: FarsConfig) -> ExperimentSettings:
        """The settings of a run's config."""
        return cls(cfg.experiment, cfg.sandbox, cfg.paper.compile != "never")


@register_stage(
    "experiment", produces=ExperimentOutput, consumes=(IdeationOutput, PlanningOutput), settings=ExperimentSettings.of
)
def experiment(settings: ExperimentSettings, services: Services) -> StageFn:
    """Factory of the Experiment stage; the job runner (and its GPU pool) is the run's, shared by every project."""
    runner = services.require_runner()
    exp = settings.experiment

    async def run(ctx: StageContext) -> ExperimentOutput:
        plan = ctx.input(PlanningOutput).plan
        template = load_template(plan.template)
        base = base_config(template, exp.template_overrides)
        ds_path = ctx.save_artifact("plan", "ds_config.json", json.dumps(deepspeed_json(exp.deepspeed), indent=1))
        common = engine_args(exp, ctx.run_dir / ds_path.path)
        conditions: dict[str, dict[str, Any]] = {name: dict(ov) for name, ov in plan.conditions().items()}
        method_file: Path | None = None
        if exp.model_code.enabled and template.extension:
            hypothesis = ctx.input(IdeationOutput).require_chosen().statement
            method_file = await _model_method(ctx, services, settings, runner, template, base, hypothesis)
            if method_file is not None:
                conditions[METHOD] = {}

        async def job(condition: str, overrides: dict[str, Any], seed: int) -> tuple[str, int, Metrics | str]:
            folder = ctx.project_dir / "runs" / f"{_slug(condition)}-seed{seed}"
            knobs = [f"--{k}={v}" for k, v in {**base, **overrides}.items()]
            args = [*common, "--seed", str(seed), "--steps", str(plan.steps), *knobs]
            sandboxed: dict[str, Any] = {}
            if condition == METHOD and method_file is not None:
                args += ["--method", str(method_file)]
                # model-written code runs only inside the sandbox, reading just what it needs
                readable = (method_file.parent, (ctx.run_dir / ds_path.path).parent)
                sandboxed = {"sandbox": settings.sandbox, "readable": readable}
            try:
                metrics = await runner.train(template.module, args, folder, **sandboxed)
                check_result(metrics, template.metric, seed=seed)  # NaN, 1e300, a missing metric: a failed job
            except (JobFailed, JobTimeout, ValidationError, SandboxError, ResultRejected) as exc:
                return condition, seed, f"{type(exc).__name__}: {exc}"
            ctx.record_artifact("results", folder / "metrics.json")
            return condition, seed, metrics

        finished = await asyncio.gather(*(job(n, ov, s) for n, ov in conditions.items() for s in plan.seeds))
        per_condition: dict[str, list[Metrics]] = {name: [] for name in conditions}
        failures = []
        for condition, seed, result in finished:
            if isinstance(result, Metrics):
                per_condition[condition].append(result)
            else:
                failures.append(JobFailure(condition=condition, seed=seed, error=result[-500:]))
        if not per_condition["baseline"] or not any(per_condition[c] for c in per_condition if c != "baseline"):
            raise ExperimentError(f"too many training jobs failed to compare anything: {failures[:2]}")
        table, best = aggregate(per_condition, conditions, template.metric, template.higher_is_better)
        figures = []
        if exp.figures:
            figures = await run_in_worker(  # matplotlib off the event loop other projects share
                learning_curve_figures,
                per_condition,
                template.metric,
                ctx.project_dir / "figures",
                ctx.project_dir,
                vector=settings.vector_figures,
            )
            for fig in figures:
                for path in (fig.png, fig.pdf):
                    if path:
                        ctx.record_artifact("figure", ctx.project_dir / path)
        first = per_condition["baseline"][0]
        results = Results(
            template=template.name,
            metric=template.metric,
            higher_is_better=template.higher_is_better,
            knob=plan.knob,
            steps=plan.steps,
            conditions=table,
            best=best,
            failures=failures,
            figures=figures,
            engine=EngineInfo(
                name=first.engine,
                world_size=first.world_size,
                precision=first.precision,
                device=first.device_name,
                parameters=first.parameters,
            ),
            method=MethodInfo(
                used=method_file is not None,
                attempts=[CodeAttemptRecord(**a) for a in ctx.ledger.code_attempts(ctx.project_id)],
            )
            if exp.model_code.enabled
            else None,
        )
        ctx.save_artifact("results", "results.json", results.model_dump_json(indent=1))
        return ExperimentOutput(results=results)

    return run


async def _model_method(
    ctx: StageContext,
    services: Services,
    settings: ExperimentSettings,
    runner: Runner,
    template: TemplateSpec,
    base: dict[str, Any],
    hypothesis: str,
) -> Path | None:
    """The model-written method for this project, smoke-tested, or None (the parametric plan stands)."""
    exp = settings.experiment
    folder = ctx.project_dir / "method"

    async def smoke(path: Path) -> str | None:
        out = folder / f"smoke-{path.stem}"
        await asyncio.to_thread(remove_tree, out)  # iterative, links unfollowed: a planted deep tree cannot stop it
        knobs = [f"--{k}={v}" for k, v in base.items()]
        steps = str(exp.model_code.smoke_steps)
        # one plain rank, whatever the engine: a smoke run checks the code, not the cluster
        args = [
            "--device",
            exp.device,
            "--seed",
            "0",
            "--steps",
            steps,
            "--eval_every",
            steps,
            *knobs,
            "--method",
            str(path),
        ]
        try:
            metrics = await runner.train(
                template.module,
                args,
                out,
                ranks=1,
                timeout_s=exp.model_code.smoke_timeout_s,
                sandbox=settings.sandbox,
                readable=(path.parent,),
            )
        except (JobFailed, JobTimeout, ValidationError, SandboxError, RunnerConfigError) as exc:
            return f"{type(exc).__name__}: {exc}"
        if not all(math.isfinite(v) for v in metrics.final.values()):
            return f"the smoke run finished with non-finite results {metrics.final}"
        return None

    def record(attempt: CodeAttempt) -> None:
        path = None
        if attempt.path:
            path = ctx.record_artifact("code", Path(attempt.path)).path
        ctx.ledger.record_code_attempt(
            ctx.project_id,
            ctx.stage,
            attempt.attempt,
            path=path,
            sha256=attempt.sha256,
            ok=attempt.ok,
            error=attempt.error,
            seconds=attempt.seconds,
        )

    return await write_method(services.llm, template, hypothesis, folder, exp.model_code, smoke, record)


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text)[:60]
