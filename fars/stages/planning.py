"""Planning: turn the chosen hypothesis into a runnable multi-condition experiment over its template.

For a template with components the plan tests the hypothesis's method: the baseline, the method, an
ablation per changed component (the method with that component put back to the baseline's option),
and, with ``experiment.sensitivity``, the method at other values of one knob. The model writes the
design's rationale and picks the knob and values of the sweep; the harness coerces every value into
the knob's range, so even a weak model yields a runnable plan (what it repaired is recorded). For a
template with knobs only, the plan compares values of one knob with its default, as before. Steps
come from the config or the template's scale.

Before the plan, a pilot runs the baseline over a few seeds: its seed-to-seed spread and how its curve ends
(converged, still improving, or unstable, judged against that spread) are recorded and shown to the model.
Where its seeds agree exactly the spread is floored at the metric's resolution, and the plan says so. Where the pilot cannot change the seeds (``experiment.seeds``
at most ``experiment.pilot_seeds``), its runs are the experiment's baseline runs (in the Experiment stage's
folders, which it reuses); elsewhere they are external, on seeds of their own, so the test stays unbiased.
The seeds per condition then come from a power analysis of the primary comparison (method vs baseline, pre-registered apart from the secondary ones) for the smallest
effect of interest, capped by ``experiment.seeds`` and the job-time budget; when the cap binds the plan says
what the study can detect instead. Without a pilot (or a job runner) the config's seeds stand.
"""

from __future__ import annotations

import asyncio
import json
import math
import statistics
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, Field, StringConstraints, ValidationError

from experiments.metrics import Metrics
from experiments.spec import TemplateSpec, load_template
from fars.config import ExperimentConfig, FarsConfig
from fars.evaluation import design as stats_design
from fars.executor.launch import JobFailed, JobTimeout
from fars.paper.figures import band_limits
from fars.run.contracts import (
    Comparison,
    Condition,
    HypothesisRecord,
    IdeationOutput,
    Pilot,
    Plan,
    PlanningOutput,
    SeedDesign,
    Value,
    ablated,
)
from fars.sandbox import SandboxError
from fars.stages.base import StageContext, StageFn, register_stage
from fars.stages.experiment import CODE as CODE_CONDITION
from fars.stages.experiment import base_config, condition_args, deepspeed_json, engine_args
from fars.stages.methods import component_conditions, idea_conditions, inert_slots, knob_conditions, knob_values

if TYPE_CHECKING:
    from fars.stages.services import Services


class PlanDraft(BaseModel):
    """What the model proposes: the knob to sweep (or vary), its values, and why the design tests the idea."""

    knob: str = Field(min_length=1, max_length=40, description="the setting to vary")
    values: list[Annotated[str, StringConstraints(min_length=1, max_length=16)]] = Field(
        min_length=1, max_length=4, description="values to compare with the default"
    )
    rationale: str = Field(min_length=3, max_length=300)


@dataclass(frozen=True)
class PlanningSettings:
    """What Planning needs of the run's config."""

    max_variants: int
    seeds: tuple[int, ...]
    steps: int | None
    scale: str
    ablations: bool
    sensitivity: bool
    template_dirs: tuple[str, ...]
    experiment: ExperimentConfig  # what a pilot job runs with (engine, overrides) and the power analysis's settings

    @classmethod
    def of(cls, cfg: FarsConfig) -> PlanningSettings:
        """The settings of a run's config: seeds start at the run's ``seed``."""
        exp = cfg.experiment
        return cls(
            exp.max_variants,
            tuple(range(cfg.seed, cfg.seed + exp.seeds)),
            exp.steps,
            exp.scale,
            exp.ablations,
            exp.sensitivity,
            tuple(exp.template_dirs),
            exp,
        )

    @property
    def pilot_reused(self) -> bool:
        """Whether the pilot's runs are the baseline's runs of the experiment: only where the pilot cannot change
        the seeds (``experiment.seeds`` at most the pilot's). Where it can, reusing them biases the test: a pilot
        whose seeds happen to agree asks for few seeds and then is most of the baseline (the null was rejected
        in 8 of 40 simulated studies at alpha 0.05, benchmarks/power.py). Such a pilot runs on seeds of its own."""
        return 0 < len(self.seeds) <= self.experiment.pilot_seeds

    @property
    def pilot_seeds(self) -> tuple[int, ...]:
        """The pilot's seeds: the plan's own where the pilot is reused, else the ones after the most it may have."""
        if self.pilot_reused:
            return self.seeds
        after = self.seeds[-1] + 1
        return tuple(range(after, after + self.experiment.pilot_seeds))


