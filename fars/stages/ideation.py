"""Ideation: from the research area to candidate hypotheses, screened, the best one kept.

Hypotheses must be testable with the experiment templates at hand, so the prompt names them and
their knobs; each project is pointed at a different knob so parallel projects do not collide.
"""

from __future__ import annotations

import json
from typing import Literal

from pydantic import BaseModel, Field

from experiments.spec import TemplateSpec, load_template
from fars.config import FarsConfig
from fars.records import ProjectStatus
from fars.stages.base import StageContext, StageFn, StageOutput, StopProject, register_stage


class Hypothesis(BaseModel):
    """A testable research hypothesis."""

    title: str = Field(min_length=3, max_length=90, description="short title")
    statement: str = Field(min_length=10, max_length=260, description="a testable claim about the effect of a setting")
    rationale: str = Field(min_length=3, max_length=260, description="why it might hold")


# directions that make a project's hypotheses differ from each other, even at temperature 0
ANGLES = (
    "raising {knob} above its default",
    "lowering {knob} below its default",
    "a non-monotonic effect of {knob}, with a best value in between",
    "{knob} changing how much results vary across random seeds",
    "{knob} changing how fast training converges",
)


Rating = Literal[1, 2, 3, 4, 5]


class Score(BaseModel):
    """A screening score for one hypothesis, 1 (bad) to 5 (excellent) on each axis."""

    novelty: Rating
    feasibility: Rating
    clarity: Rating


def describe_templates(templates: list[TemplateSpec]) -> str:
    """One paragraph per template: what it studies and its knobs."""
    lines = []
    for t in templates:
        knobs = ", ".join(f"{k.name} ({k.help})" for k in t.knobs)
        lines.append(f"- {t.name}: {t.description} Settings that can be changed: {knobs}. Metric: {t.metric}.")
    return "\n".join(lines)


@register_stage("ideation")
def ideation(cfg: FarsConfig) -> StageFn:
    """Factory of the Ideation stage."""
    templates = [load_template(name) for name in cfg.experiment.templates]
    n = cfg.pipeline.hypotheses_per_project
    threshold = cfg.pipeline.screen_threshold

    async def run(ctx: StageContext) -> StageOutput:
        template = templates[ctx.index % len(templates)]
        focus = template.knobs[ctx.index % len(template.knobs)]
        hypotheses: list[Hypothesis] = []
        for i in range(n):
            angle = ANGLES[i % len(ANGLES)].format(knob=focus.name)
            ask = [
                {
                    "role": "system",
                    "content": "You are a machine learning researcher who proposes small, testable hypotheses.",
                },
                {
                    "role": "user",
                    "content": (
                        f"Research area: {ctx.area}.\nExperiment: {template.name}: {template.description}\n"
                        f"The setting '{focus.name}' is {focus.help} (default {focus.default}).\n"
                        f"Propose one hypothesis about {angle}, and its effect on {template.metric}. "
                        "Give a specific title, a testable statement and a short rationale."
                    ),
                },
            ]
            hypotheses.append(await ctx.llm.structured(ask, Hypothesis, max_tokens=250))
        scores: list[dict[str, int]] = []
        for h in hypotheses:
            screen = [
                {"role": "system", "content": "You are a strict senior researcher screening research ideas."},
                {
                    "role": "user",
                    "content": (
                        f"Hypothesis: {h.title}. {h.statement}\nScore it from 1 (bad) to 5 (excellent) for "
                        "novelty, feasibility with a small CPU experiment, and clarity."
                    ),
                },
            ]
            scores.append((await ctx.llm.structured(screen, Score, max_tokens=60)).model_dump())
        overall = [round(sum(s.values()) / 3, 2) for s in scores]
        seen: set[str] = set()
        for i, h in enumerate(hypotheses):  # a repeated hypothesis does not pass screening twice
            key = " ".join(h.statement.lower().split())
            if key in seen:
                overall[i] = 0.0
            seen.add(key)
        passed = [i for i, score in enumerate(overall) if score >= threshold]
        ctx.save_artifact(
            "hypothesis",
            "hypotheses.json",
            json.dumps({"hypotheses": [h.model_dump() for h in hypotheses], "scores": scores}, indent=1),
        )
        output: StageOutput = {
            "hypotheses": [h.model_dump() for h in hypotheses],
            "scores": scores,
            "overall": overall,
            "screened": len(passed),
            "template": template.name,
            "focus": focus.name,
        }
        if not passed:
            raise StopProject(
                ProjectStatus.screened_out,
                f"no hypothesis reached the screening threshold {threshold} (scores {overall})",
                output,
            )
        best = max(passed, key=lambda i: (overall[i], -i))
        output["chosen"] = output["hypotheses"][best]
        return output

    return run
