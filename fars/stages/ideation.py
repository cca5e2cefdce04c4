"""Ideation: from the research area to candidate hypotheses, screened, checked for novelty, the best kept.

The research area picks the templates (``experiment.templates: [auto]`` ranks every template by the
relevance of its title, domain and description to the area); projects take them in turn. Hypotheses
must be testable with the template, so the harness draws candidate *methods* from the template's
component space (``fars.stages.methods``) and asks the model for one hypothesis about each: what the method
should do to the metric and why. Each project starts further along the candidate order, so parallel
projects study different methods. A hypothesis whose text is degenerate (an echo of the schema or the
prompt, a placeholder, a loop, nothing about the study; ``fars.paper.degenerate``) is rewritten by the harness
from its method, and counted. The literature backend supplies related works of the area (shown to
the model) and of each hypothesis; a hypothesis that passed screening is checked for novelty against
its nearest works: the largest content-word similarity plus the model's structured judgement,
recorded with the works as evidence. Hypotheses found not novel are dropped and counted.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field

from experiments.spec import Knob, TemplateSpec, load_template, template_folders
from fars.config import FarsConfig, LiteratureConfig
from fars.literature import LiteratureBackend, LiteratureError, SearchHit
from fars.literature.similarity import text_similarity
from fars.llm.client import LLMClient
from fars.paper.degenerate import degenerate_reasons
from fars.paper.prose import clip_words, in_sentence, method_phrase, sentence_case
from fars.run.contracts import (
    CapabilityCheck,
    HypothesisRecord,
    IdeationOutput,
    LiteratureInfo,
    MethodCandidate,
    NoveltyEvidence,
    NoveltyVerdict,
    RelatedEntry,
    ScreeningScore,
    TemplateChoice,
)
from fars.run.records import ProjectStatus
from fars.stages.base import StageContext, StageFn, StopProject, register_stage
from fars.stages.capability import check_capability
from fars.stages.methods import candidate_methods, rank_templates, study_terms
from fars.stages.open_research import SCHEMA_TEXTS as OPEN_SCHEMA_TEXTS
from fars.stages.open_research import Idea, ideas_prompt, ideas_schema, open_record, runnable, screening_prompt
from fars.stages.planning import PlanningSettings, pilot_lines, run_pilot

if TYPE_CHECKING:
    from fars.stages.services import Services


class Hypothesis(BaseModel):
    """A testable research hypothesis."""

    title: str = Field(min_length=3, max_length=90, description="short title")
    statement: str = Field(min_length=10, max_length=260, description="a testable claim about the effect of a setting")
    rationale: str = Field(min_length=3, max_length=260, description="why it might hold")


SCHEMA_TEXTS = [f.description or "" for f in Hypothesis.model_fields.values()]


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


class NoveltyJudgement(BaseModel):
    """The model's view of whether a hypothesis is already settled by the nearest prior works."""

    novel: bool = Field(description="true unless one of the listed works already tests this hypothesis")
    closest: int = Field(ge=0, le=10, description="number of the closest listed work, 0 if none is close")
    reason: str = Field(min_length=3, max_length=200)


@dataclass(frozen=True)
class Study:
    """What one project studies: its template, the knob in focus, and the candidate methods it asks about."""

    spec: TemplateSpec
    focus: Knob | None
    candidates: list[MethodCandidate]
    considered: list[TemplateChoice]  # every template the run weighed, with its relevance to the area
    rotation: int = 0  # how many projects on this template came before this one


@dataclass
class Proposals:
    """The project's hypotheses, and how they are recorded (method, who wrote them, what was degenerate)."""

    hypotheses: list[Hypothesis] = field(default_factory=list)
    records: list[HypothesisRecord] = field(default_factory=list)
    degenerate_fields: int = 0