@register_stage("planning", produces=PlanningOutput, consumes=(IdeationOutput,), settings=PlanningSettings.of)
def planning(settings: PlanningSettings, services: Services) -> StageFn:
    """Factory of the Planning stage: the method to test, the model's design for it, repaired into a plan."""
    llm = services.llm

    async def run(ctx: StageContext) -> PlanningOutput:
        idea = ctx.input(IdeationOutput)
        spec = load_template(idea.template, settings.template_dirs)
        chosen = idea.require_chosen()
        method, inert = tested_method(spec, chosen)
        focus = idea.focus or (spec.knobs[0].name if spec.knobs else "")
        steps = settings.steps or spec.scale(settings.scale).steps
        pilot = await run_pilot(ctx, services, spec, steps, settings)
        ask = design_prompt(spec, chosen, method, focus, settings.max_variants, pilot)
        draft = await llm.structured(ask, PlanDraft, max_tokens=250)
        plan = repaired_plan(spec, chosen, method, inert, focus, draft, settings)
        plan = powered_plan(plan, pilot, settings, chosen)
        ctx.save_artifact("plan", "plan.json", plan.model_dump_json(indent=1))
        return PlanningOutput(plan=plan)

    return run


# a curve that made at most this share of its improvement in its last fifth, and moved by no more than the
# seed-to-seed sd there, has converged (fars.evaluation.design.curve_trend)
CONVERGED_SHARE = 0.1


async def run_pilot(
    ctx: StageContext, services: Services, spec: TemplateSpec, steps: int, settings: PlanningSettings
) -> Pilot | None:
    """The baseline over the pilot's seeds, at the plan's steps and scale, in the folders the Experiment stage
    gives the baseline's runs where it may reuse them (``PlanningSettings.pilot_reused``), else in ``pilot/``.
    None without a pilot: no pilot seeds,
    no job runner, or an inference template (its runs call a model, and Planning holds no gateway)."""
    seeds = settings.pilot_seeds
    if len(seeds) < 2 or services.runner is None or spec.kind != "training":
        return None
    runner, exp = services.runner, settings.experiment
    base = base_config(spec, exp.template_overrides, settings.scale)
    ds_path = ctx.save_artifact("plan", "ds_config.json", json.dumps(deepspeed_json(exp.deepspeed), indent=1))
    args = [*engine_args(exp, ctx.run_dir / ds_path.path), "--steps", str(steps)]
    args += condition_args(spec, base, Condition(name="baseline", role="baseline"))

    async def one(seed: int) -> Metrics | str:
        folder = ctx.project_dir / ("runs" if settings.pilot_reused else "pilot") / f"baseline-seed{seed}"
        try:
            return await runner.train(
                str(spec.entry_path), ["--seed", str(seed), *args], folder, metric=spec.metric, seed=seed
            )
        except (JobFailed, JobTimeout, ValidationError, SandboxError) as exc:
            return f"seed {seed}: {type(exc).__name__}: {exc}"[:300]

    finished = await asyncio.gather(*(one(s) for s in seeds))
    pilot = pilot_summary(list(seeds), steps, finished, spec.metric, spec.higher_is_better)
    return pilot.model_copy(update={"reused": settings.pilot_reused})


