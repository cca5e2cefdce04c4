"""Experiment: run the plan's conditions over seeds, then compare each with the baseline, corrected.

A plan's conditions (baseline, method, ablations, sweeps; plus, optionally, a model-written method)
times its seeds are jobs of the template's entry point, each in its own folder, with its own log, a
time limit, a scrubbed environment, and the engine the config names (plain, DDP or DeepSpeed;
``ds_config.json`` written from ``experiment.deepspeed``). Jobs take whole GPUs (or CPU slots) from
one pool shared by every project of the run, or go to SLURM through submitit. The jobs of an inference
template (its subject is a model) reach that model through the run's subject gateway, so their calls
are counted and budgeted like any other. Runs that already wrote a valid ``metrics.json`` (a resumed
project) are not run again.

Results, per condition: mean, standard deviation and a Student-t interval of the mean over seeds (a
bootstrap of two seeds gave intervals of no width); Welch's t-test against the baseline, adjusted over
every condition tested (Holm); Hedges' g; and a verdict (better, worse, or no significant difference at
``experiment.alpha``). The plan's pre-registered comparisons are judged as registered
(``fars.evaluation.preregistered``: the primary alone, the secondary family with Holm, one-sided where a
direction was predicted, TOST against an equivalence margin). Figures: the metric of every condition with
its interval, and the learning curves.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import ValidationError

from experiments.metrics import Metrics
from experiments.spec import TemplateSpec, load_template
from fars.code.search import CodeSearch, RunCode, SearchOutcome
from fars.config import DeepSpeedConfig, ExperimentConfig, FarsConfig, SandboxConfig
from fars.evaluation.design import t_interval
from fars.evaluation.preregistered import judge, test_kind, test_words
from fars.evaluation.stats import hedges_g, holm, welch_t
from fars.executor.launch import JobFailed, JobTimeout
from fars.executor.runner import Runner, RunnerConfigError, runner_problems
from fars.offload import run_in_worker
from fars.paper.figures import band_limits, experiment_figures
from fars.run.contracts import (
    SEARCH_WINNER,
    CodeNode,
    CodeSearchSummary,
    Comparison,
    ComparisonOutcome,
    Condition,
    ConditionResult,
    EngineInfo,
    ExperimentOutput,
    FigureFile,
    IdeationOutput,
    JobFailure,
    ModelAnalysis,
    Plan,
    PlanningOutput,
    Results,
    Stat,
    Value,
    Verdict,
    ablated,
)
from fars.sandbox import SandboxError
from fars.stages.base import StageContext, StageFn, register_stage
from fars.stages.open_research import (
    AnalysisDraft,
    analysis_prompt,
    analysis_schema,
    followup_condition_settings,
    request_of,
)

if TYPE_CHECKING:
    from fars.executor.gateway import SubjectGateway
    from fars.stages.services import Services

log = logging.getLogger(__name__)
CODE = SEARCH_WINNER  # the condition of the search's winning code


class ExperimentError(RuntimeError):
    """Too many training jobs failed to compare anything, or the config cannot be run."""


@dataclass(frozen=True)
class ExperimentSettings:
    """What the Experiment stage needs of the run's config."""

    experiment: ExperimentConfig
    sandbox: SandboxConfig
    vector_figures: bool  # also draw figures as PDF (only a LaTeX compile uses them)
    code_max_tokens: int = 1500  # a code reply's limit (experiment.code.max_tokens, resolved for the model)

    @classmethod
    def of(cls, cfg: FarsConfig) -> ExperimentSettings:
        """The settings of a run's config."""
        limit = cfg.experiment.code.max_tokens or (256 if cfg.llm.model.startswith("local/") else 1500)
        return cls(cfg.experiment, cfg.sandbox, cfg.paper.compile != "never", limit)


@dataclass
class Trial:
    """One project's experiment: the plan, its template, the base config and engine flags every job passes, the
    conditions compared; as jobs finish, the runs of each condition and the jobs that failed."""

    plan: Plan
    spec: TemplateSpec
    base: dict[str, Value]
    common: list[str]
    conditions: dict[str, Condition]
    runs: dict[str, list[Metrics]] = field(default_factory=dict)
    failures: list[JobFailure] = field(default_factory=list)