@dataclass(frozen=True)
class IdeationSettings:
    """What Ideation needs of the run's config."""

    templates: tuple[str, ...]
    template_dirs: tuple[str, ...]
    max_templates: int
    method_components: int
    hypotheses: int
    screen_threshold: float
    literature: LiteratureConfig
    research: Literal["auto", "open", "menu"] = "menu"
    planning: PlanningSettings | None = None  # open research: the pilot the ideas are proposed from

    @classmethod
    def of(cls, cfg: FarsConfig) -> IdeationSettings:
        """The settings of a run's config."""
        p, exp = cfg.pipeline, cfg.experiment
        return cls(
            tuple(exp.templates),
            tuple(exp.template_dirs),
            exp.max_templates,
            exp.method_components,
            p.hypotheses_per_project,
            p.screen_threshold,
            cfg.literature,
            p.research,
            PlanningSettings.of(cfg),
        )


@register_stage("ideation", produces=IdeationOutput, settings=IdeationSettings.of)
def ideation(settings: IdeationSettings, services: Services) -> StageFn:
    """Factory of the Ideation stage: choose a template, propose hypotheses, screen them, check the novelty of
    those that pass, keep the best novel one."""
    llm, backend = services.llm, services.literature
    chosen_templates: dict[str, tuple[list[TemplateSpec], list[TemplateChoice]]] = {}  # by area, once a run
    checked: dict[str, asyncio.Task[CapabilityCheck]] = {}  # by model, once a run (a resumed run replays it)

    async def mode() -> tuple[Literal["menu", "open"], CapabilityCheck | None]:
        if settings.research != "auto":
            return settings.research, None
        if llm.cfg.model.startswith("scripted/"):  # the test double: its replies belong to the test's stages
            return "menu", CapabilityCheck(model=llm.cfg.model, passed=False, reason="not asked of the scripted model")
        if llm.cfg.model not in checked:
            checked[llm.cfg.model] = asyncio.ensure_future(check_capability(llm))
        check = await asyncio.shield(checked[llm.cfg.model])
        return ("open" if check.passed else "menu"), check

    async def run(ctx: StageContext) -> IdeationOutput:
        if ctx.area not in chosen_templates:
            chosen_templates[ctx.area] = choose_templates(ctx.area, settings)
        study = study_of(*chosen_templates[ctx.area], ctx.index, settings)
        research, capability = await mode()
        area_works, area_error = await area_related(backend, ctx.area, study.spec, settings.literature.top_k)
        if research == "open":
            budget = await pilot_budget(ctx, services, study.spec, settings.planning)
            proposed = await propose_open(llm, ctx.area, study.spec, area_works, settings.hypotheses, budget)
            scores, overall = await screen_open(llm, proposed.records)
        else:
            proposed = await propose_all(llm, ctx.area, study, area_works, settings.hypotheses)
            scores, overall = await screen(llm, proposed.hypotheses)
        passed = [i for i, score in enumerate(overall) if score >= settings.screen_threshold]
        verdicts, novelty_error = await check_novelty_of(llm, backend, proposed, passed, settings.literature)
        novel = [i for i in passed if verdicts[i].novel]
        output = IdeationOutput(
            hypotheses=proposed.records,
            scores=scores,
            overall=overall,
            screened=len(passed),
            novel=len(novel),
            related=area_works,
            literature=LiteratureInfo(
                backend=backend.name,
                error=area_error or novelty_error,
                answered_by=answered_by(backend, ctx.project_id, ctx.stage),
            ),
            template=study.spec.name,
            focus=study.focus.name if study.focus else "",
            candidates=study.candidates,
            templates_considered=study.considered,
            fields_checked=3 * len(proposed.records),
            degenerate_fields=proposed.degenerate_fields,
            research=research,
            capability=capability,
        )
        # open ideas: the same request on a template gets the same ideas (temperature 0), so the n-th project on
        # it takes the n-th best novel idea; menu projects already start further along the template's methods
        skip = study.rotation if research == "open" else 0
        return keep_best(ctx, output, passed, novel, verdicts, settings.screen_threshold, skip)

    return run