def pilot_summary(
    seeds: list[int], steps: int, finished: list[Metrics | str], metric: str, higher_is_better: bool
) -> Pilot:
    """The pilot's spread (floored where its seeds agreed, ``noise_floor``), how its curve ends against that
    spread (``pilot_trend``), and its failures."""
    runs = [m for m in finished if isinstance(m, Metrics)]
    values = [m.final[metric] for m in runs]
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    seen = [*values, *(v for m in runs for v in m.curves.val_metric)]
    floor = noise_floor(values, seen)
    if floor is not None:
        sd = floor
    # a single run has no spread: its curve is judged against the metric's resolution (0 where none is seen)
    noise = sd if sd > 0 else (stats_design.resolution(seen) or 0.0)
    trend = pilot_trend(runs, higher_is_better, noise)
    return Pilot(
        curve=mean_curve(runs),
        seeds=[m.seed for m in runs],
        steps=steps,
        values=values,
        mean=statistics.fmean(values) if values else None,
        sd=sd,
        sd_floored=floor is not None,
        sd_floor_reason=RESOLUTION_FLOOR if floor is not None else "",
        convergence=trend.share if trend is not None else None,
        converged=None if trend is None or trend.status is None else trend.status == "converged",
        trend=trend.status if trend is not None else None,
        late_change=trend.late_change if trend is not None else None,
        best=(int(trend.best_step), trend.best) if trend is not None else None,
        end=(int(trend.final_step), trend.final) if trend is not None else None,
        job_s=statistics.fmean(m.wall_s for m in runs) if runs else 0.0,
        failures=[f for f in finished if isinstance(f, str)],
    )


RESOLUTION_FLOOR = (
    "the metric's resolution (the smallest gap between distinct values in the pilot's results and curves)"
)


def noise_floor(values: list[float], seen: list[float]) -> float | None:
    """The spread to use where the pilot's seeds all agreed exactly, or spread by less than one step of a metric
    that moves in steps (else None): the metric's resolution, the
    smallest gap between distinct values among the pilot's results and every point of its validation curves
    (``fars.evaluation.design.resolution``). Seeds that agree differ by less than the metric can show, so
    their spread is below one step of it, not zero; one step is the least noise the comparisons must
    resolve (two runs that differ at all differ by at least that), and it keeps the power analysis from
    the degenerate "2 seeds, intervals of no width" a zero spread gives. The sd of a run's last few curve
    points was the other candidate: it mixes the curve's remaining trend into the noise, and on a
    quantized metric that has plateaued it is zero too. None also where no two values the pilot saw differ
    (nothing to floor it with: the design then keeps the configured seeds)."""
    if len(values) < 2:
        return None
    if math.isclose(max(values), min(values), rel_tol=1e-9, abs_tol=1e-12):
        return stats_design.resolution(seen)
    # seeds that spread less than one step of a metric that moves in steps are few seeds agreeing by chance: the
    # fourth relay run's digits pilot gave sd 0.0016 on an accuracy that moves by 1/360 = 0.0028, its study's
    # baseline then 0.0047, and a reviewer named the step the design should not have gone below
    step = stats_design.metric_step(seen)
    return step if step and statistics.stdev(values) < step else None


def pilot_trend(runs: list[Metrics], higher_is_better: bool, noise: float) -> stats_design.Trend | None:
    """How the pilot's validation curve ends against ``noise``: the mean curve over seeds at the steps every run
    logged (averaging keeps one noisy evaluation from passing for a collapse); where they share fewer than 3,
    the run whose curve ends least settled (unstable before still improving before converged, then by size)."""
    if not runs:
        return None
    common = sorted(set.intersection(*(set(m.curves.step) for m in runs)))
    if len(common) >= 3:
        per_run = [dict(zip(m.curves.step, m.curves.val_metric, strict=True)) for m in runs]
        mean = [statistics.fmean(float(r[step]) for r in per_run) for step in common]
        # the step of one run's metric (an image of 360), read from every value logged: the mean's own gaps
        # (thirds of an image over 3 seeds, in no fixed pattern) hide it, and a last fifth that gained one
        # image in one seed read as still improving
        step = stats_design.metric_step([float(v) for m in runs for v in m.curves.val_metric])
        return stats_design.curve_trend(common, mean, higher_is_better, noise, CONVERGED_SHARE, quantum=step)
    trends = [
        t
        for m in runs
        if (t := stats_design.curve_trend(m.curves.step, m.curves.val_metric, higher_is_better, noise, CONVERGED_SHARE))
        is not None
    ]
    rank = {"unstable": 3, "still improving": 2, "converged": 1, None: 0}
    return max(
        trends,
        key=lambda t: (rank[t.status], t.drop if t.status == "unstable" else t.late_gain),
        default=None,
    )