@register_stage(
    "experiment",
    produces=ExperimentOutput,
    consumes=(IdeationOutput, PlanningOutput),
    settings=ExperimentSettings.of,
    check=lambda cfg: runner_problems(cfg.experiment, cfg.executor),  # the job runner can run these settings here
)
def experiment(settings: ExperimentSettings, services: Services) -> StageFn:
    """Factory of the Experiment stage: run the plan's jobs, search over programs, compare every condition with the
    baseline, draw the figures. The job runner (and its GPU pool) is the run's, shared by every project."""
    runner = services.require_runner()
    exp = settings.experiment

    async def run(ctx: StageContext) -> ExperimentOutput:
        trial = start_trial(ctx, exp)
        spec = trial.spec
        await run_jobs(ctx, services, runner, trial)
        code = None
        if exp.code.enabled and spec.kind == "training":
            code = await add_code_conditions(ctx, services, settings, runner, trial)
        if len(trial.runs) < 2:
            raise ExperimentError("nothing ran to compare with the baseline (the code search found no working code)")
        analysis = None
        if ctx.input(IdeationOutput).research == "open":  # the model reads the results and may ask for follow-ups
            analysis, table, best = await read_results(ctx, services, runner, trial, exp, code)
        else:
            table, best = judged_table(trial, exp.alpha)
        figures = draw_figures(ctx, services, trial, table, settings.vector_figures) if exp.figures else []
        results = results_of(trial, exp.alpha, table, best, figures, code)
        results.comparisons = preregistered_outcomes(trial, table, exp.alpha)
        results.analysis = analysis
        ctx.save_artifact("results", "results.json", results.model_dump_json(indent=1))
        return ExperimentOutput(results=results)

    return run


async def read_results(
    ctx: StageContext,
    services: Services,
    runner: Runner,
    trial: Trial,
    exp: ExperimentConfig,
    code: CodeSearchSummary | None,
) -> tuple[ModelAnalysis, dict[str, ConditionResult], str]:
    """Open research: the model reads the results and asks for at most ``experiment.followups`` follow-up
    conditions; those run on the plan's seeds (each checked against the template: unknown settings dropped, a
    repeat of a condition refused) and the model revises its analysis over all of them. Returns the analysis and
    the table and best condition it was written over."""
    spec, record = trial.spec, ctx.input(IdeationOutput).require_chosen()
    table, best = judged_table(trial, exp.alpha)

    async def ask(allowed: int, earlier: ModelAnalysis | None) -> AnalysisDraft:
        results = results_of(trial, exp.alpha, table, best, [], code)
        results.comparisons = preregistered_outcomes(trial, table, exp.alpha)
        prompt = analysis_prompt(record, spec, results, allowed, earlier)
        return await services.llm.structured(prompt, analysis_schema(allowed), max_tokens=1500)

    draft = await ask(exp.followups, None)
    requests = list(getattr(draft, "followups", []))[: exp.followups]
    analysis = ModelAnalysis(finding=draft.finding, verdict=draft.verdict, analysis=draft.analysis)
    added = []
    for request in requests:
        entry = request_of(request)
        analysis.followups.append(entry)
        components, knobs, dropped = followup_condition_settings(spec, request)
        name = f"followup-{entry.name}"
        same = next(
            (c.name for c in trial.conditions.values() if c.components == components and c.knobs == knobs), None
        )
        if not (components or knobs):
            entry.note = "no setting of the template was left to change: " + "; ".join(dropped)
        elif same is not None or name in trial.conditions:
            entry.note = f"the same settings as {same or name}, which ran already"
        else:
            trial.conditions[name] = Condition(
                name=name, role="followup", components=components, knobs=knobs, description=request.why[:200]
            )
            entry.status, entry.note = "ran", "; ".join(dropped)
            added.append(trial.conditions[name])
    if not added:
        return analysis, table, best
    gateway = await services.subject_gateway() if spec.kind == "inference" else None
    jobs = (run_job(ctx, runner, trial, gateway, c, s) for c in added for s in trial.plan.seeds)
    for name, seed, result in await asyncio.gather(*jobs):
        if isinstance(result, Metrics):
            trial.runs.setdefault(name, []).append(result)
        else:
            trial.failures.append(JobFailure(condition=name, seed=seed, error=result[-500:]))
    for condition in added:
        if not trial.runs.get(condition.name):  # every seed failed: not compared, said
            trial.conditions.pop(condition.name)
            trial.runs.pop(condition.name, None)
            entry = next(e for e in analysis.followups if f"followup-{e.name}" == condition.name)
            entry.status, entry.note = "refused", "every seed of it failed (see the failures)"
    table, best = judged_table(trial, exp.alpha)
    revised = await ask(0, analysis)
    analysis = analysis.model_copy(
        update={"finding": revised.finding, "verdict": revised.verdict, "analysis": revised.analysis, "revised": True}
    )
    return analysis, table, best


