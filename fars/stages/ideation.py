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

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field

from experiments.spec import TemplateSpec, load_template, template_folders
from fars.config import FarsConfig, LiteratureConfig
from fars.literature import LiteratureBackend, LiteratureError, SearchHit
from fars.literature.similarity import text_similarity
from fars.llm.client import LLMClient
from fars.paper.degenerate import degenerate_reasons
from fars.paper.prose import clip_words, in_sentence, method_phrase, sentence_case
from fars.run.contracts import (
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
from fars.stages.methods import candidate_methods, rank_templates, study_terms

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
    )


async def find_related(backend: LiteratureBackend, query: str, k: int) -> tuple[list[SearchHit], str | None]:
    """The backend's hits for ``query``, or none and the reason when no backend could answer."""
    try:
        return await backend.search(query, k), None
    except LiteratureError as exc:
        return [], f"literature search failed: {str(exc)[:300]}"


async def check_novelty(
    llm: LLMClient, hypothesis: Hypothesis, related: list[RelatedEntry], cfg: LiteratureConfig
) -> NoveltyVerdict:
    """The novelty verdict of a hypothesis against its nearest works, with its evidence.

    Dropped when the largest similarity reaches ``novelty_max_similarity``, or when the model judges
    it not novel and the largest similarity reaches ``novelty_judged_similarity``.
    """
    if not related:
        return NoveltyVerdict(checked=False, novel=True, reason="no related works found; novelty not checked")
    nearest = sorted(related, key=lambda r: -r.similarity)[:3]
    top = nearest[0].similarity
    listed = "\n".join(f"[{i}] {r.title} ({r.year or 'n.d.'})" for i, r in enumerate(nearest, 1))
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


def answered_by(backend: LiteratureBackend, project_id: str, stage: str) -> list[str]:
    """Which services answered this project's look-ups in this stage (a fallback chain keeps the record)."""
    answered = getattr(backend, "answered_for", None)
    return list(answered(project_id, stage)) if callable(answered) else []


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
        )


def choose_templates(area: str, settings: IdeationSettings) -> tuple[list[TemplateSpec], list[TemplateChoice]]:
    """The templates this run's projects take in turn, and every template considered with its relevance.

    ``[auto]`` ranks every research template by relevance to the area and keeps the best
    ``max_templates``; named templates are used as given (their relevance still recorded).
    """
    dirs = settings.template_dirs
    if list(settings.templates) == ["auto"]:
        specs = [load_template(n, dirs) for n in template_folders(dirs)]
        ranked = rank_templates(area, [s for s in specs if s.research])
        chosen = [next(s for s in specs if s.name == c.name) for c in ranked[: settings.max_templates]]
        return chosen, ranked
    specs = [load_template(n, dirs) for n in settings.templates]
    return specs, rank_templates(area, specs)


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


@register_stage("ideation", produces=IdeationOutput, settings=IdeationSettings.of)
def ideation(settings: IdeationSettings, services: Services) -> StageFn:
    """Factory of the Ideation stage."""
    n = settings.hypotheses
    threshold = settings.screen_threshold
    backend = services.literature
    llm = services.llm
    k = settings.literature.top_k
    chosen_templates: dict[str, tuple[list[TemplateSpec], list[TemplateChoice]]] = {}

    async def propose(
        ctx: StageContext, spec: TemplateSpec, known: str, candidate: MethodCandidate | None, angle: str
    ) -> tuple[Hypothesis, list[str], dict[str, str]]:
        """One hypothesis (the model's, or the harness's when the model's is degenerate) and why it was replaced."""
        method = dict(candidate.components) if candidate else {}
        about = (
            f"the method: {candidate.summary}, instead of the baseline's "
            + ", ".join(f"{s}={spec.component(s).default}" for s in method)
            if candidate
            else angle
        )
        ask = [
            {
                "role": "system",
                "content": "You are a machine learning researcher who proposes small, testable hypotheses.",
            },
            {
                "role": "user",
                "content": (
                    f"Research area: {ctx.area}.\n{known}Experiment: {spec.title}: {spec.description}\n"
                    f"Propose one hypothesis about {about}, and its effect on {spec.metric} "
                    f"({'higher' if spec.higher_is_better else 'lower'} is better). "
                    "Give a specific title, a testable statement and a short rationale."
                ),
            },
        ]
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

    async def run(ctx: StageContext) -> IdeationOutput:
        if ctx.area not in chosen_templates:
            chosen_templates[ctx.area] = choose_templates(ctx.area, settings)
        templates, considered = chosen_templates[ctx.area]
        spec = templates[ctx.index % len(templates)]
        rotation = ctx.index // len(templates)  # the n-th project on a template starts further along its methods
        focus = spec.knobs[rotation % len(spec.knobs)] if spec.knobs else None
        candidates = candidate_methods(spec, settings.method_components, offset=rotation * n, count=n)
        area_query = f"{ctx.area}. {spec.title}. {spec.domain}. {spec.description}"
        area_hits, literature_error = await find_related(backend, area_query, k)
        area_related = [related_entry(h, area_query) for h in area_hits]
        known = (
            "Related work found for this area:\n" + "\n".join(f"- {r.title}" for r in area_related[:3]) + "\n"
            if area_related
            else ""
        )
        hypotheses: list[Hypothesis] = []
        records: list[HypothesisRecord] = []
        degenerate_fields = 0
        for i in range(n):
            candidate = candidates[i % len(candidates)] if candidates else None
            angle = ANGLES[i % len(ANGLES)].format(knob=focus.name) if focus else "the template's settings"
            hypothesis, reasons, method = await propose(ctx, spec, known, candidate, angle)
            degenerate_fields += len({r.split(":", 1)[0] for r in reasons})
            hypotheses.append(hypothesis)
            records.append(
                HypothesisRecord(
                    **hypothesis.model_dump(),
                    method=method,
                    written_by="harness" if reasons and candidate is not None else "model",
                    degenerate=reasons,
                )
            )
        scores: list[ScreeningScore] = []
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
            scores.append(
                ScreeningScore.model_validate((await llm.structured(screen, Score, max_tokens=60)).model_dump())
            )
        overall = [s.overall for s in scores]
        seen: set[str] = set()
        for i, h in enumerate(hypotheses):  # a repeated hypothesis does not pass screening twice
            key = " ".join(h.statement.lower().split())
            if key in seen:
                overall[i] = 0.0
            seen.add(key)
        passed = [i for i, score in enumerate(overall) if score >= threshold]
        verdicts: dict[int, NoveltyVerdict] = {}
        for i in passed:  # novelty: only for hypotheses that survived screening
            text = f"{hypotheses[i].title}. {hypotheses[i].statement}"
            hits, error = await find_related(backend, text, k)
            literature_error = literature_error or error
            records[i].related = [related_entry(h, text) for h in hits]
            verdicts[i] = await check_novelty(llm, hypotheses[i], records[i].related, settings.literature)
            records[i].novelty = verdicts[i]
        novel = [i for i in passed if verdicts[i].novel]
        literature = LiteratureInfo(
            backend=backend.name, error=literature_error, answered_by=answered_by(backend, ctx.project_id, ctx.stage)
        )
        output = IdeationOutput(
            hypotheses=records,
            scores=scores,
            overall=overall,
            screened=len(passed),
            novel=len(novel),
            related=area_related,
            literature=literature,
            template=spec.name,
            focus=focus.name if focus else "",
            candidates=candidates,
            templates_considered=considered,
            fields_checked=3 * n,
            degenerate_fields=degenerate_fields,
        )
        if novel:
            output.chosen = records[max(novel, key=lambda i: (overall[i], -i))]
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

    return run