def mean_curve(runs: list[Metrics], points: int = 5) -> list[tuple[int, float]]:
    """The pilot's mean validation curve at a few evenly spaced logged steps (runs logged at the same steps)."""
    if not runs or any(list(m.curves.step) != list(runs[0].curves.step) for m in runs):
        return []
    steps = list(runs[0].curves.step)
    if not steps:
        return []
    picked = sorted({round(i * (len(steps) - 1) / max(1, points - 1)) for i in range(points)})
    return [(int(steps[i]), statistics.fmean(float(m.curves.val_metric[i]) for m in runs)) for i in picked]


def pilot_lines(pilot: Pilot | None) -> str:
    """The pilot as the prompt and the plan state it: spread over seeds (and its floor where they agreed) and
    how its curve ends."""
    if pilot is None or len(pilot.values) < 2:
        return ""
    n = len(pilot.values)
    if pilot.sd_floored and len(set(pilot.values)) > 1:
        spread = (
            f"; the {n} seeds spread by less than one step of the metric (sd {statistics.stdev(pilot.values):.3g}), "
            f"so the noise is taken as at least {pilot.sd:.3g}, {pilot.sd_floor_reason or 'a floor'}"
        )
    elif pilot.sd_floored:
        spread = (
            f"; the {n} seeds gave identical values, so the noise is taken as at least {pilot.sd:.3g}, "
            f"{pilot.sd_floor_reason or 'a floor'}, not as zero"
        )
    elif pilot.sd <= 0:
        spread = f"; the {n} seeds gave identical values and no value it logged differed, so its noise is unknown"
    else:
        spread = f" (seed-to-seed sd {pilot.sd:.3g})"
    return (
        f"Pilot: the baseline over {n} seeds at {pilot.steps} steps scored {pilot.mean:.4g}{spread}; "
        f"{trend_words(pilot)}.\n"
    )


def trend_words(pilot: Pilot) -> str:
    """How the pilot's curve ends, in words: converged, still improving (by how much against the noise or the
    share of its gain) or unstable (where it peaked and where it ended)."""
    noise = f"the noise floor {pilot.sd:.3g}" if pilot.sd_floored else f"the seed-to-seed sd {pilot.sd:.3g}"
    share = (
        f"{pilot.convergence:.0%} of its improvement came in the last fifth of training"
        if pilot.convergence is not None
        else ""
    )
    late = pilot.late_change
    if pilot.trend == "unstable" and pilot.best is not None and pilot.end is not None:
        (best_step, best), (end_step, end) = pilot.best, pilot.end
        shape = (
            f"it peaked at {best:.4g} at step {best_step}"
            if best > end
            else f"it fell to {best:.4g} at step {best_step}"
        )
        return (
            f"its curve is unstable, not converged: {shape} and ended at {end:.4g} at step {end_step}, worse than "
            f"its best by {abs(end - best):.3g}, more than {noise}"
        )
    if pilot.trend == "still improving" and late is not None:
        by_share = pilot.convergence is not None and pilot.convergence > CONVERGED_SHARE
        if by_share and abs(late) <= pilot.sd:
            return f"its curve is still improving: {share}, more than the {CONVERGED_SHARE:.0%} of a converged curve"
        # else the last fifth moved it by more than half the noise (the rule: a fifth more training would move it
        # as much again); "more than the 10%" beside a share of 4% was what both relay models read here
        bar = noise if abs(late) > pilot.sd else f"half of {noise}"
        return (
            f"its curve is still improving: the last fifth of training {'raised' if late > 0 else 'lowered'} it "
            f"by {abs(late):.3g}, more than {bar} ({share})"
        )
    if pilot.trend == "converged" and late is not None:
        return f"its curve converged: {share}, and the last fifth changed it by {abs(late):.3g}, within {noise}"
    if pilot.convergence is None:
        return "its curve did not improve"
    # a plan written before trends were recorded: the share alone
    return f"{share} ({'converged' if pilot.converged else 'still improving'})"


