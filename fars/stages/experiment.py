"""Experiment: run the plan's conditions over seeds, then compare each with the baseline, corrected.

A plan's conditions (baseline, method, ablations, sweeps; plus, optionally, a model-written method)
times its seeds are jobs of the template's entry point, each in its own folder, with its own log, a
time limit, a scrubbed environment, and the engine the config names (plain, DDP or DeepSpeed;
``ds_config.json`` written from ``experiment.deepspeed``). Jobs take whole GPUs (or CPU slots) from
one pool shared by every project of the run, or go to SLURM through submitit. The jobs of an inference
template (its subject is a model) reach that model through the run's subject gateway, so their calls
are counted and budgeted like any other. Runs that already wrote a valid ``metrics.json`` (a resumed
project) are not run again.

Results, per condition: mean, standard deviation and a bootstrap interval of the mean over seeds;
Welch's t-test against the baseline, adjusted over every condition tested (Holm); Hedges' g; and a
verdict (better, worse, or no significant difference at ``experiment.alpha``). Figures: the metric of
every condition with its interval, and the learning curves.
"""

from __future__ import annotations

import asyncio
import json
import math
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from experiments.metrics import Metrics
from experiments.spec import TemplateSpec, load_template
from fars.config import DeepSpeedConfig, ExperimentConfig, FarsConfig, SandboxConfig
from fars.contracts import (
    CodeAttemptRecord,
    Condition,
    ConditionResult,
    EngineInfo,
    ExperimentOutput,
    IdeationOutput,
    JobFailure,
    MethodInfo,
    PlanningOutput,
    Results,
    Stat,
    Value,
)
from fars.evaluation.stats import bootstrap_mean, hedges_g, holm, welch_t
from fars.executor.launch import JobFailed, JobTimeout
from fars.executor.runner import Runner, RunnerConfigError
from fars.figures import condition_figure, learning_curve_figures
from fars.offload import run_in_worker
from fars.sandbox import SandboxError
from fars.stages.base import StageContext, StageFn, register_stage
from fars.stages.model_code import CodeAttempt, write_method

if TYPE_CHECKING:
    from fars.services import Services

METHOD_CODE = "model_code"  # the condition name of a model-written method


class ExperimentError(RuntimeError):
    """Too many training jobs failed to compare anything, or the config cannot be run."""


def deepspeed_json(node: DeepSpeedConfig) -> dict[str, Any]:
    """The Hydra node ``experiment.deepspeed`` as DeepSpeed's JSON (unset values left out)."""
    raw = asdict(node)
    return {k: v for k, v in raw.items() if v is not None}


def engine_args(cfg: ExperimentConfig, ds_config: Path) -> list[str]:
    """The engine flags every job of this config passes to its entry point."""
    args = ["--engine", cfg.engine, "--device", cfg.device, "--ds_config", str(ds_config)]
    return [*args, "--compile"] if cfg.compile else args


def base_config(template: TemplateSpec, overrides: dict[str, Value], scale: str = "ci") -> dict[str, Value]:
    """The template's defaults at ``scale``, with ``experiment.template_overrides`` applied (unknown knobs refused)."""
    base = template.defaults()
    scaled = template.scales.get(scale)
    for key, value in {**(scaled.knobs if scaled else {}), **overrides}.items():
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


def aggregate(
    per_condition: dict[str, list[Metrics]],
    conditions: dict[str, Condition],
    metric: str,
    higher_is_better: bool,
    *,
    alpha: float = 0.05,
    resamples: int = 2000,
) -> tuple[dict[str, ConditionResult], str]:
    """Per-condition statistics and corrected tests against the baseline; the best condition by mean."""
    baseline = [m.final[metric] for m in per_condition["baseline"]]
    sign = 1.0 if higher_is_better else -1.0
    table: dict[str, ConditionResult] = {}
    raw_p: dict[str, float | None] = {}
    for name, runs in per_condition.items():
        if not runs:
            continue
        condition = conditions[name]
        values = [m.final[metric] for m in runs]
        interval = bootstrap_mean(values, resamples=resamples, seed=len(table))
        others = sorted({k for m in runs for k in m.final if k != metric and all(k in r.final for r in runs)})
        result = ConditionResult(
            role=condition.role,
            components=dict(condition.components),
            knobs=dict(condition.knobs),
            metric=summarise(values),
            ci_low=interval.low if len(values) > 1 else None,
            ci_high=interval.high if len(values) > 1 else None,
            secondary={k: summarise([m.final[k] for m in runs]) for k in others},
            seeds=[m.seed for m in runs],
            values=values,
            wall_s=sum(m.wall_s for m in runs),
            tokens_per_s=summarise([m.tokens_per_s for m in runs]).mean,
            mfu=None if any(m.mfu is None for m in runs) else summarise([m.mfu or 0.0 for m in runs]).mean,
        )
        if name == "baseline":
            result.verdict = "baseline"
        else:
            test = welch_t(baseline, values)
            raw_p[name] = result.p_vs_baseline = test.p_value if test else None
            result.difference = result.metric.mean - sum(baseline) / len(baseline)
            g = hedges_g(baseline, values)
            result.effect_size = None if g is None else sign * g  # positive: better than the baseline
        table[name] = result
    for name, adjusted in holm(raw_p).items():
        result = table[name]
        result.p_adjusted = adjusted
        if adjusted is None or result.difference is None:
            result.verdict = "untested"
        elif adjusted < alpha and result.difference != 0:
            result.verdict = "better" if sign * result.difference > 0 else "worse"
        else:
            result.verdict = "no significant difference"
    best = (max if higher_is_better else min)(table, key=lambda c: table[c].metric.mean)
    return table, best


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


