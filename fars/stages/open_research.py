"""Open research (``pipeline.research=open``): the model proposes, implements and interprets; the harness verifies.

Ideation shows the model the task, its metric, the template's settings as tools it may use (each component's
options, each knob's range), what new code may define (the extension points and editable files), and the
area's related works with their abstracts. The model proposes ideas of its own, each with its mechanism, the
settings and code it changes, its prediction (better or worse by a size, or equivalent within a margin), the
named parts an ablation can remove, and the risks to the study's validity. The harness checks each idea against
the template (an unknown setting or an option that does not exist is dropped and said) and screens it with
another persona against a written rubric with anchored levels.

After the plan's conditions ran, the model reads the results (every condition's mean, interval, seeds, tests
and curve) and writes its analysis relative to its prediction, and may ask for at most ``experiment.followups``
follow-up conditions; the harness runs those on the plan's seeds and the model revises its analysis. The paper's
claims are then checked against the results as any prose is.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints, create_model

from experiments.spec import TemplateSpec
from fars.evaluation.preregistered import test_words
from fars.run.contracts import (
    ConditionResult,
    FollowupRequest,
    HypothesisRecord,
    IdeaPart,
    ModelAnalysis,
    RelatedEntry,
    Results,
    Value,
)

Short = Annotated[str, StringConstraints(min_length=1, max_length=60)]


class SettingChoice(BaseModel):
    """One setting of the experiment the idea changes."""

    name: str = Field(min_length=1, max_length=40, description="a component or knob named in the settings list")
    value: str = Field(min_length=1, max_length=40, description="the option (component) or value (knob) it takes")


class PartDraft(BaseModel):
    """A named part of the idea that one ablation removes."""

    name: str = Field(min_length=2, max_length=40, description="a short snake_case name")
    what: str = Field(min_length=3, max_length=200, description="what this part does")
    settings: list[Short] = Field(
        default_factory=list, max_length=4, description="names of the settings it changes; empty for a code part"
    )


class Idea(BaseModel):
    """A research idea the experiment can test."""

    title: str = Field(min_length=3, max_length=100, description="a specific title")
    statement: str = Field(min_length=10, max_length=300, description="the testable claim about the metric")
    mechanism: str = Field(min_length=10, max_length=700, description="why it should work")
    settings: list[SettingChoice] = Field(default_factory=list, max_length=4)
    code_change: str = Field(
        default="", max_length=700, description="what new code does that settings cannot; empty if settings suffice"
    )
    prediction: Literal["better", "worse", "equivalent"]
    effect: float = Field(gt=0, description="the predicted difference in metric units, or the equivalence margin")
    parts: list[PartDraft] = Field(min_length=1, max_length=4)
    risks: list[Annotated[str, StringConstraints(min_length=3, max_length=240)]] = Field(min_length=1, max_length=3)
    searches: list[Annotated[str, StringConstraints(min_length=3, max_length=120)]] = Field(
        default_factory=list, max_length=3, description="short literature search queries for the closest prior work"
    )


def ideas_schema(count: int) -> type[BaseModel]:
    """The reply schema for ``count`` ideas (a list bound is where a grammar-held reply must end)."""
    return create_model("Ideas", __doc__="Research ideas.", ideas=(list[Idea], Field(min_length=1, max_length=count)))


SCHEMA_TEXTS = [f.description or "" for f in Idea.model_fields.values()]

RUBRIC = """Score each axis from 1 to 5 by these anchors.
Novelty: 1 a textbook result or a restatement of a default; 3 a known technique in a setting where its effect is
not settled; 5 a mechanism or prediction the related works do not make.
Feasibility: 1 cannot be run with these settings and code on a small CPU budget; 3 runnable, but the predicted
effect is near the seed-to-seed noise or needs many more steps; 5 runnable, with an effect the planned seeds can
detect.
Clarity: 1 no single testable claim; 3 a claim, but its parts or its prediction are vague; 5 one claim, a
predicted size (or margin), and parts an ablation can remove one at a time."""


def tools_text(spec: TemplateSpec) -> str:
    """The template's settings as tools: each component's options with what they do, each knob's range."""
    lines = ["Components (a method picks one option per slot; the baseline's is marked *):"]
    for c in spec.components:
        options = "; ".join(f"{o}{'*' if o == c.default else ''}: {what}" for o, what in c.options.items())
        lines.append(f"- {c.name} ({c.help}): {options}")
    lines.append("Knobs (default, then range or choices):")
    for k in spec.knobs:
        span = f"choices {k.choices}" if k.choices else f"{k.low} to {k.high}"
        lines.append(f"- {k.name}: {k.help}; default {k.default}; {span}")
    return "\n".join(lines)