def tested_method(spec: TemplateSpec, chosen: HypothesisRecord) -> tuple[dict[str, str], dict[str, str]]:
    """The hypothesis's method over the template's components, and the slots left out of it with why:
    a slot changed in name only would give an ablation equal to the method."""
    method = {s: o for s, o in chosen.method.items() if s in spec.component_names}
    inert = inert_slots(spec, method)
    return {s: o for s, o in method.items() if s not in inert}, inert


def design_prompt(
    spec: TemplateSpec,
    chosen: HypothesisRecord,
    method: dict[str, str],
    focus: str,
    max_variants: int,
    pilot: Pilot | None = None,
) -> list[dict[str, str]]:
    """The request for a design: the setting to sweep (or vary) and its values, and why the design tests the idea."""
    knob_lines = "\n".join(
        f"- {k.name}: {k.help}; default {k.default}"
        + (f"; choices {k.choices}" if k.choices else f"; range {k.low} to {k.high}")
        for k in spec.knobs
    )
    task = (
        f"The plan runs the baseline, the method ({', '.join(f'{s}={o}' for s, o in method.items())}) and "
        "the method without each of its components. Pick one setting for a sensitivity check of the method"
        if method
        else "Pick the setting to vary"
    )
    if chosen.source == "open":
        changed = ", ".join(f"{k}={v}" for k, v in {**method, **chosen.knobs}.items()) or "the baseline's settings"
        parts = ", ".join(p.name for p in chosen.parts)
        ablated = f" and the method without each of its named parts ({parts})" if len(chosen.parts) >= 2 else ""
        task = (
            f"The plan runs the baseline and the method ({changed}"
            + ("; plus its code" if chosen.code_change else "")
            + f"){ablated}. Pick one setting for a sensitivity check of the method"
        )
    return [
        {"role": "system", "content": "You design small, decisive machine learning experiments."},
        {
            "role": "user",
            "content": (
                f"Hypothesis: {chosen.statement}\nExperiment: {spec.description}\nSettings:\n{knob_lines}\n"
                f"{pilot_lines(pilot)}{task} (probably '{focus}') and up to {max_variants} values to compare with its "
                f"default (the schema allows more; the plan runs the first {max_variants}). Say why this design tests "
                "the hypothesis."
            ),
        },
    ]


def repaired_plan(
    spec: TemplateSpec,
    chosen: HypothesisRecord,
    method: dict[str, str],
    inert: dict[str, str],
    focus: str,
    draft: PlanDraft,
    settings: PlanningSettings,
) -> Plan:
    """The plan: the model's knob and values coerced into the template's ranges, the conditions of the design,
    and every repair recorded."""
    repaired: list[str] = [f"{why}: left out of the method" for why in inert.values()]
    knob, values = swept_values(spec, draft, focus, settings.max_variants, repaired)
    design: Literal["components", "knob"] = "components" if method or chosen.source == "open" else "knob"
    if chosen.source == "open":
        sweep = (knob, values) if settings.sensitivity and knob and values else None
        conditions = idea_conditions(spec, chosen, method, ablations=settings.ablations, sensitivity=sweep)
    elif design == "components":
        sweep = (knob, values) if settings.sensitivity and knob and values else None
        conditions = component_conditions(spec, method, ablations=settings.ablations, sensitivity=sweep)
        if settings.ablations and len(method) < 2:
            repaired.append(f"the method changes one component ({method}): no ablation distinct from the baseline")
    else:
        conditions = knob_conditions(spec, knob, values)
    fields: dict[str, Any] = {
        "template": spec.name,
        "hypothesis": chosen.statement,
        "design": design,
        "conditions": conditions,
        "seeds": list(settings.seeds),
        "steps": settings.steps or spec.scale(settings.scale).steps,
        "scale": settings.scale,
        "knob": knob or None,
        "rationale": draft.rationale,
        "repaired": repaired,
    }
    if chosen.source == "open" and len(conditions) == 1:  # code alone: valid once its comparison is registered
        return _unchecked_plan(fields)
    return Plan(**fields)