def start_trial(ctx: StageContext, exp: ExperimentConfig) -> Trial:
    """The plan's template and base config, and the DeepSpeed JSON every training job reads (written to the
    project folder)."""
    plan = ctx.input(PlanningOutput).plan
    spec = load_template(plan.template, exp.template_dirs)
    base = base_config(spec, exp.template_overrides, plan.scale)
    ds_path = ctx.save_artifact("plan", "ds_config.json", json.dumps(deepspeed_json(exp.deepspeed), indent=1))
    common = engine_args(exp, ctx.run_dir / ds_path.path) if spec.kind == "training" else []
    return Trial(plan, spec, base, common, {c.name: c for c in plan.conditions})


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


def deepspeed_json(node: DeepSpeedConfig) -> dict[str, Any]:
    """The Hydra node ``experiment.deepspeed`` as DeepSpeed's JSON (unset values left out)."""
    raw = asdict(node)
    return {k: v for k, v in raw.items() if v is not None}


def engine_args(cfg: ExperimentConfig, ds_config: Path) -> list[str]:
    """The engine flags every job of this config passes to its entry point."""
    args = ["--engine", cfg.engine, "--device", cfg.device, "--ds_config", str(ds_config)]
    return [*args, "--compile"] if cfg.compile else args


async def run_jobs(ctx: StageContext, services: Services, runner: Runner, trial: Trial) -> None:
    """Every condition over every seed, at once; the runs of each condition kept, the failures recorded. A
    baseline, or anything to compare it with, that never ran stops the project."""
    gateway = await services.subject_gateway() if trial.spec.kind == "inference" else None
    jobs = (run_job(ctx, runner, trial, gateway, c, s) for c in trial.conditions.values() for s in trial.plan.seeds)
    finished = await asyncio.gather(*jobs)
    trial.runs = {name: [] for name in trial.conditions}
    for name, seed, result in finished:
        if isinstance(result, Metrics):
            trial.runs[name].append(result)
        else:
            trial.failures.append(JobFailure(condition=name, seed=seed, error=result[-500:]))
    others = [c for c in trial.runs if c != "baseline"]  # none: an open idea that is code alone (the search adds it)
    if not trial.runs["baseline"] or (others and not any(trial.runs[c] for c in others)):
        raise ExperimentError(f"too many training jobs failed to compare anything: {trial.failures[:2]}")