def code_text(spec: TemplateSpec) -> str:
    """What new code may do: the editable files and the extension points a method module may define."""
    if not spec.editable:
        return "This template's code cannot be edited: the idea must work through its settings."
    return (
        f"Editable files: {', '.join(spec.editable)}. A method module may define: {spec.extension or 'nothing'}. "
        "Code changes are implemented afterwards in a sandbox; each code part becomes a switch an ablation turns off."
    )


def ideas_prompt(
    area: str, spec: TemplateSpec, works: list[RelatedEntry], count: int, budget: str = ""
) -> list[dict[str, str]]:
    """The request for ``count`` ideas of the model's own on this template, with the budget and the baseline's
    pilot (its score, spread and curve) where they are known."""
    related = "\n".join(f"- {w.title} ({w.year or 'n.d.'}): {w.abstract[:300] or 'no abstract'}" for w in works[:6])
    direction = "higher" if spec.higher_is_better else "lower"
    return [
        {
            "role": "system",
            "content": "You are a machine learning researcher who proposes precise, falsifiable ideas and designs "
            "small experiments that can decide them.",
        },
        {
            "role": "user",
            "content": (
                f"Research area: {area}.\nTask: {spec.title}: {spec.description}\nMetric: {spec.metric} ({direction} "
                f"is better).\n{budget}{tools_text(spec)}\n{code_text(spec)}\n"
                + (f"Related works (title, abstract):\n{related}\n" if related else "")
                + f"Propose {count} different ideas. For each: a title; the testable claim; the mechanism; the "
                "settings it changes (names and values from the lists above); any code change that settings cannot "
                "express; the prediction (better, worse, or equivalent) with its size in metric units (for "
                "equivalent: the margin within which the difference counts as none); one to four named parts, each "
                "removable by one ablation (a part lists the settings it changes, or none if it is code); and the "
                "main risks to the study's validity; and two or three short literature search queries (a few "
                "words each, as you would type them into a paper search) that would find the closest prior work on "
                "the idea's question. Change as few things as the mechanism needs: every extra setting is another "
                "part to ablate."
            ),
        },
    ]


def screening_prompt(record: HypothesisRecord) -> list[dict[str, str]]:
    """The screening request for an open idea, from a persona other than the one that proposed it."""
    settings = ", ".join(f"{k}={v}" for k, v in {**record.method, **record.knobs}.items()) or "none"
    parts = "; ".join(p.name + (" (code)" if p.code else f" ({', '.join(p.settings)})") for p in record.parts)
    return [
        {
            "role": "system",
            "content": "You are a skeptical area chair screening research ideas before any compute is spent.",
        },
        {
            "role": "user",
            "content": (
                f"Idea: {record.title}. {record.statement}\nMechanism: {record.mechanism}\nSettings: {settings}\n"
                f"Code: {record.code_change or 'none'}\nParts: {parts}\nPrediction: {record.prediction}"
                f" ({'margin' if record.prediction == 'equivalent' else 'size'} "
                f"{record.margin or record.effect})\n{RUBRIC}"
            ),
        },
    ]


def open_record(spec: TemplateSpec, idea: Idea) -> HypothesisRecord:
    """The idea as a hypothesis record, checked against the template: settings that are not the template's (or
    options it lacks, or a default) are dropped and said; parts keep only the settings the idea sets."""
    repaired: list[str] = []
    method: dict[str, str] = {}
    knobs: dict[str, Value] = {}
    for choice in idea.settings:
        name, value = choice.name.strip(), choice.value.strip()
        if name in spec.component_names:
            component = spec.component(name)
            if value not in component.options:
                repaired.append(f"{name}={value}: not an option of {name} ({', '.join(component.options)}); dropped")
            elif value == component.default:
                repaired.append(f"{name}={value} is the baseline's option; dropped")
            else:
                method[name] = value
        elif name in [k.name for k in spec.knobs]:
            knob = spec.knob(name)
            try:
                coerced = knob.coerce(value)
            except (TypeError, ValueError) as exc:
                repaired.append(f"{name}={value}: {exc}; dropped")
                continue
            if coerced == knob.default:
                repaired.append(f"{name}={value} is the default; dropped")
            else:
                if str(coerced) != value:
                    repaired.append(f"{name}={value} taken as {coerced} (the knob's range)")
                knobs[name] = coerced
        else:
            repaired.append(f"{name}: not a setting of {spec.name}; dropped")
    code = idea.code_change.strip() if spec.editable else ""
    if idea.code_change.strip() and not spec.editable:
        repaired.append("the template's code cannot be edited: the code change is dropped")
    parts = _parts(idea, method, knobs, bool(code), repaired)
    prediction = idea.prediction
    return HypothesisRecord(
        title=idea.title.strip(),
        statement=idea.statement.strip(),
        rationale=idea.mechanism.strip(),
        method=method,
        source="open",
        mechanism=idea.mechanism.strip(),
        knobs=knobs,
        code_change=code,
        prediction=prediction,
        effect=idea.effect if prediction != "equivalent" else None,
        margin=idea.effect if prediction == "equivalent" else None,
        parts=parts,
        risks=[r.strip() for r in idea.risks],
        searches=[q.strip() for q in idea.searches if q.strip()],
        repaired=repaired,
    )