def _unchecked_plan(fields: dict[str, Any]) -> Plan:
    """A plan of an open idea that is code alone (the baseline only, until ``powered_plan`` registers the code
    search's winner as its primary comparison and validates it)."""
    defaults = {
        name: f.get_default(call_default_factory=True) for name, f in Plan.model_fields.items() if not f.is_required()
    }
    return Plan.model_construct(**{**defaults, **fields})


def swept_values(
    spec: TemplateSpec, draft: PlanDraft, focus: str, count: int, repaired: list[str]
) -> tuple[str, list[Value]]:
    """The knob to sweep and its values: the model's when they fit the template, else the focus knob and
    values of the harness's own (each repair added to ``repaired``)."""
    names = [k.name for k in spec.knobs]
    knob = draft.knob.strip()
    if knob not in names:
        if names:
            repaired.append(f"model chose unknown setting {draft.knob!r}; used {focus!r}")
        knob = focus
    values = coerced_values(spec, knob, list(draft.values), count) if knob else []
    if knob and not values:
        values = knob_values(spec, knob, count)
        repaired.append(f"model values {list(draft.values)} gave no value distinct from the default; used {values}")
    return knob, values


def coerced_values(spec: TemplateSpec, knob: str, raw: list[str], count: int) -> list[Value]:
    """The model's values for a knob, parsed and clamped into range, distinct from the default."""
    k = spec.knob(knob)
    values: list[Value] = []
    for item in raw:
        value = k.coerce(item)
        if value != k.default and value not in values:
            values.append(value)
    return values[:count]


def powered_plan(
    plan: Plan, pilot: Pilot | None, settings: PlanningSettings, idea: HypothesisRecord | None = None
) -> Plan:
    """The plan with its pilot, its comparisons pre-registered, and its seeds chosen: by power where the pilot
    measured a spread, else the config's count."""
    effect, source = effect_of_interest(settings.experiment, pilot)
    if idea is not None and idea.source == "open" and idea.effect and settings.experiment.effect is None:
        # the design is powered for the size the idea predicts (the relay run's was powered for one pilot sd, a
        # fifth of the 0.2 the model predicted); an equivalence idea keeps the pilot's
        effect, source = idea.effect, "the idea's predicted effect"
    comparisons = preregistered(plan, effect, idea)
    chosen = seed_design(pilot, comparisons, len(plan.conditions), settings, effect, source)
    first = settings.seeds[0]
    update = {
        "pilot": pilot,
        "seed_design": chosen,
        "comparisons": comparisons,
        "seeds": list(range(first, first + chosen.seeds)),
    }
    return Plan.model_validate({**plan.model_dump(), **update})


def effect_of_interest(exp: ExperimentConfig, pilot: Pilot | None) -> tuple[float | None, str]:
    """The improvement the design is powered for, in metric units, and where it came from: the config's
    ``experiment.effect``, else ``experiment.effect_sds`` of the pilot's seed-to-seed spread."""
    if exp.effect is not None:
        return exp.effect, "experiment.effect"
    if pilot is not None and pilot.sd > 0:
        return exp.effect_sds * pilot.sd, f"{exp.effect_sds:g} pilot standard deviation(s), experiment.effect_sds"
    return None, ""