async def run_job(
    ctx: StageContext,
    runner: Runner,
    trial: Trial,
    gateway: SubjectGateway | None,
    condition: Condition,
    seed: int,
) -> tuple[str, int, Metrics | str]:
    """One condition at one seed in its own folder: its metrics, or why it failed."""
    folder = ctx.project_dir / "runs" / f"{_slug(condition.name)}-seed{seed}"
    spec = trial.spec
    flags = condition_args(spec, trial.base, condition)
    args = [*trial.common, "--seed", str(seed), "--steps", str(trial.plan.steps), *flags]
    extra: dict[str, Any] = {}
    token = None
    if gateway is not None:
        token, env = gateway.grant(ctx.project_id, ctx.stage, folder.name)
        extra["env"] = env
    try:
        # NaN, 1e300, a missing metric: a failed job (ResultRejected, a JobFailed)
        metrics = await runner.train(str(spec.entry_path), args, folder, metric=spec.metric, seed=seed, **extra)
    except (JobFailed, JobTimeout, ValidationError, SandboxError) as exc:
        return condition.name, seed, f"{type(exc).__name__}: {exc}"
    finally:
        if gateway is not None and token is not None:
            gateway.revoke(token)
    ctx.record_artifact("results", folder / "metrics.json")
    return condition.name, seed, metrics


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text)[:60]


def condition_args(spec: TemplateSpec, base: dict[str, Value], condition: Condition) -> list[str]:
    """The knob and component flags of one condition (everything not given stays at the template's default)."""
    knobs = {**base, **condition.knobs}
    components = {**spec.baseline_components(), **condition.components}
    return [*(f"--{k}={v}" for k, v in knobs.items()), *(f"--{s}={o}" for s, o in components.items())]


async def add_code_conditions(
    ctx: StageContext, services: Services, settings: ExperimentSettings, runner: Runner, trial: Trial
) -> CodeSearchSummary:
    """The search over programs; its winning code, and the ablations of that code, join the conditions compared."""
    outcome = await _search_code(ctx, services, settings, runner, trial)
    code = outcome.summary
    if outcome.winner_runs:
        trial.conditions[CODE] = Condition(
            name=CODE,
            role="method",
            description="our change to the template's code, the best version the search over programs found on "
            f"seeds {', '.join(map(str, trial.plan.seeds))}, run here on fresh seeds "
            f"{', '.join(map(str, code.fresh_seeds))} (its changes are in the appendix)",
        )
        trial.runs[CODE] = outcome.winner_runs
        for name, (description, runs) in outcome.ablations.items():
            trial.conditions[name] = Condition(name=name, role="ablation", of=CODE, description=description)
            trial.runs[name] = runs
    return code


async def _search_code(
    ctx: StageContext, services: Services, settings: ExperimentSettings, runner: Runner, trial: Trial
) -> SearchOutcome:
    """The search over programs for this project (``fars.code.search``), every run of it in the sandbox."""
    exp = settings.experiment
    spec, plan = trial.spec, trial.plan
    folder = ctx.project_dir / "code"
    baseline_values = [m.final[spec.metric] for m in trial.runs["baseline"]]
    if runner.pool is None or not spec.editable:
        why = (
            "the sandbox needs the local executor" if runner.pool is None else "the template declares no editable file"
        )
        return SearchOutcome(CodeSearchSummary(reason=f"no code search: {why}"))
    # every node runs with the method's settings: a node's code builds on the method, not on the baseline (whose
    # reproduction would only tell the model what it already knows)
    chosen = next(
        (c for c in plan.conditions if c.role in ("method", "variant")), Condition(name="baseline", role="baseline")
    )
    defaults = condition_args(spec, trial.base, chosen)
    run_code = code_runner(runner, spec, defaults, ctx.project_dir / "ds_config.json", settings.sandbox, exp.device)

    def remember(node: CodeNode, reply: str | None) -> None:
        ctx.ledger.record_code_node(ctx.project_id, node, reply)
        if node.diff:
            ctx.record_artifact("code", ctx.run_dir / node.diff)

    idea = ctx.input(IdeationOutput).require_chosen()
    method = chosen.description if chosen.role != "baseline" else "the plan's method"
    if idea.source == "open" and idea.code_change:  # the idea's own code: what the search implements
        method = f"{method if chosen.role != 'baseline' else 'the baseline settings'}, plus code: {idea.code_change}"
    search = CodeSearch(
        llm=services.llm,
        spec=spec,
        hypothesis=idea.statement,
        method=method,
        baseline=baseline_values,
        seeds=list(plan.seeds),
        steps=plan.steps,
        settings=replace(exp.code, max_tokens=settings.code_max_tokens),
        folder=folder,
        run_dir=ctx.run_dir,
        run_code=run_code,
        remember=remember,
        known={record["id"]: (record, reply) for record, reply in ctx.ledger.code_nodes(ctx.project_id)},
        method_settings={**chosen.knobs, **chosen.components},
        parts=[p.name for p in idea.parts if p.code] if idea.source == "open" else None,
    )
    try:
        outcome = await search.search()
    except Exception as exc:  # the harness's own fault: the plan's conditions still stand, and the log says why
        log.exception("%s: the search over programs failed; the plan's conditions stand alone", ctx.project_id)
        nodes = [CodeNode.model_validate(record) for record, _ in ctx.ledger.code_nodes(ctx.project_id)]
        return SearchOutcome(CodeSearchSummary(nodes=nodes, reason=f"the search failed ({type(exc).__name__}: {exc})"))
    log.info("%s: code search: %s", ctx.project_id, outcome.summary.reason)
    return outcome