def _parts(
    idea: Idea, method: dict[str, str], knobs: dict[str, Value], code: bool, repaired: list[str]
) -> list[IdeaPart]:
    """The idea's named parts over what survived the check: one part per setting the parts left unnamed."""
    kept_settings = {*method, *knobs}
    parts: list[IdeaPart] = []
    named: set[str] = set()
    for draft in idea.parts:
        settings = [s for s in draft.settings if s in kept_settings and s not in named]
        if draft.settings and not settings:
            repaired.append(f"part {draft.name}: none of its settings {list(draft.settings)} is in the method; dropped")
            continue
        if not settings and not code:
            repaired.append(f"part {draft.name}: no settings and no code change; dropped")
            continue
        named.update(settings)
        name = snake(draft.name) or f"part{len(parts) + 1}"
        if name in {p.name for p in parts}:
            name = f"{name}_{len(parts) + 1}"
        parts.append(IdeaPart(name=name, what=draft.what.strip(), settings=settings, code=not settings))
    for setting in sorted(kept_settings - named):
        parts.append(IdeaPart(name=re.sub(r"\W", "_", setting.lower()), what=f"sets {setting}", settings=[setting]))
        repaired.append(f"{setting} is changed but no part named it: made a part of its own")
    return parts


def snake(text: str) -> str:
    """A name as the harness keys it: lower case words joined by '_' (a part's switch, a condition's name)."""
    return "_".join(re.findall(r"[a-z0-9]+", text.lower()))[:40]


def runnable(record: HypothesisRecord) -> bool:
    """Whether an open idea changes anything the experiment can run (settings, or code to write)."""
    return bool(record.method or record.knobs or record.code_change)


# -- reading the results ---------------------------------------------------------------------------------------
class FollowupDraft(BaseModel):
    """A follow-up condition: the baseline with these settings changed."""

    name: str = Field(min_length=2, max_length=40, description="a short snake_case name")
    settings: list[SettingChoice] = Field(min_length=1, max_length=4)
    why: str = Field(min_length=3, max_length=300, description="what it decides that the results cannot")


class AnalysisDraft(BaseModel):
    """The model's reading of the results."""

    finding: str = Field(min_length=10, max_length=600, description="what was found, relative to the prediction")
    verdict: Literal["supported", "refuted", "equivalent", "inconclusive"]
    analysis: str = Field(min_length=20, max_length=2500, description="the analysis, in paragraphs")


def analysis_schema(followups: int) -> type[AnalysisDraft]:
    """The analysis schema, with room for at most ``followups`` follow-up conditions (none: no field)."""
    if followups <= 0:
        return AnalysisDraft
    return create_model(
        "AnalysisDraft",
        __base__=AnalysisDraft,
        followups=(list[FollowupDraft], Field(default_factory=list, max_length=followups)),
    )


def row_test(c: ConditionResult) -> str:
    """A row's test against the baseline as the model reads it: the test, its p and its family's correction."""
    if c.family == "primary":
        return f"{c.test or 'Welch t-test'} p={c.p_vs_baseline:.3g} (pre-registered primary, uncorrected)"
    if c.family is None:
        return f"two-sided Welch p={c.p_vs_baseline:.3g} (Holm over every condition {c.p_adjusted:.3g})"
    holm = "" if c.p_adjusted is None else f", Holm within the {c.family} family {c.p_adjusted:.3g}"
    return f"{c.test or 'two-sided Welch t-test'} p={c.p_vs_baseline:.3g} ({c.family}{holm})"