def condition_args(spec: TemplateSpec, base: dict[str, Value], condition: Condition) -> list[str]:
    """The knob and component flags of one condition (everything not given stays at the template's default)."""
    knobs = {**base, **condition.knobs}
    components = {**spec.baseline_components(), **condition.components}
    return [*(f"--{k}={v}" for k, v in knobs.items()), *(f"--{s}={o}" for s, o in components.items())]


@register_stage(
    "experiment", produces=ExperimentOutput, consumes=(IdeationOutput, PlanningOutput), settings=ExperimentSettings.of
)
def experiment(settings: ExperimentSettings, services: Services) -> StageFn:
    """Factory of the Experiment stage; the job runner (and its GPU pool) is the run's, shared by every project."""
    runner = services.require_runner()
    exp = settings.experiment

    async def run(ctx: StageContext) -> ExperimentOutput:
        plan = ctx.input(PlanningOutput).plan
        spec = load_template(plan.template, exp.template_dirs)
        base = base_config(spec, exp.template_overrides, plan.scale)
        ds_path = ctx.save_artifact("plan", "ds_config.json", json.dumps(deepspeed_json(exp.deepspeed), indent=1))
        common = engine_args(exp, ctx.run_dir / ds_path.path) if spec.kind == "training" else []
        conditions: dict[str, Condition] = {c.name: c for c in plan.conditions}
        method_file: Path | None = None
        if exp.model_code.enabled and spec.extension and spec.kind == "training":
            hypothesis = ctx.input(IdeationOutput).require_chosen().statement
            method_file = await _model_method(ctx, services, settings, runner, spec, base, hypothesis)
            if method_file is not None:
                conditions[METHOD_CODE] = Condition(
                    name=METHOD_CODE, role="method", description="the model-written method module"
                )
        gateway = await services.subject_gateway() if spec.kind == "inference" else None

        async def job(condition: Condition, seed: int) -> tuple[str, int, Metrics | str]:
            folder = ctx.project_dir / "runs" / f"{_slug(condition.name)}-seed{seed}"
            args = [*common, "--seed", str(seed), "--steps", str(plan.steps), *condition_args(spec, base, condition)]
            extra: dict[str, Any] = {}
            token = None
            if condition.name == METHOD_CODE and method_file is not None:
                args += ["--method", str(method_file)]
                # model-written code runs only inside the sandbox, reading just what it needs
                readable = (method_file.parent, (ctx.run_dir / ds_path.path).parent, spec.folder)
                extra = {"sandbox": settings.sandbox, "readable": readable}
            if gateway is not None:
                token, env = gateway.grant(ctx.project_id, ctx.stage, folder.name)
                extra["env"] = env
            try:
                metrics = await runner.train(str(spec.entry_path), args, folder, **extra)
            except (JobFailed, JobTimeout, ValidationError, SandboxError) as exc:
                return condition.name, seed, f"{type(exc).__name__}: {exc}"
            finally:
                if gateway is not None and token is not None:
                    gateway.revoke(token)
            if spec.metric not in metrics.final or not math.isfinite(metrics.final[spec.metric]):
                return condition.name, seed, f"the run reported no finite {spec.metric}: {metrics.final}"
            ctx.record_artifact("results", folder / "metrics.json")
            return condition.name, seed, metrics

        finished = await asyncio.gather(*(job(c, s) for c in conditions.values() for s in plan.seeds))
        per_condition: dict[str, list[Metrics]] = {name: [] for name in conditions}
        failures = []
        for name, seed, result in finished:
            if isinstance(result, Metrics):
                per_condition[name].append(result)
            else:
                failures.append(JobFailure(condition=name, seed=seed, error=result[-500:]))
        if not per_condition["baseline"] or not any(per_condition[c] for c in per_condition if c != "baseline"):
            raise ExperimentError(f"too many training jobs failed to compare anything: {failures[:2]}")
        table, best = aggregate(
            per_condition, conditions, spec.metric, spec.higher_is_better, alpha=exp.alpha, resamples=exp.bootstrap
        )
        figures = []
        if exp.figures:
            ran = {n: ms for n, ms in per_condition.items() if ms}
            figures = await run_in_worker(  # matplotlib off the event loop other projects share
                learning_curve_figures,
                ran,
                spec.metric,
                ctx.project_dir / "figures",
                ctx.project_dir,
                vector=settings.vector_figures,
            )
            figures.insert(
                0,
                await run_in_worker(
                    condition_figure,
                    table,
                    spec.metric,
                    spec.higher_is_better,
                    ctx.project_dir / "figures",
                    ctx.project_dir,
                    vector=settings.vector_figures,
                ),
            )
            for fig in figures:
                for path in (fig.png, fig.pdf):
                    if path:
                        ctx.record_artifact("figure", ctx.project_dir / path)
        first = per_condition["baseline"][0]
        results = Results(
            template=spec.name,
            metric=spec.metric,
            higher_is_better=spec.higher_is_better,
            knob=plan.knob,
            steps=plan.steps,
            alpha=exp.alpha,
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
        shutil.rmtree(out, ignore_errors=True)
        knobs = [f"--{k}={v}" for k, v in base.items()]
        steps = str(exp.model_code.smoke_steps)
        # one plain rank, whatever the engine: a smoke run checks the code, not the cluster
        args = ["--device", exp.device, "--seed", "0", "--steps", steps, *knobs, "--method", str(path)]
        try:
            metrics = await runner.train(
                str(template.entry_path),
                args,
                out,
                ranks=1,
                timeout_s=exp.model_code.smoke_timeout_s,
                sandbox=settings.sandbox,
                readable=(path.parent, template.folder),
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