def preregistered(plan: Plan, effect: float | None, idea: HypothesisRecord | None = None) -> list[Comparison]:
    """The comparisons fixed before any run: the method against the baseline is the primary one, predicted
    better; every other condition against the baseline is secondary and undirected (Holm within them only).
    An open idea registers its own prediction (better, worse, or equivalent within its margin) and size; when it
    changes code, the primary candidate is the search's code condition (the whole idea), the settings alone
    secondary."""
    comparisons = []
    if idea is not None and idea.source == "open":
        primary_name = CODE_CONDITION if idea.code_change else "method"
        size = idea.effect or effect
        comparisons.append(
            Comparison(
                name=f"{primary_name} vs baseline",
                candidate=primary_name,
                family="primary",
                prediction=idea.prediction or "better",
                effect=size if idea.prediction != "equivalent" else effect,
                margin=idea.margin if idea.prediction == "equivalent" else None,
            )
        )
        for condition in plan.conditions[1:]:
            if condition.name != primary_name:
                comparisons.append(_secondary(condition, plan, effect))
        return comparisons
    for condition in plan.conditions[1:]:
        primary = plan.design == "components" and condition.name == "method"
        comparisons.append(
            Comparison(
                name=f"{condition.name} vs baseline",
                candidate=condition.name,
                family="primary",
                prediction="better",
                effect=effect,
            )
            if primary
            else _secondary(condition, plan, effect)
        )
    return comparisons


def _secondary(condition: Condition, plan: Plan, effect: float | None) -> Comparison:
    """A secondary comparison, undirected: an ablation against the condition it removes a part from (what the
    part contributes: every reviewer of the relay runs asked for it, not the ablation against the baseline),
    every other condition against the baseline."""
    names = [c.name for c in plan.conditions]
    parent = (
        (condition.of if condition.of in names else ablated(condition.name, names))
        if condition.role == "ablation"
        else None
    )
    reference = parent or "baseline"
    return Comparison(
        name=f"{condition.name} vs {reference}",
        candidate=condition.name,
        reference=reference,
        family="secondary",
        prediction="different",
        effect=effect,
    )


def seed_design(
    pilot: Pilot | None,
    comparisons: list[Comparison],
    conditions: int,
    settings: PlanningSettings,
    effect: float | None,
    source: str,
) -> SeedDesign:
    """Seeds per condition for the wanted power of the primary comparison (the secondary family's, corrected,
    where there is none), from the pilot's spread; capped by ``experiment.seeds`` and the job-time budget."""
    exp, fixed = settings.experiment, len(settings.seeds)
    if pilot is None or len(pilot.values) < 2 or pilot.sd <= 0 or effect is None:
        why = (
            "no pilot ran"
            if pilot is None
            else "the pilot's seeds agreed exactly and no two values it logged differed, so its noise is unknown"
            if len(pilot.values) > 1 and pilot.sd <= 0
            else "the pilot measured no spread"
        )
        return SeedDesign(method="fixed", seeds=fixed, cap=fixed, reason=f"{fixed} seeds (experiment.seeds): {why}")
    cap, cap_why = seed_cap(pilot, conditions, settings)
    primary = [c for c in comparisons if c.family == "primary"]
    family: Literal["primary", "secondary"] = "primary" if primary else "secondary"
    members = primary or [c for c in comparisons if c.family == "secondary"]
    alpha = exp.alpha / max(1, len(members))  # Holm's first step: the level the smallest p of the family must pass
    sides: Literal["greater", "two-sided", "equivalence"] = "greater" if primary else "two-sided"
    if primary and primary[0].prediction == "equivalent" and primary[0].margin:
        # an equivalence claim is tested by TOST against its margin: the seeds it takes are those that show
        # equivalence within the margin were the true difference zero (a relay paper sized them for a one-sided
        # test of a 1-sd effect, and both reviewers asked how that powered a TOST with margin 0.004)
        sides, effect, source = "equivalence", primary[0].margin, "the pre-registered equivalence margin"
    # a few seeds' estimate (or its floor where they agreed): the power is the one expected over what the true
    # spread may be
    sd = pilot.sd
    chosen = stats_design.seeds_for_power(
        effect,
        sd,
        alpha=alpha,
        power=exp.power,
        cap=cap,
        minimum=len(pilot.values) if pilot.reused else 2,
        sides=sides,
        pilot_n=len(pilot.values),
    )
    return SeedDesign(
        method="power",
        seeds=chosen.seeds,
        cap=cap,
        capped=chosen.capped,
        family=family,
        alpha=alpha,
        sides=sides,
        wanted_power=exp.power,
        effect=effect,
        effect_source=source,
        sd=sd,
        power=chosen.power,
        needed=chosen.needed,
        detectable=chosen.detectable if math.isfinite(chosen.detectable) else None,
        reason=design_sentence(chosen, family, sides, source, cap_why, sd_source(pilot)) + beyond_range(chosen, pilot),
    )


