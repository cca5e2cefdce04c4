"""Planning: turn the chosen hypothesis into a runnable multi-condition experiment over its template.

For a template with components the plan tests the hypothesis's method: the baseline, the method, an
ablation per changed component (the method with that component put back to the baseline's option),
and, with ``experiment.sensitivity``, the method at other values of one knob. The model writes the
design's rationale and picks the knob and values of the sweep; the harness coerces every value into
the knob's range, so even a weak model yields a runnable plan (what it repaired is recorded). For a
template with knobs only, the plan compares values of one knob with its default, as before. Seeds
come from the config, steps from the config or the template's scale.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints

from experiments.spec import TemplateSpec, load_template
from fars.config import FarsConfig
from fars.run.contracts import IdeationOutput, Plan, PlanningOutput, Value
from fars.stages.base import StageContext, StageFn, register_stage
from fars.stages.methods import component_conditions, inert_slots, knob_conditions, knob_values

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
        )


def coerced_values(spec: TemplateSpec, knob: str, raw: list[str], count: int) -> list[Value]:
    """The model's values for a knob, parsed and clamped into range, distinct from the default."""
    k = spec.knob(knob)
    values: list[Value] = []
    for item in raw:
        value = k.coerce(item)
        if value != k.default and value not in values:
            values.append(value)
    return values[:count]


@register_stage("planning", produces=PlanningOutput, consumes=(IdeationOutput,), settings=PlanningSettings.of)
def planning(settings: PlanningSettings, services: Services) -> StageFn:
    """Factory of the Planning stage."""
    llm = services.llm

    async def run(ctx: StageContext) -> PlanningOutput:
        idea = ctx.input(IdeationOutput)
        spec = load_template(idea.template, settings.template_dirs)
        chosen = idea.require_chosen()
        method = {s: o for s, o in chosen.method.items() if s in spec.component_names}
        inert = inert_slots(spec, method)  # a slot changed in name only would give an ablation equal to the method
        method = {s: o for s, o in method.items() if s not in inert}
        design: Literal["components", "knob"] = "components" if method else "knob"
        focus = idea.focus or (spec.knobs[0].name if spec.knobs else "")
        knob_lines = "\n".join(
            f"- {k.name}: {k.help}; default {k.default}"
            + (f"; choices {k.choices}" if k.choices else f"; range {k.low} to {k.high}")
            for k in spec.knobs
        )
        task = (
            f"The plan runs the baseline, the method ({', '.join(f'{s}={o}' for s, o in method.items())}) and "
            "the method without each of its components. Pick one setting for a sensitivity check of the method"
            if design == "components"
            else "Pick the setting to vary"
        )
        ask = [
            {"role": "system", "content": "You design small, decisive machine learning experiments."},
            {
                "role": "user",
                "content": (
                    f"Hypothesis: {chosen.statement}\nExperiment: {spec.description}\nSettings:\n{knob_lines}\n"
                    f"{task} (probably '{focus}') and up to {settings.max_variants} values to compare with its "
                    "default. Say why this design tests the hypothesis."
                ),
            },
        ]
        draft = await llm.structured(ask, PlanDraft, max_tokens=250)
        repaired: list[str] = [f"{why}: left out of the method" for why in inert.values()]
        names = [k.name for k in spec.knobs]
        knob = draft.knob.strip()
        if knob not in names:
            if names:
                repaired.append(f"model chose unknown setting {draft.knob!r}; used {focus!r}")
            knob = focus
        values = coerced_values(spec, knob, list(draft.values), settings.max_variants) if knob else []
        if knob and not values:
            values = knob_values(spec, knob, settings.max_variants)
            repaired.append(f"model values {list(draft.values)} gave no value distinct from the default; used {values}")
        if design == "components":
            sweep = (knob, values) if settings.sensitivity and knob and values else None
            conditions = component_conditions(spec, method, ablations=settings.ablations, sensitivity=sweep)
            if settings.ablations and len(method) < 2:
                repaired.append(f"the method changes one component ({method}): no ablation distinct from the baseline")
        else:
            conditions = knob_conditions(spec, knob, values)
        plan = Plan(
            template=spec.name,
            hypothesis=chosen.statement,
            design=design,
            conditions=conditions,
            seeds=list(settings.seeds),
            steps=settings.steps or spec.scale(settings.scale).steps,
            scale=settings.scale,
            knob=knob or None,
            rationale=draft.rationale,
            repaired=repaired,
        )
        ctx.save_artifact("plan", "plan.json", plan.model_dump_json(indent=1))
        return PlanningOutput(plan=plan)

    return run
