"""Writing: the paper as Markdown and LaTeX, prose from the model, every number from the results.

The model writes title, abstract, introduction and discussion without numbers; the harness writes the
setup, the results table and the results paragraph from the plan and ``results.json``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from experiments.spec import load_template
from fars.config import FarsConfig
from fars.paper import Paper, Section, render_latex, render_markdown, results_table
from fars.stages.base import StageContext, StageFn, StageOutput, register_stage


class Draft(BaseModel):
    """The prose the model contributes."""

    title: str = Field(min_length=5, max_length=120)
    abstract: str = Field(min_length=20, max_length=700)
    introduction: str = Field(min_length=20, max_length=1000)
    discussion: str = Field(min_length=20, max_length=1000)


def findings(results: dict[str, Any]) -> str:
    """A plain statement of what the results show, written from the numbers."""
    metric = results["metric"]
    conds = results["conditions"]
    base = conds["baseline"][metric]["mean"]
    lines = [f"The baseline reached a mean {metric} of {base:.4f}."]
    for name, cond in conds.items():
        if name == "baseline":
            continue
        mean, p = cond[metric]["mean"], cond["p_vs_baseline"]
        change = "higher than" if mean > base else "lower than" if mean < base else "the same as"
        test = (
            ""
            if p is None
            else f" (Welch t-test p = {p:.3g}{', significant at 0.05' if p < 0.05 else ', not significant at 0.05'})"
        )
        lines.append(f"Setting {name} gave {mean:.4f}, {change} the baseline{test}.")
    lines.append(f"The best condition was {results['best']}.")
    return " ".join(lines)


def setup_text(plan: dict[str, Any], description: str, metric: str) -> str:
    """The experimental setup, from the plan."""
    values = ", ".join(str(v) for v in plan["variants"])
    return (
        f"{description} We vary {plan['knob']}: the baseline uses the default {plan['baseline']}, "
        f"compared with {values}. Every condition trains for {plan['steps']} steps with seeds "
        f"{', '.join(str(s) for s in plan['seeds'])}; all other settings stay at their defaults. "
        f"We report the final {metric} on held-out pairs and the validation loss."
    )


@register_stage("writing")
def writing(cfg: FarsConfig) -> StageFn:
    """Factory of the Writing stage."""

    async def run(ctx: StageContext) -> StageOutput:
        hypothesis = ctx.outputs["ideation"]["chosen"]
        plan = ctx.outputs["planning"]["plan"]
        results = ctx.outputs["experiment"]["results"]
        template = load_template(plan["template"])
        summary = findings(results)
        ask = [
            {"role": "system", "content": "You write clear, honest machine learning papers."},
            {
                "role": "user",
                "content": (
                    f"Hypothesis: {hypothesis['statement']}\nExperiment: {setup_text(plan, template.description, results['metric'])}\n"
                    f"Findings: {summary}\nWrite the title, abstract, introduction and discussion of a short paper. "
                    "Do not write any numbers: the results table is added separately."
                ),
            },
        ]
        draft = await ctx.llm.structured(ask, Draft, max_tokens=1000)
        paper = Paper(
            title=draft.title,
            abstract=draft.abstract,
            sections=[
                Section(heading="Introduction", body=draft.introduction),
                Section(heading="Hypothesis", body=f"{hypothesis['title']}. {hypothesis['statement']}"),
                Section(
                    heading="Experimental Setup",
                    body=setup_text(plan, template.description, results["metric"]),
                ),
                Section(heading="Results", body=summary),
                Section(heading="Discussion", body=draft.discussion),
            ],
            table=results_table(results),
            metadata={"project": ctx.project_id, "template": template.name, "knob": plan["knob"]},
        )
        md = ctx.save_artifact("paper", "paper.md", render_markdown(paper))
        tex = ctx.save_artifact("paper", "paper.tex", render_latex(paper))
        ctx.ledger.update_project(ctx.project_id, title=paper.title)
        return {"title": paper.title, "markdown": md.path, "latex": tex.path}

    return run