def results_text(results: Results, record: HypothesisRecord) -> str:
    """Every condition's mean, interval, seeds and test, and the pre-registered comparisons' verdicts."""
    lines = []
    for name, c in results.conditions.items():
        setting = ", ".join(f"{k}={v}" for k, v in {**c.components, **c.knobs}.items()) or "baseline settings"
        values = ", ".join(f"{v:.4g}" for v in c.values)
        interval = "" if c.ci_low is None else f" [{c.ci_low:.4g}, {c.ci_high:.4g}]"
        test = (
            ""
            if c.p_vs_baseline is None or c.difference is None
            else f"; vs baseline {c.difference:+.4g}, {row_test(c)}"
            + ("" if c.effect_size is None else f", Hedges' g={c.effect_size:+.2f} (positive: better)")
            + f", {c.verdict}"
        )
        lines.append(f"- {name} ({c.role}; {setting}): mean {c.metric.mean:.4g}{interval}; seeds {values}{test}")
    for o in results.comparisons:
        diff = (
            ""
            if o.difference is None or o.ci_low is None or o.ci_high is None
            else f" difference {o.difference:+.4g} (two-sided {o.confidence:.0%} interval [{o.ci_low:.4g}, {o.ci_high:.4g}])"
        )
        test = "" if o.p_value is None else f"; {test_words(o, results.higher_is_better)} p={o.p_value:.3g}"
        if o.family == "secondary" and o.p_adjusted is not None:
            test += f", Holm-adjusted within the secondary family {o.p_adjusted:.3g}"
        one_sided = (
            " (a one-sided test at alpha is as strict as a two-sided interval at 1 - 2 alpha, so it can pass while "
            "the two-sided interval still includes 0)"
            if "one-sided" in test
            else ""
        )
        lines.append(
            f"Pre-registered {o.family} comparison {o.name} (predicted {o.prediction}):{diff}{test} -> verdict "
            f"{o.verdict}{one_sided}"
        )
    predicted = record.prediction or "better"
    size = record.margin if predicted == "equivalent" else record.effect
    head = (
        f"Metric: {results.metric} ({'higher' if results.higher_is_better else 'lower'} is better), "
        f"{results.steps} steps. Your prediction: {predicted}" + (f" (size {size})" if size else "") + "."
    )
    return head + "\n" + "\n".join(lines)


def analysis_prompt(
    record: HypothesisRecord, spec: TemplateSpec, results: Results, followups: int, earlier: ModelAnalysis | None
) -> list[dict[str, str]]:
    """The request to read the results (and, with ``followups``, to ask for at most that many more conditions)."""
    ask_more = (
        f" You may ask for at most {followups} follow-up condition(s), each the baseline with some settings changed "
        "(names and values from the template's settings), run on the same seeds, where it decides something these "
        "results cannot (a confound, a learning-rate check of both arms); ask for none if the results suffice."
        if followups
        else ""
    )
    revise = (
        f"\nYour earlier analysis, before the follow-ups ran: {earlier.finding} {earlier.analysis}\nRevise it."
        if earlier
        else ""
    )
    return [
        {"role": "system", "content": "You are the researcher who proposed this idea; you analyse results honestly."},
        {
            "role": "user",
            "content": (
                f"Idea: {record.title}. {record.statement}\nMechanism: {record.mechanism}\nTask: {spec.title}.\n"
                f"Results:\n{results_text(results, record)}{revise}\nWrite what was found relative to the prediction "
                "(including equivalence where the margin was the claim), your verdict, and the analysis: what the "
                "ablations say about each part, what the spread over seeds allows, and what remains open. Claim "
                f"only what the tests show.{ask_more}"
            ),
        },
    ]


def followup_condition_settings(
    spec: TemplateSpec, draft: FollowupDraft
) -> tuple[dict[str, str], dict[str, Value], list[str]]:
    """A follow-up's components and knobs, checked against the template, and what was dropped."""
    probe = Idea(
        title="followup",
        statement="followup condition",
        mechanism="followup condition",
        settings=draft.settings,
        prediction="better",
        effect=1.0,
        parts=[PartDraft(name="followup", what="the follow-up", settings=[])],
        risks=["none"],
    )
    record = open_record(spec, probe)
    dropped = [r for r in record.repaired if "part" not in r]
    return record.method, record.knobs, dropped


def request_of(draft: FollowupDraft) -> FollowupRequest:
    """A follow-up as recorded, before it runs."""
    return FollowupRequest(
        name=snake(draft.name).replace("_", "-") or "followup",
        settings={s.name: s.value for s in draft.settings},
        why=draft.why,
        status="refused",
    )