def choose_templates(area: str, settings: IdeationSettings) -> tuple[list[TemplateSpec], list[TemplateChoice]]:
    """The templates this run's projects take in turn, and every template considered with its relevance.

    ``[auto]`` ranks every research template by relevance to the area and keeps the best
    ``max_templates``; named templates are used as given (their relevance still recorded).
    """
    dirs = settings.template_dirs
    if list(settings.templates) == ["auto"]:
        specs = [load_template(n, dirs) for n in template_folders(dirs)]
        # a template without the run's scale cannot run its study (preflight refuses one named in the config)
        scale = settings.planning.scale if settings.planning else "ci"
        ranked = rank_templates(area, [s for s in specs if s.research and s.has_scale(scale)])
        chosen = [next(s for s in specs if s.name == c.name) for c in ranked[: settings.max_templates]]
        return chosen, ranked
    specs = [load_template(n, dirs) for n in settings.templates]
    return specs, rank_templates(area, specs)


def study_of(
    templates: list[TemplateSpec], considered: list[TemplateChoice], index: int, settings: IdeationSettings
) -> Study:
    """The template of project ``index`` (projects take the chosen templates in turn), its focus knob and its
    candidate methods: the n-th project on a template starts further along the template's methods."""
    spec = templates[index % len(templates)]
    rotation = index // len(templates)
    focus = spec.knobs[rotation % len(spec.knobs)] if spec.knobs else None
    n = settings.hypotheses
    candidates = candidate_methods(spec, settings.method_components, offset=rotation * n, count=n)
    return Study(spec, focus, candidates, considered, rotation)


async def area_related(
    backend: LiteratureBackend, area: str, spec: TemplateSpec, k: int
) -> tuple[list[RelatedEntry], str | None]:
    """The related works of the area and template (shown to the model), or none and why."""
    query = f"{area}. {spec.title}. {spec.domain}. {spec.description}"
    hits, error = await find_related(backend, query, k)
    return [related_entry(h, query) for h in hits], error


async def propose_all(llm: LLMClient, area: str, study: Study, area_works: list[RelatedEntry], n: int) -> Proposals:
    """``n`` hypotheses, one a candidate method (or an angle on the focus knob, for a template of knobs only)."""
    known = (
        "Related work found for this area:\n" + "\n".join(f"- {r.title}" for r in area_works[:3]) + "\n"
        if area_works
        else ""
    )
    proposed = Proposals()
    focus = study.focus
    for i in range(n):
        candidate = study.candidates[i % len(study.candidates)] if study.candidates else None
        angle = ANGLES[i % len(ANGLES)].format(knob=focus.name) if focus else "the template's settings"
        hypothesis, reasons, method = await propose(llm, area, study.spec, known, candidate, angle)
        proposed.degenerate_fields += len({r.split(":", 1)[0] for r in reasons})
        proposed.hypotheses.append(hypothesis)
        proposed.records.append(
            HypothesisRecord(
                **hypothesis.model_dump(),
                method=method,
                written_by="harness" if reasons and candidate is not None else "model",
                degenerate=reasons,
            )
        )
    return proposed


async def propose(
    llm: LLMClient, area: str, spec: TemplateSpec, known: str, candidate: MethodCandidate | None, angle: str
) -> tuple[Hypothesis, list[str], dict[str, str]]:
    """One hypothesis (the model's, or the harness's when the model's is degenerate), why it was replaced, and
    its method."""
    method = dict(candidate.components) if candidate else {}
    ask = proposal_prompt(area, spec, known, candidate, angle)
    drafted = await llm.structured(ask, Hypothesis, max_tokens=250)
    expected = study_terms(spec, method) if candidate else [spec.title, spec.metric, angle]
    reasons: list[str] = []
    for name in ("title", "statement", "rationale"):
        found = degenerate_reasons(
            getattr(drafted, name),
            echoes=SCHEMA_TEXTS,
            prompt=ask[1]["content"],
            field_names=Hypothesis.model_fields,
            expected=expected,
        )
        reasons += [f"{name}: {r}" for r in found]
    if reasons and candidate is not None:
        return harness_hypothesis(spec, candidate), reasons, method
    return drafted, reasons, method