def seed_cap(pilot: Pilot, conditions: int, settings: PlanningSettings) -> tuple[int, str]:
    """The most seeds per condition: ``experiment.seeds``, or fewer where ``experiment.plan_budget_s`` of job
    time, at the pilot's job time, runs out first; and which of the two binds."""
    cap, why = len(settings.seeds), "experiment.seeds"
    budget = settings.experiment.plan_budget_s
    if budget is not None and pilot.job_s > 0:
        affordable = int(budget // (conditions * pilot.job_s))
        if affordable < cap:
            cap, why = max(1, affordable), f"experiment.plan_budget_s={budget:g} at {pilot.job_s:.3g} s a run"
    return cap, why


def beyond_range(chosen: stats_design.SeedPlan, pilot: Pilot) -> str:
    """A clause for a detectable effect wider than the metric's whole range (an accuracy can move by 1 at most):
    then no effect the metric can show is detectable, and the plan says so rather than quote the number alone."""
    low, high = band_limits(np.array(pilot.values, dtype=float))
    span = high - low
    if not chosen.capped or not math.isfinite(span) or not (chosen.detectable > span):
        return ""
    return (
        f" That is more than the metric's whole range ({low:g} to {high:g}): with these seeds no difference the metric "
        "can show is detectable, so the comparison can only come out inconclusive."
    )


def sd_source(pilot: Pilot) -> str:
    """Where the design's seed-to-seed sd comes from, for its sentence: the pilot's spread, or its floor."""
    if pilot.sd_floored:
        return f"a floor at the metric's resolution: {stats_design.floor_cause(pilot.values)}"
    return "the pilot's"


def design_sentence(
    chosen: stats_design.SeedPlan, family: str, sides: str, source: str, cap_why: str, sd_from: str = "the pilot's"
) -> str:
    """What the seeds can and cannot detect, in one sentence for the plan and the paper."""
    kind = {"greater": "one-sided", "equivalence": "TOST, the true difference taken as zero"}.get(sides, "two-sided")
    test = f"the {family} comparison at level {chosen.alpha:.3g} ({kind})"
    spread = f"a seed-to-seed sd of {chosen.sd:.3g} ({sd_from}; power expected over its uncertainty)"
    aim = (
        f"equivalence within a margin of {chosen.effect:.3g} ({source}) at {spread}"
        if sides == "equivalence"
        else f"an effect of {chosen.effect:.3g} ({source}) at {spread}"
    )
    if not chosen.capped:
        verb = "show" if sides == "equivalence" else "detect"
        return f"{chosen.seeds} seeds per condition give {chosen.power:.0%} power to {verb} {aim} in {test}."
    needed = f"{chosen.needed} seeds" if chosen.needed is not None else "more seeds than the search allows"
    detectable = f"{chosen.detectable:.3g}" if math.isfinite(chosen.detectable) else "no finite effect"
    least = "margin they show equivalence within" if sides == "equivalence" else "effect they detect"
    return (
        f"{needed} would give {chosen.wanted_power:.0%} power to {'show' if sides == 'equivalence' else 'detect'} "
        f"{aim} in {test}, but {cap_why} caps them at {chosen.seeds}: {chosen.power:.1%} power for it; the smallest "
        f"{least} with {chosen.wanted_power:.0%} power is {detectable}."
    )