def code_runner(
    runner: Runner, spec: TemplateSpec, defaults: list[str], ds_config: Path, sandbox: SandboxConfig, device: str
) -> RunCode:
    """How the search runs a working copy: one plain rank a seed, inside the sandbox, reading only the copy and
    the DeepSpeed JSON; each result validated (a NaN, a missing metric, a link or an oversized file refused)."""

    async def run_code(
        src: Path, out: Path, seeds: list[int], steps: int, timeout: float | None
    ) -> list[Metrics] | str:
        method = src / "method.py"

        async def one(seed: int) -> Metrics:
            args = ["--engine", "plain", "--device", device, "--ds_config", str(ds_config)]
            args += ["--seed", str(seed), "--steps", str(steps), *defaults]
            if method.is_file():
                args += ["--method", str(method)]
            return await runner.train(
                str(src / spec.entry),
                args,
                out / f"seed{seed}",
                metric=spec.metric,
                seed=seed,
                ranks=1,
                timeout_s=timeout,
                sandbox=sandbox,
                readable=(src, ds_config.parent),
            )

        try:
            return list(await asyncio.gather(*(one(s) for s in seeds)))
        except (JobFailed, JobTimeout, ValidationError, SandboxError, RunnerConfigError) as exc:
            return f"{type(exc).__name__}: {exc}"

    return run_code