async def pilot_budget(
    ctx: StageContext, services: Services, spec: TemplateSpec, planning: PlanningSettings | None
) -> str:
    """What an open idea is proposed against: the training budget (steps, seeds) and the baseline's pilot, its
    spread and its curve. The pilot's runs are kept, so Planning's pilot reads them back without running them."""
    if planning is None:
        return ""
    steps = planning.steps or spec.scale(planning.scale).steps
    budget = (
        f"Budget: every condition trains for {steps} steps; seeds per condition are chosen by a power analysis, "
        f"at most {len(planning.seeds)}.\n"
    )
    pilot = await run_pilot(ctx, services, spec, steps, planning)
    if pilot is None or pilot.mean is None:
        return budget
    curve = ", ".join(f"step {step}: {value:.4g}" for step, value in pilot.curve)
    return budget + pilot_lines(pilot) + (f"Its mean {spec.metric} along training: {curve}.\n" if curve else "")


async def propose_open(
    llm: LLMClient, area: str, spec: TemplateSpec, area_works: list[RelatedEntry], n: int, budget: str = ""
) -> Proposals:
    """``n`` ideas of the model's own (``fars.stages.open_research``), each checked against the template; an idea
    whose text is degenerate, or that changes nothing the experiment can run, is kept on record but cannot pass."""
    ask = ideas_prompt(area, spec, area_works, n, budget)
    reply = await llm.structured(ask, ideas_schema(n), max_tokens=900 * n)
    proposed = Proposals()
    for idea in reply.ideas[:n]:  # type: ignore[attr-defined]  # ideas_schema builds the model at run time
        record = open_record(spec, idea)
        reasons: list[str] = []
        # an idea is in the model's own words: the statement must name the study (its task, metric or settings),
        # the mechanism the idea; the title only must not be an echo
        study = [spec.title, spec.domain, spec.description, spec.metric.replace("_", " "), *spec.setting_names]
        study += [f"{option} {what}" for c in spec.components for option, what in c.options.items()]
        expected = {"title": [], "statement": study, "mechanism": [*study, idea.title, idea.statement]}
        for name, terms in expected.items():
            found = degenerate_reasons(
                getattr(idea, name),
                echoes=OPEN_SCHEMA_TEXTS,
                prompt=ask[1]["content"],
                field_names=Idea.model_fields,
                expected=terms,
            )
            reasons += [f"{name}: {r}" for r in found]
        if not runnable(record):
            reasons.append("changes nothing the experiment can run")
        proposed.degenerate_fields += len({r.split(":", 1)[0] for r in reasons})
        record.degenerate = reasons
        proposed.hypotheses.append(
            Hypothesis(title=idea.title, statement=idea.statement, rationale=idea.mechanism[:260])
        )
        proposed.records.append(record)
    return proposed


async def screen_open(llm: LLMClient, records: list[HypothesisRecord]) -> tuple[list[ScreeningScore], list[float]]:
    """Each open idea screened by another persona against the written rubric (``open_research.RUBRIC``); an idea
    with degenerate text or nothing to run scores 0, as does a repeat."""
    scores: list[ScreeningScore] = []
    overall: list[float] = []
    seen: set[str] = set()
    for record in records:
        score = await llm.structured(screening_prompt(record), Score, max_tokens=60)
        scores.append(ScreeningScore.model_validate(score.model_dump()))
        key = " ".join(record.statement.lower().split())
        overall.append(0.0 if record.degenerate or key in seen else scores[-1].overall)
        seen.add(key)
    return scores, overall


def proposal_prompt(
    area: str, spec: TemplateSpec, known: str, candidate: MethodCandidate | None, angle: str
) -> list[dict[str, str]]:
    """The request for one hypothesis about a method (or an angle), its effect on the metric and why."""
    about = (
        f"the method: {candidate.summary}, instead of the baseline's "
        + ", ".join(f"{s}={spec.component(s).default}" for s in candidate.components)
        if candidate
        else angle
    )
    return [
        {
            "role": "system",
            "content": "You are a machine learning researcher who proposes small, testable hypotheses.",
        },
        {
            "role": "user",
            "content": (
                f"Research area: {area}.\n{known}Experiment: {spec.title}: {spec.description}\n"
                f"Propose one hypothesis about {about}, and its effect on {spec.metric} "
                f"({'higher' if spec.higher_is_better else 'lower'} is better). "
                "Give a specific title, a testable statement and a short rationale."
            ),
        },
    ]


