"""Planning: turn the chosen hypothesis into a parametric experiment over a template.

The model picks the setting to vary and the values to compare against the template's default; the
harness coerces every value into the knob's range and guarantees at least one real variant, so even
a weak model yields a runnable plan. Seeds and steps come from the config.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

from pydantic import BaseModel, Field, StringConstraints

from experiments.spec import Knob, load_template
from fars.config import FarsConfig
from fars.contracts import IdeationOutput, Plan, PlanningOutput
from fars.stages.base import StageContext, StageFn, register_stage

if TYPE_CHECKING:
    from fars.services import Services


class PlanDraft(BaseModel):
    """What the model proposes."""

    knob: str = Field(min_length=1, max_length=40, description="the setting to vary")
    values: list[Annotated[str, StringConstraints(min_length=1, max_length=16)]] = Field(
        min_length=1, max_length=4, description="values to compare with the default"
    )
    rationale: str = Field(min_length=3, max_length=300)


def fallback_variants(knob: Knob, count: int) -> list[float | int | str]:
    """Distinct values away from the default, used when the model's values collapse onto it."""
    if knob.kind == "choice":
        choices: list[float | int | str] = [c for c in knob.choices if c != knob.default]
        return choices[:count]
    base = float(knob.default) or 1.0
    candidates = (
        [base * f for f in (3.0, 1 / 3, 10.0, 0.1)]
        if knob.log or knob.kind == "int"
        else [base * f for f in (2.0, 0.5, 4.0, 0.25)]
    )
    out: list[float | int | str] = []
    for c in candidates:
        value = knob.coerce(c)
        if value != knob.default and value not in out:
            out.append(value)
    return out[:count]


@dataclass(frozen=True)
class PlanningSettings:
    """What Planning needs of the run's config."""

    max_variants: int
    seeds: tuple[int, ...]
    steps: int

    @classmethod
    def of(cls, cfg: FarsConfig) -> PlanningSettings:
        """The settings of a run's config: seeds start at the run's ``seed``."""
        exp = cfg.experiment
        return cls(exp.max_variants, tuple(range(cfg.seed, cfg.seed + exp.seeds)), exp.steps)


@register_stage("planning", produces=PlanningOutput, consumes=(IdeationOutput,), settings=PlanningSettings.of)
def planning(settings: PlanningSettings, services: Services) -> StageFn:
    """Factory of the Planning stage."""
    llm = services.llm

    async def run(ctx: StageContext) -> PlanningOutput:
        idea = ctx.input(IdeationOutput)
        template = load_template(idea.template)
        chosen = idea.require_chosen()
        knob_lines = "\n".join(
            f"- {k.name}: {k.help}; default {k.default}"
            + (f"; choices {k.choices}" if k.choices else f"; range {k.low} to {k.high}")
            for k in template.knobs
        )
        ask = [
            {"role": "system", "content": "You design small, decisive machine learning experiments."},
            {
                "role": "user",
                "content": (
                    f"Hypothesis: {chosen.statement}\nExperiment: {template.description}\nSettings:\n{knob_lines}\n"
                    f"Pick the setting to vary (probably '{idea.focus}') and up to {settings.max_variants} "
                    "values to compare with its default."
                ),
            },
        ]
        draft = await llm.structured(ask, PlanDraft, max_tokens=250)
        repaired: list[str] = []
        names = [k.name for k in template.knobs]
        knob_name = draft.knob.strip()
        if knob_name not in names:
            repaired.append(f"model chose unknown setting {draft.knob!r}; used {idea.focus!r}")
            knob_name = idea.focus
        knob = template.knob(knob_name)
        variants: list[float | int | str] = []
        for raw in draft.values:
            value = knob.coerce(raw)
            if value != knob.default and value not in variants:
                variants.append(value)
        variants = variants[: settings.max_variants]
        if not variants:
            variants = fallback_variants(knob, settings.max_variants)
            repaired.append(f"model values {draft.values} gave no variant distinct from the default; used {variants}")
        plan = Plan(
            template=template.name,
            knob=knob.name,
            baseline=knob.default,
            variants=variants,
            seeds=list(settings.seeds),
            steps=settings.steps,
            rationale=draft.rationale,
            repaired=repaired,
        )
        ctx.save_artifact("plan", "plan.json", plan.model_dump_json(indent=1))
        return PlanningOutput(plan=plan)

    return run