def aggregate(
    per_condition: dict[str, list[Metrics]],
    conditions: dict[str, Condition],
    metric: str,
    higher_is_better: bool,
    *,
    alpha: float = 0.05,
    bounds: tuple[float, float] | None = None,
) -> tuple[dict[str, ConditionResult], str]:
    """Per-condition statistics and corrected tests against the baseline; the best condition by mean.
    ``bounds``: the metric's possible values as the template declares them (else inferred from the values)."""
    baseline = [m.final[metric] for m in per_condition["baseline"]]
    sign = 1.0 if higher_is_better else -1.0
    # a t-interval over two seeds is wide: it is cut to the metric's range (an accuracy's to [0, 1]), as the
    # relay run's reviewers rightly objected to an accuracy interval of [-5.26, 6.34]
    # (and where the template declares its range, to that: cartpole's return stops at 500, not at an interval's 1108)
    floor, ceiling = bounds or band_limits(np.array([m.final[metric] for runs in per_condition.values() for m in runs]))
    table: dict[str, ConditionResult] = {}
    raw_p: dict[str, float | None] = {}
    for name, runs in per_condition.items():
        if not runs:
            continue
        condition = conditions[name]
        values = [m.final[metric] for m in runs]
        interval = t_interval(values)
        others = sorted({k for m in runs for k in m.final if k != metric and all(k in r.final for r in runs)})
        result = ConditionResult(
            role=condition.role,
            components=dict(condition.components),
            knobs=dict(condition.knobs),
            metric=summarise(values),
            ci_low=None if interval.low is None else max(floor, interval.low),
            ci_high=None if interval.high is None else min(ceiling, interval.high),
            secondary={k: summarise([m.final[k] for m in runs]) for k in others},
            seeds=[m.seed for m in runs],
            values=values,
            wall_s=sum(m.wall_s for m in runs),
            tokens_per_s=summarise([m.tokens_per_s for m in runs]).mean,
            mfu=None if any(m.mfu is None for m in runs) else summarise([m.mfu or 0.0 for m in runs]).mean,
            # every reviewer of the relay runs' CNN-vs-MLP papers asked for the models' sizes
            parameters=runs[0].parameters if runs[0].parameters > 0 else None,
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
        result.verdict = holm_verdict(result, adjusted, alpha, sign)
    best = (max if higher_is_better else min)(table, key=lambda c: table[c].metric.mean)
    return table, best


def judged_table(trial: Trial, alpha: float) -> tuple[dict[str, ConditionResult], str]:
    """``aggregate``'s table with each row's test the one its plan registered (``adopt_registered``)."""
    spec = trial.spec
    table, best = aggregate(
        trial.runs, trial.conditions, spec.metric, spec.higher_is_better, alpha=alpha, bounds=spec.metric_range
    )
    adopt_registered(table, preregistered_outcomes(trial, table, alpha), alpha, spec.higher_is_better)
    return table, best


def holm_verdict(row: ConditionResult, adjusted: float | None, alpha: float, sign: float) -> Verdict:
    """A two-sided test's verdict from its Holm-adjusted p (``sign``: +1 where higher is better)."""
    if adjusted is None or row.difference is None:
        return "untested"
    if adjusted < alpha and row.difference != 0:
        return "better" if sign * row.difference > 0 else "worse"
    return "no significant difference"


def adopt_registered(
    table: dict[str, ConditionResult], outcomes: list[ComparisonOutcome], alpha: float, higher_is_better: bool
) -> None:
    """Give each row of the table the test its plan registered against the baseline, so the table, the figure
    and the prose say what the pre-registered comparisons say: the primary alone (one-sided in the predicted
    direction, uncorrected), the secondary ones with Holm among themselves. A condition registered against no
    baseline comparison (a follow-up asked for after the results, an ablation compared with the method) keeps
    a two-sided Welch test against the baseline, corrected with Holm among those exploratory rows only: it
    joins no confirmatory family, so asking for follow-ups cannot weaken the primary's test. A plan with no
    registered comparisons (written before them) keeps ``aggregate``'s one family."""
    if not outcomes:
        return
    registered = {o.candidate: o for o in outcomes if o.reference == "baseline" and o.candidate in table}
    elsewhere = {o.candidate: o.reference for o in outcomes if o.reference != "baseline" and o.candidate in table}
    exploratory: dict[str, float | None] = {}
    sign = 1.0 if higher_is_better else -1.0
    for name, row in table.items():
        if name == "baseline":
            continue
        outcome = registered.get(name)
        if outcome is None:
            test = welch_t([float(v) for v in table["baseline"].values], row.values) if "baseline" in table else None
            row.p_vs_baseline = test.p_value if test else None
            row.registered_against = elsewhere.get(name)
            if row.registered_against:
                # registered against another condition (an ablation against what it ablates): its test against
                # the baseline is descriptive, uncorrected, and joins no family (in the follow-ups' Holm family it
                # weakened their correction while the paper called a follow-up "the only one in its family")
                row.family, row.p_adjusted, row.test_kind = "exploratory", row.p_vs_baseline, "two-sided"
                row.test = (
                    "two-sided Welch t-test against the baseline (descriptive and uncorrected: its registered test "
                    f"is against {row.registered_against})"
                )
                row.verdict = holm_verdict(row, row.p_vs_baseline, alpha, sign)
            else:
                exploratory[name] = row.p_vs_baseline
            continue
        row.family, row.p_vs_baseline, row.p_adjusted = outcome.family, outcome.p_value, outcome.p_adjusted
        row.test, row.test_kind = test_words(outcome, higher_is_better), test_kind(outcome, higher_is_better)
        if row.test_kind == "tost-beyond-margin":
            row.p_two_sided = outcome.two_sided_p
        row.verdict = "untested" if outcome.p_value is None else outcome.verdict
    for name, adjusted in holm(exploratory).items():
        row = table[name]
        row.family, row.p_adjusted, row.test_kind = "exploratory", adjusted, "two-sided"
        row.test = "two-sided Welch t-test (exploratory: not registered in the plan)"
        row.verdict = holm_verdict(row, adjusted, alpha, sign)


def preregistered_outcomes(trial: Trial, table: dict[str, ConditionResult], alpha: float) -> list[ComparisonOutcome]:
    """The plan's pre-registered comparisons judged as registered (none for a plan written before them); the
    code search's winner, not known when the plan was written, joins the secondary family. A comparison whose
    conditions did not run is left out (their failures are reported as such)."""
    plan, spec = trial.plan, trial.spec
    comparisons = list(plan.comparisons)
    if not comparisons:
        return []
    named = {c.candidate for c in comparisons}
    if CODE in table and CODE not in named:
        comparisons.append(
            Comparison(name=f"{CODE} vs baseline", candidate=CODE, family="secondary", prediction="different")
        )
    # each named part of the winning code, removed, against the whole code: what the part contributes (its parts
    # were declared with the idea, before any run)
    for name in table:
        if name not in named and ablated(name, [CODE]) == CODE:
            comparisons.append(
                Comparison(
                    name=f"{name} vs {CODE}", candidate=name, reference=CODE, family="secondary", prediction="different"
                )
            )
    values = {name: row.values for name, row in table.items()}
    ran = [c for c in comparisons if c.candidate in values and c.reference in values]
    judged = judge(values, ran, alpha=alpha, higher_is_better=spec.higher_is_better)
    missing = [
        ComparisonOutcome(
            name=c.name,
            family=c.family,
            candidate=c.candidate,
            reference=c.reference,
            prediction=c.prediction,
            n=(len(values.get(c.candidate, [])), len(values.get(c.reference, []))),
            verdict="inconclusive",
        )
        for c in comparisons
        if c.family == "primary" and c not in ran  # the primary is never left out: it did not run, said so
    ]
    return [*missing, *judged]


def summarise(values: list[float]) -> Stat:
    """Mean, sample standard deviation and count."""
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return Stat(mean=mean, std=std, n=n)


def draw_figures(
    ctx: StageContext, services: Services, trial: Trial, table: dict[str, ConditionResult], vector: bool
) -> list[FigureFile]:
    """The metric of every condition with its interval, then the learning curves: listed now, drawn in a worker
    while the project goes on (``fars.stages.background``), each file recorded once it is written."""
    spec = trial.spec
    ran = {n: ms for n, ms in trial.runs.items() if ms}
    args = (ran, table, spec.metric, spec.higher_is_better, ctx.project_dir / "figures", ctx.project_dir, vector)
    listed = experiment_figures(*args, draw=False)

    async def draw() -> None:
        figures = await run_in_worker(experiment_figures, *args)  # matplotlib off the event loop projects share
        for fig in figures:
            for path in (fig.png, fig.pdf):
                if path:
                    ctx.record_artifact("figure", ctx.project_dir / path)

    services.background.start(ctx.project_id, draw, [p for f in listed for p in (f.png, f.pdf) if p])
    return listed


def results_of(
    trial: Trial,
    alpha: float,
    table: dict[str, ConditionResult],
    best: str,
    figures: list[FigureFile],
    code: CodeSearchSummary | None,
) -> Results:
    """results.json: the comparison, the failures, the figures, and the engine as the first baseline run saw it."""
    spec, plan = trial.spec, trial.plan
    first = trial.runs["baseline"][0]
    return Results(
        template=spec.name,
        metric=spec.metric,
        higher_is_better=spec.higher_is_better,
        knob=plan.knob,
        steps=plan.steps,
        alpha=alpha,
        conditions=table,
        best=best,
        failures=trial.failures,
        figures=figures,
        engine=EngineInfo(
            name=first.engine,
            world_size=first.world_size,
            precision=first.precision,
            device=first.device_name,
            parameters=first.parameters,
        ),
        code=code,
    )