def harness_hypothesis(spec: TemplateSpec, candidate: MethodCandidate) -> Hypothesis:
    """A hypothesis written by the harness from a method, for when the model's text is degenerate."""
    better = "raises" if spec.higher_is_better else "lowers"
    slots = " and ".join(candidate.components)
    task = in_sentence(spec.title)
    effect = f"{better} the final {spec.metric} of {task} compared with the template's baseline."
    statement = sentence_case(f"{candidate.summary} {effect}")
    if len(statement) > 260:  # the options' descriptions are long: name the options instead
        statement = sentence_case(f"{method_phrase(spec, candidate.components)} {effect}")
    what = "how the model trains" if spec.kind == "training" else "how the subject model is asked or scored"
    return Hypothesis(
        title=clip_words(sentence_case(f"{method_phrase(spec, candidate.components)} in {task}"), 90),
        statement=clip_words(statement, 259).rstrip(".") + ".",
        rationale=clip_words(
            f"Each changes {what} ({slots}); together they may do more than either alone, which the ablations test.",
            260,
        ),
    )


async def screen(llm: LLMClient, hypotheses: list[Hypothesis]) -> tuple[list[ScreeningScore], list[float]]:
    """The model's screening scores of each hypothesis, and each one's overall score (0 for a repeat: a repeated
    hypothesis does not pass screening twice)."""
    scores: list[ScreeningScore] = []
    for h in hypotheses:
        ask = [
            {"role": "system", "content": "You are a strict senior researcher screening research ideas."},
            {
                "role": "user",
                "content": (
                    f"Hypothesis: {h.title}. {h.statement}\nScore it from 1 (bad) to 5 (excellent) for "
                    "novelty, feasibility with a small CPU experiment, and clarity."
                ),
            },
        ]
        scores.append(ScreeningScore.model_validate((await llm.structured(ask, Score, max_tokens=60)).model_dump()))
    overall = [s.overall for s in scores]
    seen: set[str] = set()
    for i, h in enumerate(hypotheses):
        key = " ".join(h.statement.lower().split())
        if key in seen:
            overall[i] = 0.0
        seen.add(key)
    return scores, overall


async def check_novelty_of(
    llm: LLMClient, backend: LiteratureBackend, proposed: Proposals, passed: list[int], cfg: LiteratureConfig
) -> tuple[dict[int, NoveltyVerdict], str | None]:
    """The novelty verdict of each hypothesis that passed screening (only those), its nearest works recorded
    with it; and the first literature error met."""
    verdicts: dict[int, NoveltyVerdict] = {}
    first_error = None
    for i in passed:
        hypothesis, record = proposed.hypotheses[i], proposed.records[i]
        text = f"{hypothesis.title}. {hypothesis.statement}"
        hits, error = await find_related(backend, text, cfg.top_k)
        first_error = first_error or error
        # a capable model's own queries find what the statement's words miss: the relay run's digits idea, searched
        # by its statement alone, missed the corpus's CNN-vs-fully-connected sample-complexity papers, and both
        # reviewers named them missing
        for query in record.searches:
            found, error = await find_related(backend, query, cfg.top_k)
            first_error = first_error or error
            hits += [h for h in found if h.record.id not in {k.record.id for k in hits}]
        record.related = [related_entry(h, text) for h in hits]
        abstracts = record.source == "open"  # the embedded model's 8k window holds titles only
        verdicts[i] = record.novelty = await check_novelty(llm, hypothesis, record.related, cfg, abstracts)
    return verdicts, first_error


async def find_related(backend: LiteratureBackend, query: str, k: int) -> tuple[list[SearchHit], str | None]:
    """The backend's hits for ``query``, or none and the reason when no backend could answer."""
    try:
        return await backend.search(query, k), None
    except LiteratureError as exc:
        return [], f"literature search failed: {str(exc)[:300]}"


def related_entry(hit: SearchHit, text: str) -> RelatedEntry:
    """A retrieved work as stored with a hypothesis: the record, the backend's score, the similarity."""
    record = hit.record
    return RelatedEntry(
        id=record.id,
        title=record.title,
        authors=record.authors[:8],
        year=record.year,
        venue=record.venue,
        url=record.url,
        source=record.source,
        score=hit.score,
        similarity=round(text_similarity(text, f"{record.title}. {record.abstract or ''}"), 4),
        abstract=(record.abstract or "")[:400],
    )


async def check_novelty(
    llm: LLMClient, hypothesis: Hypothesis, related: list[RelatedEntry], cfg: LiteratureConfig, abstracts: bool = False
) -> NoveltyVerdict:
    """The novelty verdict of a hypothesis against its nearest works, with its evidence.

    Dropped when the largest similarity reaches ``novelty_max_similarity``, or when the model judges
    it not novel and the largest similarity reaches ``novelty_judged_similarity``.
    """
    if not related:
        return NoveltyVerdict(checked=False, novel=True, reason="no related works found; novelty not checked")
    nearest = sorted(related, key=lambda r: -r.similarity)[:3]
    top = nearest[0].similarity
    listed = "\n".join(
        f"[{i}] {r.title} ({r.year or 'n.d.'})" + (f": {r.abstract[:300]}" if r.abstract and abstracts else "")
        for i, r in enumerate(nearest, 1)
    )  # open ideas are judged against what the works did (their abstracts), not their titles
    ask = [
        {"role": "system", "content": "You are a careful reviewer who checks whether research ideas are new."},
        {
            "role": "user",
            "content": (
                f"Hypothesis: {hypothesis.title}. {hypothesis.statement}\nNearest prior works:\n{listed}\n"
                "Is the hypothesis novel, i.e. not already tested by one of these works? Name the closest work."
            ),
        },
    ]
    judgement = await llm.structured(ask, NoveltyJudgement, max_tokens=90)
    too_close = top >= cfg.novelty_max_similarity
    judged_out = not judgement.novel and top >= cfg.novelty_judged_similarity
    novel = not (too_close or judged_out)
    if too_close:
        reason = f"similarity {top:.3f} to {nearest[0].id} reaches the bar {cfg.novelty_max_similarity}"
    elif judged_out:
        reason = f"the model judged it not novel and similarity {top:.3f} reaches {cfg.novelty_judged_similarity}"
    else:
        reason = "novel" if judgement.novel else f"the model doubted it, but similarity {top:.3f} is low"
    return NoveltyVerdict(
        checked=True,
        novel=novel,
        max_similarity=top,
        nearest=nearest[0].id,
        model=judgement.model_dump(),
        evidence=[NoveltyEvidence(id=r.id, title=r.title, similarity=r.similarity) for r in nearest],
        reason=reason,
    )


def keep_best(
    ctx: StageContext,
    output: IdeationOutput,
    passed: list[int],
    novel: list[int],
    verdicts: dict[int, NoveltyVerdict],
    threshold: float,
    skip: int = 0,
) -> IdeationOutput:
    """Choose the novel hypothesis screened best (the first of a tie; with ``skip``, the one that many places
    further down, in turn) and save every hypothesis; stop the project when none passed screening, or none of
    those is novel."""
    overall = output.overall
    if novel:
        ranked = sorted(novel, key=lambda i: (-overall[i], i))
        output.chosen = output.hypotheses[ranked[skip % len(ranked)]]
    ctx.save_artifact("hypothesis", "hypotheses.json", output.model_dump_json(indent=1))
    if not passed:
        raise StopProject(
            ProjectStatus.screened_out,
            f"no hypothesis reached the screening threshold {threshold} (scores {overall})",
            output,
        )
    if not novel:
        why = "; ".join(verdicts[i].reason for i in passed)
        raise StopProject(ProjectStatus.screened_out, f"no screened hypothesis is novel ({why})", output)
    return output


def answered_by(backend: LiteratureBackend, project_id: str, stage: str) -> list[str]:
    """Which services answered this project's look-ups in this stage (a fallback chain keeps the record)."""
    answered = getattr(backend, "answered_for", None)
    return list(answered(project_id, stage)) if callable(answered) else []
