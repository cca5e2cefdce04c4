"""Writing: the paper as Markdown and LaTeX, prose from the model, numbers and claims checked against records.

The model writes title, abstract, introduction and discussion, and may cite the related works it is
shown by their ``[@key]``; in open research it also writes the related work, shown the works' abstracts.
A part whose text is degenerate (``fars.paper.degenerate``: schema or prompt echoed, placeholders, loops,
nothing about the study) is written by the harness from the records instead (``fars.paper.prose``), and
counted. The harness writes the related work otherwise (citing only works close enough to the
hypothesis; the references list only works the paper cites), setup, results paragraph, results table and figure captions from the
literature records, the plan and ``results.json``, each number with the field it came from. Then
grounding (``fars.paper.grounding``) checks every number (the harness's by provenance, the model's against
the fields its sentence is about) and citation, and ``fars.paper.claims`` checks every claim of an effect
against the corrected tests: model sentences that fail are dropped (``paper.on_ungrounded=repair``),
what is left unverified is marked in the text and the paper is flagged; the rates before and after go
to the stage output, the RunRecord and W&B. Finally the LaTeX is compiled to PDF when a TeX engine is there.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from experiments.spec import TemplateSpec, load_template
from fars.config import FarsConfig, PaperConfig
from fars.evaluation import design as stats_design
from fars.literature import LiteratureBackend, LiteratureError
from fars.literature.relevance import relevance
from fars.literature.similarity import content_words
from fars.llm.client import LLMClient
from fars.paper.claims import OTHERS_WORK_PARTS, check_claims, repair_claims
from fars.paper.degenerate import degenerate_reasons
from fars.paper.document import (
    Figure,
    Paper,
    ResultsTable,
    Section,
    render_latex,
    render_markdown,
    results_table,
    split_citations,
)
from fars.paper.grounding import (
    UNVERIFIED_MARK,
    BibEntry,
    GroundingReport,
    Numbers,
    Sources,
    check_text,
    mark_unverified,
    mark_unverified_keeping,
    repair_prose,
    split_sentences,
)
from fars.paper.latex import LatexError, compile_latex, find_tex_engine
from fars.paper.prose import (
    findings,
    harness_abstract,
    harness_discussion,
    harness_introduction,
    harness_title,
    method_condition,
    sentence_case,
    setup_table,
    setup_text,
)
from fars.run.contracts import (
    ClaimCheck,
    ExperimentOutput,
    GroundingCounts,
    GroundingSummary,
    HypothesisRecord,
    IdeaPart,
    IdeationOutput,
    Plan,
    PlanningOutput,
    RelatedEntry,
    Results,
    WritingOutput,
)
from fars.stages.base import StageContext, StageFn, register_stage
from fars.stages.methods import study_terms
from fars.stages.rewrite import rewrite_failing

if TYPE_CHECKING:
    from fars.stages.services import Services

log = logging.getLogger(__name__)
_TEX_CITE_KEYS = re.compile(r"\\cite\{([^}]*)\}")
_BIBITEM = re.compile(r"\\bibitem\{([^}]*)\}")


class Draft(BaseModel):
    """The prose the model contributes."""

    title: str = Field(min_length=5, max_length=120)
    abstract: str = Field(min_length=20, max_length=700)
    introduction: str = Field(min_length=20, max_length=1000)
    discussion: str = Field(min_length=20, max_length=1000)


class OpenDraft(Draft):
    """Open research: a capable model also places the study among the works it is shown (``related_work``)."""

    related_work: str = Field(min_length=20, max_length=1400)


RELATED_ASK = (
    "The related work is one paragraph that places this study among the works listed: say in a clause what each work "
    "you cite studied or found, as its abstract states it, and how this study differs; cite only works that bear on "
    "the hypothesis or its setting, and where none does, say so in one sentence instead of citing. State no numbers "
    "of those works, and cite no work that is not listed. Write it as a paper's section: the reader never sees the "
    "list, so do not mention it ('the listed works', 'the other works shown') or the works you leave out."
)
DRAFT_TEXTS = [f.description or "" for f in OpenDraft.model_fields.values()] + [
    "Write the title, abstract, introduction and discussion of a short paper.",
    "Write the title, abstract, introduction, related work and discussion of a short paper.",
    RELATED_ASK,
    "You write clear, honest machine learning papers.",
]


@dataclass(frozen=True)
class WritingSettings:
    """What Writing needs of the run's config."""

    paper: PaperConfig
    novelty_max_similarity: float  # the novelty bar the related-work paragraph quotes
    template_dirs: tuple[str, ...]

    @classmethod
    def of(cls, cfg: FarsConfig) -> WritingSettings:
        """The settings of a run's config."""
        return cls(cfg.paper, cfg.literature.novelty_max_similarity, tuple(cfg.experiment.template_dirs))


@dataclass(frozen=True)
class Material:
    """What one paper is written from: the study's records, the harness's findings and setup (each number traced
    in ``numbers``), the bibliography the backend confirmed, and the sources every number is checked against."""

    idea: IdeationOutput
    hypothesis: HypothesisRecord
    plan: Plan
    results: Results
    spec: TemplateSpec
    numbers: Numbers
    summary: str
    setup: str
    setup_table: ResultsTable
    bibliography: list[BibEntry]
    unresolved: list[str]
    keys: dict[str, str]  # record id -> cite key
    source: str  # the literature backend the related works came from
    sources: Sources


@dataclass
class Prose:
    """The paper's parts in words (the model's, or the harness's where the model's were degenerate), the
    harness's version of each, and the parts that are the model's own (only those are repaired)."""

    texts: dict[str, str]
    harness: dict[str, str]
    degenerate: dict[str, list[str]]
    model_parts: list[str]
    rewrites: list[str] = field(default_factory=list)  # sentences the model rewrote after a failed check
    drafted: dict[str, str] = field(default_factory=dict)  # ``texts`` before any rewrite: what "before" measures


@dataclass(frozen=True)
class Layout:
    """The paper around its prose: the harness's related work, figures and appendix."""

    material: Material
    related: str
    figures: list[Figure]
    appendix: list[Section]
    project_id: str

    def paper(self, texts: dict[str, str]) -> Paper:
        """The paper with these texts of the prose parts."""
        m = self.material
        sections = [
            Section(heading="Introduction", body=texts["introduction"]),
            Section(heading="Related Work", body=texts.get("related_work", self.related)),
            Section(heading="Hypothesis", body=texts["hypothesis"]),
            Section(heading="Experimental Setup", body=m.setup, table=m.setup_table),
            Section(heading="Results", body=m.summary),
            Section(heading="Discussion", body=texts["discussion"]),
        ]
        # the references list what the paper cites: a model that leaves a listed work uncited (it bears on nothing
        # here) must not leave it in the references as an orphan
        said = " ".join([texts["title"], texts["abstract"], *(s.body for s in [*sections, *self.appendix])])
        keys = set(_CITED_KEY.findall(said))  # one pass over the text, not one search per entry
        cited = [e for e in m.bibliography if e.key in keys]
        return Paper(
            title=texts["title"],
            abstract=texts["abstract"],
            sections=sections,
            table=results_table(m.results, m.numbers),
            figures=self.figures,
            bibliography=cited,
            appendix=self.appendix,
            metadata={"project": self.project_id, "template": m.spec.name, "design": m.plan.design},
        )


_CITED_KEY = re.compile(r"@([A-Za-z0-9_:\-]+)")  # a cite key as CITE_MARK spells it (greedy: "@a-b" is a-b)


@dataclass(frozen=True)
class Grounded:
    """The paper after grounding and repair, as Markdown and LaTeX, with what the checks found."""

    paper: Paper
    markdown: str
    latex: str
    report: GroundingReport
    claims_before: ClaimCheck
    claims: ClaimCheck
    grounding: GroundingSummary


@register_stage(
    "writing",
    produces=WritingOutput,
    consumes=(IdeationOutput, PlanningOutput, ExperimentOutput),
    settings=WritingSettings.of,
)
def writing(settings: WritingSettings, services: Services) -> StageFn:
    """Factory of the Writing stage: gather the sources, draft the prose, lay out the paper, ground and repair it,
    save it and compile it."""
    paper_cfg = settings.paper
    llm, backend = services.llm, services.literature
    engine = find_tex_engine(paper_cfg.engine) if paper_cfg.compile != "never" else None

    async def run(ctx: StageContext) -> WritingOutput:
        material = await gather_sources(ctx, backend, settings)
        prose = await draft_prose(ctx, llm, material)
        if paper_cfg.on_ungrounded == "repair" and material.hypothesis.source == "open":
            prose.drafted = dict(prose.texts)  # a capable model mends its own failing sentences first
            prose.rewrites = await rewrite_failing(llm, prose.texts, prose.model_parts, material)
        layout = lay_out(ctx, material, services.background.pending(ctx.project_id))
        grounded = ground_and_repair(ctx, layout, prose, paper_cfg.on_ungrounded)
        output = save_paper(ctx, material, prose, grounded)
        if paper_cfg.compile != "never" and engine is not None:  # LaTeX needs the figures' files
            for problem in await services.background.settle(ctx.project_id):
                log.warning("%s: %s", ctx.project_id, problem)
        await compile_pdf(ctx, output, layout.figures, paper_cfg, engine)
        ctx.ledger.update_project(ctx.project_id, title=output.title)
        return output

    return run


async def gather_sources(ctx: StageContext, backend: LiteratureBackend, settings: WritingSettings) -> Material:
    """The study's records, the harness's findings and setup, the related works close enough to cite (those the
    backend confirms), and the sources of every number."""
    idea = ctx.input(IdeationOutput)
    hypothesis = idea.require_chosen()
    plan = ctx.input(PlanningOutput).plan
    results = ctx.input(ExperimentOutput).results
    spec = load_template(plan.template, settings.template_dirs)
    numbers = Numbers()
    summary = findings(results, numbers) + achieved_design(plan, results, numbers)
    setup = setup_text(plan, spec, numbers, results)
    table = setup_table(plan, spec, numbers, results)

    bar = settings.paper.related_min_similarity
    close_enough = [r for r in [*hypothesis.related, *idea.related] if r.similarity >= bar]
    related = {r.id: r for r in close_enough}
    topic = f"{hypothesis.title}. {hypothesis.statement} {spec.title} {spec.domain}"
    bibliography, unresolved = await resolve_bibliography(backend, list(related.values()), topic)
    keys = {e.record_id: e.key for e in bibliography}
    source = idea.literature.backend or backend.name
    sources = sources_for(
        results,
        plan.model_dump(mode="json"),
        hypothesis.novelty.model_dump(mode="json") if hypothesis.novelty else {},
        spec.defaults(),
        settings.novelty_max_similarity,
        hypothesis.statement,
        spec.description,
    )
    return Material(
        idea=idea,
        hypothesis=hypothesis,
        plan=plan,
        results=results,
        spec=spec,
        numbers=numbers,
        summary=summary,
        setup=setup,
        setup_table=table,
        bibliography=bibliography,
        unresolved=unresolved,
        keys=keys,
        source=source,
        sources=sources,
    )


async def resolve_bibliography(
    backend: LiteratureBackend, related: list[RelatedEntry], topic: str = ""
) -> tuple[list[BibEntry], list[str]]:
    """Bibliography entries for the related works the backend confirms exist and that share the ``topic``'s own
    words (``fars.literature.relevance``; a search's top hit on a corpus with nothing close is noise); the ids
    it could not confirm."""
    entries: list[BibEntry] = []
    missing: list[str] = []
    taken: set[str] = set()
    for record in related:
        try:
            found = await backend.get(record.id)
        except LiteratureError as exc:
            log.warning("could not verify %s: %s", record.id, str(exc)[:200])
            found = None
        if found is None:
            missing.append(record.id)
            continue
        if topic and not relevance(topic, found.title, found.abstract).relevant:
            log.info("not citing %s: it shares no topic words with the hypothesis", record.id)
            continue
        entries.append(
            BibEntry(
                key=cite_key(record, taken),
                record_id=found.id,
                title=found.title,
                authors=found.authors,
                year=found.year,
                venue=found.venue,
                url=found.url,
                verified=True,
            )
        )
    return entries, missing


def cite_key(record: RelatedEntry, taken: set[str]) -> str:
    """A readable, TeX-safe cite key: first author's surname (or first title word) and year, made unique."""
    authors = record.authors
    stem = re.sub(r"[^a-z]", "", authors[0].split()[-1].lower()) if authors and authors[0].split() else ""
    if not stem:
        words = content_words(record.title)
        stem = re.sub(r"[^a-z]", "", words[0]) if words else "work"
    base = f"{stem[:20] or 'work'}{record.year or ''}"
    key, suffix = base, ord("a")
    while key in taken:
        key = f"{base}{chr(suffix)}"
        suffix += 1
    taken.add(key)
    return key


def achieved_design(plan: Plan, results: Results, numbers: Numbers) -> str:
    """What the primary comparison could detect at the spread the baseline showed, beside what the plan assumed.

    Seeds are sized on a pilot's spread, which over 3 seeds is a rough estimate: the third relay run's digits
    pilot gave sd 0.0016, its baseline's own runs 0.0058, and a reviewer computed for himself that the design was
    underpowered. The paper says it: the power of the seeds run, for the effect the plan was sized for, at the
    spread observed, and the smallest effect they detect with the wanted power."""
    design = plan.seed_design
    base = results.conditions.get("baseline")
    if design is None or design.method != "power" or base is None or base.metric.n < 2:
        return ""
    if not design.effect or not design.sd or not design.alpha or not design.wanted_power or base.metric.std <= 0:
        return ""
    sd, n = base.metric.std, base.metric.n
    spread_path, whose = "results.conditions.baseline.metric.std", "the baseline's own runs gave"
    primary = next((name for name, r in results.conditions.items() if r.family == "primary"), None)
    other = results.conditions.get(primary) if primary else None
    if other is not None and other.metric.n >= 2:
        # the test's spread is both arms': a relay reviewer named the power "computed from the baseline's sd only"
        # where the method's runs spread 1.5 times as wide
        sd, n = math.sqrt((base.metric.std**2 + other.metric.std**2) / 2), min(n, other.metric.n)
        spread_path, whose = "results#primary_pooled_sd", f"the runs of the baseline and {primary} gave a pooled sd of"
    # a floor is not the pilot's spread: two answerers of the fifth relay run read "the pilot's sd of 0.00278" as
    # a contradiction of the pilot's own 0.0016
    floored = plan.pilot is not None and plan.pilot.sd_floored
    sized_on = (
        "a seed-to-seed sd floored at the metric's resolution "
        f"({numbers.numbers_in(stats_design.floor_cause(plan.pilot.values), 'plan.pilot.values#sd')})"
        if floored and plan.pilot is not None
        else ("the pilot's seed-to-seed sd")
    )
    power = stats_design.power_of(design.effect, sd, n, design.alpha, design.sides)
    detectable = stats_design.detectable_effect(sd, n, design.alpha, design.wanted_power, design.sides)
    seen = numbers.num(sd, spread_path, "{:.3g}")
    assumed = numbers.num(design.sd, "plan.seed_design.sd", "{:.3g}")
    effect = numbers.num(design.effect, "plan.seed_design.effect", "{:.3g}")
    got = numbers.num(100 * power, "plan.seed_design#achieved_power", "{:.0f}%")
    wanted = numbers.num(100 * design.wanted_power, "plan.seed_design.wanted_power", "{:.0f}%")
    equivalence = design.sides == "equivalence"
    least = "margin they show equivalence within" if equivalence else "effect they detect"
    can = (
        f"the smallest {least} with {wanted} power is {numbers.num(detectable, 'plan.seed_design#achieved_detectable', '{:.3g}')}"
        if math.isfinite(detectable)
        else f"no {'margin' if equivalence else 'effect'} reaches {wanted} power with them"
    )
    aim = (
        f"to show equivalence within its margin ({effect}) were the true difference zero"
        if equivalence
        else f"for the effect it was sized for ({effect})"
    )
    short = power < design.wanted_power and sd / design.sd > 1.25
    # the results this weakens are those without a significant difference (a reviewer of a paper whose primary
    # was significant read "its negative results" as boilerplate)
    nulls = any(r.verdict in ("no significant difference", "inconclusive") for r in results.conditions.values())
    judged = (
        ""
        if not short
        else "; so the study had less power than planned, and its results without a significant difference are "
        "weaker evidence than its design promised"
        if nulls
        else "; so the study had less power than planned"
    )
    return (
        f" The seeds were sized on {sized_on} of {assumed}; {whose} {seen}, at "
        f"which the primary comparison had {got} power {aim}, and {can}{judged}."
        # both reviewers of a relay run asked how power could rise with a larger sd: the plan's figure is averaged
        # over the pilot sd's uncertainty (which allows larger spreads), this one is the power at the sd seen
        + (
            f" (The planned {numbers.num(100 * design.power, 'plan.seed_design.power', '{:.0f}%')} is averaged over "
            "the uncertainty of the pilot's sd estimate, which allows spreads larger than the one seen; this figure is the "
            "power at the spread the baseline showed.)"
            if design.power is not None and design.power < power
            else ""
        )
    )


def sources_for(
    results: Results,
    plan_dump: dict[str, Any],
    novelty: dict[str, Any],
    defaults: dict[str, Any],
    bar: float,
    prediction: str = "",
    task: str = "",
) -> Sources:
    """What the paper's numbers may be traced to, with the words that name each condition; ``prediction`` is the
    hypothesis's statement, whose own numbers a sentence restating the hypothesis may quote; ``task`` the
    template's description, whose numbers (1,437 training images, 360 held out) a sentence on the data may
    restate: the third relay run lost two introduction sentences for "a fixed 360-image held-out split"."""
    aliases = {name: list(c.components.values()) for name, c in results.conditions.items()}
    return Sources(
        aliases=aliases,
        metric=results.metric,
        results=results.model_dump(mode="json"),
        novelty=novelty,
        plan=plan_dump,
        template=defaults,
        config={"novelty_max_similarity": bar, "significance_level": results.alpha},
        hypothesis={"prediction": prediction},
        task={"description": task},
    )


async def draft_prose(ctx: StageContext, llm: LLMClient, m: Material) -> Prose:
    """The model's title, abstract, introduction and discussion, each checked: a degenerate part is the
    harness's instead."""
    ask = draft_prompt(m)
    # open research: the model writes the related work too, from the works' abstracts; the harness's paragraph
    # stands in where the model's is degenerate and is the source of sentences for a failing one
    places = m.hypothesis.source == "open" and bool(m.bibliography)
    draft = await llm.structured(ask, OpenDraft if places else Draft, max_tokens=1400 if places else 1000)
    spec, plan, results, hypothesis, numbers = m.spec, m.plan, m.results, m.hypothesis, m.numbers
    harness = {
        "title": harness_title(spec, plan, results),
        "abstract": harness_abstract(spec, plan, results, hypothesis, numbers),
        "introduction": harness_introduction(spec, plan, hypothesis, numbers),
        "discussion": harness_discussion(spec, plan, results, numbers),
    }
    if places:
        harness["related_work"] = related_work_text(hypothesis, m.idea.related, m.keys, m.source)
    expected = [*study_terms(spec, method_condition(plan).components), *results.conditions]
    texts: dict[str, str] = {}
    degenerate: dict[str, list[str]] = {}
    for part in harness:
        reasons = degenerate_reasons(
            getattr(draft, part),
            echoes=DRAFT_TEXTS,
            prompt=ask[1]["content"],
            field_names=OpenDraft.model_fields,
            expected=expected,
        )
        if reasons:
            degenerate[part] = reasons
        texts[part] = harness[part] if reasons else split_citations(getattr(draft, part))
    if degenerate:
        log.info("%s: the harness wrote %s (the model's text was degenerate)", ctx.project_id, sorted(degenerate))
    same = hypothesis.title.strip(" .").lower() == hypothesis.statement.strip(" .").lower()
    stated = hypothesis.statement if same else f"{hypothesis.title}. {hypothesis.statement}"
    # the hypothesis is quoted as the record the study tests: its numbers are its own prediction, traced to it
    texts["hypothesis"] = numbers.numbers_in(stated, "ideation.chosen.statement") + pilot_note(stated, m)
    model_parts = [p for p in harness if p not in degenerate]
    return Prose(texts=texts, harness=harness, degenerate=degenerate, model_parts=model_parts)


def pilot_note(statement: str, m: Material) -> str:
    """Where the hypothesis quotes the baseline's pilot mean, a sentence saying so beside what the baseline's own
    runs reached: both reviewers of a relay run read the quoted 0.9769 against the results' 0.9733 as a stale
    number (the hypothesis was written from the pilot, and the quote is the registered record)."""
    pilot, base = m.plan.pilot, m.results.conditions.get("baseline")
    if pilot is None or pilot.mean is None or base is None:
        return ""
    shown = {f"{pilot.mean:.4f}", f"{pilot.mean:.3f}", f"{100 * pilot.mean:.2f}%", f"{100 * pilot.mean:.1f}%"}
    if not any(re.search(rf"(?<![\d.]){re.escape(s)}(?![\d])", statement) for s in shown):
        return ""
    n = m.numbers
    return (
        f" (The baseline's {n.num(pilot.mean, 'plan.pilot.mean')} quoted here is its pilot over "
        f"{n.num(len(pilot.values), 'plan.pilot.values#count', '{:d}')} seeds, run before the plan; its "
        f"{n.num(base.metric.n, 'results.conditions.baseline.metric.n', '{:d}')} runs in the study reached "
        f"{n.num(base.metric.mean, 'results.conditions.baseline.metric.mean')}.)"
    )


def draft_prompt(m: Material) -> list[dict[str, str]]:
    """The request for the prose: the hypothesis, setup and findings, and the works the model may cite."""
    open_mode = m.hypothesis.source == "open"
    abstracts = {r.id: r.abstract for r in [*m.hypothesis.related, *m.idea.related] if r.abstract.strip()}

    def listed(e: BibEntry) -> str:
        said = " ".join(abstracts.get(e.record_id, "").split())
        if not open_mode:
            return f"[@{e.key}] {e.title}"
        return f"[@{e.key}] {e.title}" + (f" ({e.year})" if e.year else "") + (f": {said}" if said else "")

    citable = "\n".join(listed(e) for e in m.bibliography[: 10 if open_mode else 6])
    own = ""  # open research: the model's mechanism and its analysis of the results, which the discussion follows
    if open_mode:
        own = f"Mechanism: {m.hypothesis.mechanism}\n"
        if m.results.analysis is not None:
            a = m.results.analysis
            own += f"Your analysis of the results ({a.verdict}): {a.finding} {a.analysis}\n"
    parts = (
        "title, abstract, introduction, related work and discussion"
        if open_mode and citable
        else ("title, abstract, introduction and discussion")
    )
    if open_mode:
        own += condition_glossary(m.plan, m.results) + figure_list(m.results)
    return [
        {"role": "system", "content": "You write clear, honest machine learning papers."},
        {
            "role": "user",
            "content": (
                f"Hypothesis: {m.hypothesis.statement}\n{own}Experiment: {m.numbers.plain(m.setup)}\n"
                f"Findings: {m.numbers.plain(m.summary)}\n"
                + (f"Related works you may cite, by their key in brackets:\n{citable}\n" if citable else "")
                + f"Write the {parts} of a short paper. Claim only what the "
                "findings' corrected tests show. Do not write result numbers (the results table is added separately); "
                "settings may be named as the experiment states them."
                + (f" {RELATED_ASK}" if open_mode and citable else "")
            ),
        },
    ]


def condition_glossary(plan: Plan, results: Results) -> str:
    """What each condition is, by the label the findings use, with its other final values: a relay run's
    abstract named "followup-label-smoothing-0p3" and "the method condition" (labels, not what they are), and
    its reviewers asked for the training loss and accuracy the records held but the model was never shown."""
    described = {c.name: c.description for c in plan.conditions if c.description}
    lines = []
    for name, row in results.conditions.items():
        settings = [f"{slot} {option}" for slot, option in row.components.items()]
        settings += [f"{knob} = {value}" for knob, value in row.knobs.items()]
        what = described.get(name) or (
            "the baseline with " + ", ".join(settings) if settings else "the baseline's settings"
        )
        final = ", ".join(f"{key} {stat.mean:.3g}" for key, stat in row.secondary.items())
        lines.append(f"- {name}: {what}" + (f" (final means: {final})" if final else ""))
    return (
        "Conditions, by the labels the findings use: in the paper call each by what it is (e.g. 'the MLP with "
        "random shifts', 'smoothing at 0.3'), never by its label:\n" + "\n".join(lines) + "\n"
    )


def figure_list(results: Results) -> str:
    """The figures the reader sees, so the discussion can say what they show (relay reviewers asked about
    training curves that the figures held and the text never discussed)."""
    if not results.figures:
        return ""
    shown = "\n".join(f"Figure {i}: {f.caption}" for i, f in enumerate(results.figures, 1))
    return f"Figures the paper shows (refer to them where they bear on the findings):\n{shown}\n"


def lay_out(ctx: StageContext, m: Material, drawing: frozenset[str] = frozenset()) -> Layout:
    """The harness's related work, the figures (``drawing``: files still being drawn) and the appendix."""
    related = related_work_text(m.hypothesis, m.idea.related, m.keys, m.source)
    figures = figures_from(m.results, ctx.project_dir, m.numbers, drawing)
    appendix = code_appendix(m.results, ctx.run_dir, m.numbers, m.hypothesis.parts)
    return Layout(material=m, related=related, figures=figures, appendix=appendix, project_id=ctx.project_id)


# where the search looked, as a reader is told it (not the backend's name in the config)
_SEARCHED = {
    "offline": "a corpus of ICLR, ICML and NeurIPS papers",
    "openalex": "OpenAlex",
    "semantic_scholar": "Semantic Scholar",
    "arxiv": "arXiv",
}


def related_work_text(chosen: HypothesisRecord, area: list[RelatedEntry], keys: dict[str, str], source: str) -> str:
    """The related-work paragraph, written by the harness from the retrieved, verified and relevant records (the
    harness's own measures, such as similarity scores, stay in ideation.json and grounding.json)."""
    where = _SEARCHED.get(source, source)
    closest = named_closest(chosen)
    # a record without a title is not cited: "[5]" alone tells a reader nothing (a relay run's reviewer asked)
    hyp = [r for r in chosen.related if r.id in keys and r.id == closest and r.title.strip()]
    around = [r for r in [*chosen.related, *area] if r.id in keys and r.id != closest and r.title.strip()]
    around = list({r.id: r for r in around}.values())
    if not hyp and not around:
        return (
            f"A literature search of {where} found no work on this study's topic close enough to cite, so we do not "
            "place the result against earlier findings; a wider search may find related work."
        )
    out = []
    if hyp:
        out.append(f"The earlier work closest to our hypothesis is {_cite_list(hyp, keys)}.")
        if chosen.novelty is not None and chosen.novelty.checked and chosen.novelty.novel:
            # said as a paper says it: "none of the retrieved works states..." read as bookkeeping to every
            # reviewer of a relay run, as did "found in a corpus of ..."
            out.append("We know of no earlier work that tests this hypothesis itself.")
    if around:
        lead = "Other work on this topic" if hyp else "Work on this topic"
        out.append(f"{lead} includes {_cite_list(around, keys)}.")
    return " ".join(out)


def named_closest(chosen: HypothesisRecord) -> str | None:
    """The id of the work the model named closest to the hypothesis when it judged novelty (None: it named
    none, or no judgement): only that work is called the closest. The second relay run's char-GPT paper called
    a neural-architecture-search paper 'the earlier work closest to our hypothesis', a label the harness gave
    by word overlap while the model had named another work, and reviewers read it as off-topic."""
    novelty = chosen.novelty
    judged = (novelty.model or {}) if novelty is not None else {}
    index = judged.get("closest")
    if novelty is None or not isinstance(index, int) or not 1 <= index <= len(novelty.evidence):
        return None
    return novelty.evidence[index - 1].id


def _cite_list(records: list[RelatedEntry], keys: dict[str, str]) -> str:
    """The citations with their titles, so the sentence says what each work is (the number check reads a title's
    digits as the title's, not as claims of this paper: ``fars.paper.grounding``)."""
    cites = [f"*{r.title.strip()}* [@{keys[r.id]}]" if r.title.strip() else f"[@{keys[r.id]}]" for r in records]
    return cites[0] if len(cites) == 1 else ", ".join(cites[:-1]) + " and " + cites[-1]


def figures_from(
    results: Results, project_dir: Path, numbers: Numbers | None = None, pending: frozenset[str] = frozenset()
) -> list[Figure]:
    """The experiment's figures whose files exist in the project folder, or are being drawn (``pending``: the
    project's background work, ``fars.stages.background``); caption numbers traced to the caption."""

    def there(path: str | None) -> str | None:
        return path if path and (path in pending or (project_dir / path).is_file()) else None

    figures = []
    for i, item in enumerate(results.figures):
        png, pdf = there(item.png), there(item.pdf)
        caption = numbers.numbers_in(item.caption, f"results.figures[{i}].caption") if numbers else item.caption
        if png or pdf:
            figures.append(Figure(caption=caption, png=png, pdf=pdf))
    return figures


MAX_DIFF_LINES = 300  # of the winning code's diff shown in the appendix


def code_appendix(
    results: Results, run_dir: Path, numbers: Numbers, parts: list[IdeaPart] | None = None
) -> list[Section]:
    """The appendix on the search over programs: what it tried and, when one won, the winning diff with what each
    of the idea's named code ``parts`` does and the ablation that switches it off."""
    code = results.code
    if code is None or not code.nodes:
        return []
    if all(not n.edits for n in code.nodes):
        # the model wrote no code (it judged the settings implement the idea, or its replies held no edit): the
        # paper's conditions are template settings, which the setup states; what was asked stays in results.json
        return []
    buggy = sum(1 for n in code.nodes if n.verdict == "buggy")
    count = numbers.num(len(code.nodes), "results.code.nodes#count", "{:d}")
    versions = "version" if len(code.nodes) == 1 else "versions"
    tried = (
        f"The search over programs tried {count} {versions} of the template's code, of which "
        f"{numbers.num(buggy, 'results.code.nodes#buggy', '{:d}')} failed to run or was refused."
    )
    if code.winner is None or code.diff is None:
        return [Section(heading="The search over programs", body=f"{tried} {sentence_case(code.reason.rstrip('.'))}.")]
    path = run_dir / code.diff
    text = path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""
    lines = text.splitlines()
    shown = "\n".join(lines[:MAX_DIFF_LINES]) + (
        f"\n... ({len(lines) - MAX_DIFF_LINES} more lines)" if len(lines) > MAX_DIFF_LINES else ""
    )
    fresh = (
        " on fresh seeds, not those it was chosen by (so its test is not the best of several tries)"
        if code.fresh_seeds
        else ""
    )
    ablations = [p.split(":")[0] for p in code.parts]
    body = f"{tried} The winning version runs as condition code{fresh}; its changes against the template are below" + (
        f", and each is removed in turn by the ablations {', '.join(ablations)}." if code.parts else "."
    )
    # what each named part does, beside the switch that removes it (a relay reviewer asked what the conditions
    # named after parts were)
    said = [
        f"{p.name} ({numbers.numbers_in(p.what.rstrip('. '), f'ideation.chosen.parts[{i}].what')}; switched off in "
        f"{f'code-without-{p.name}'})"
        for i, p in enumerate(parts or [])
        if p.code and p.what.strip() and f"code-without-{p.name}" in ablations
    ]
    if said:
        body += " The idea's named parts in this code: " + "; ".join(said) + "."
    return [Section(heading="The winning code", body=body, code=shown)]


def ground_and_repair(ctx: StageContext, layout: Layout, prose: Prose, on_ungrounded: str) -> Grounded:
    """The paper checked: the model's parts repaired, whatever is still unverified marked in the text, every claim
    checked against the corrected tests."""
    m = layout.material
    drafted = prose.drafted or prose.texts
    first_md, first_spans = render_markdown(layout.paper(drafted), m.numbers)
    before = check_text(first_md, m.sources, m.bibliography, first_spans)
    claims_before = _claims_of(prose.model_parts, drafted, m.results)
    repairs = [*prose.rewrites, *repair_model_parts(prose, m, on_ungrounded)]
    paper = layout.paper(prose.texts)
    markdown, spans = render_markdown(paper, m.numbers)
    after = check_text(markdown, m.sources, m.bibliography, spans)
    if not after.ok and _unmarked(markdown, after):  # harness text as a last resort: never unmarked
        markdown, spans = mark_unverified_keeping(markdown, after, spans)
        after = check_text(markdown, m.sources, m.bibliography, spans)
    claims = check_claims(_prose_only(markdown), m.results)
    latex = render_latex(paper, m.numbers)
    tex_problems = latex_citation_problems(latex)
    grounding = GroundingSummary(
        before=GroundingCounts(**before.summary()),
        after=GroundingCounts(**after.summary()),
        flagged=not after.ok or bool(tex_problems) or bool(claims.problems),
        unmarked=_unmarked(markdown, after),
        problems=[*after.problems(), *claims.problems],
        repairs=repairs,
        latex_citation_problems=tex_problems,
        bibliography=len(m.bibliography),
        unresolved_records=m.unresolved,
    )
    if grounding.flagged:
        log.warning("%s: paper flagged by grounding: %s", ctx.project_id, "; ".join(grounding.problems[:3]))
    return Grounded(
        paper=paper,
        markdown=markdown,
        latex=latex,
        report=after,
        claims_before=claims_before,
        claims=claims,
        grounding=grounding,
    )


def _claims_of(parts: list[str], prose: dict[str, str], results: Results) -> ClaimCheck:
    """The claims of the model's own parts, as written."""
    return check_claims(" ".join(prose[p].rstrip(".") + "." for p in parts if p not in OTHERS_WORK_PARTS), results)


def repair_model_parts(prose: Prose, m: Material, on_ungrounded: str) -> list[str]:
    """What was repaired in the model's parts (``prose.texts`` updated): each failing sentence replaced in place
    by the harness's sentence on the same point, or with ``flag`` its claims marked; what is still unverified
    marked."""
    repairs: list[str] = []
    for name in prose.model_parts:  # only the model's own words are repaired; the harness's are checked
        text = prose.texts[name]
        if on_ungrounded == "repair" and name in OTHERS_WORK_PARTS:
            # about other work: a failing sentence (a number, an unverified citation) is dropped, not replaced by
            # the harness's list of works, which named the very works the model had set aside
            text, changed = repair_in_place(text, [], m, claims=False)
            text = text or prose.harness.get(name, "")
            repairs += [f"{name}: {d}" for d in changed]
        elif on_ungrounded == "repair" and name != "title":
            text, changed = repair_in_place(text, split_sentences(prose.harness.get(name, "")), m)
            repairs += [f"{name}: {d}" for d in changed]
        elif on_ungrounded == "repair":
            fixed, dropped = repair_prose(text, m.sources, m.bibliography)
            fixed, changed = repair_claims(fixed or "", m.results)
            if dropped or changed:
                repairs += [f"{name}: {d}" for d in [*dropped, *changed]]
                # a title with a claim cut out is a fragment ("An Inconclusive Test", on the relay run): the
                # harness's title states the study and its result instead
                text = prose.harness.get(name, text) if changed or not fixed else fixed
            text = mark_unverified(text, check_text(text, m.sources, m.bibliography))
        else:
            text, changed = repair_claims(text, m.results, mark=True)
            repairs += [f"{name}: {d}" for d in changed]
            text = mark_unverified(text, check_text(text, m.sources, m.bibliography))
        prose.texts[name] = text
    return repairs


def repair_in_place(text: str, harness: list[str], m: Material, claims: bool = True) -> tuple[str, list[str]]:
    """Model prose with each sentence that states an untraceable number, cites no verified record or claims what
    the tests do not show replaced where it stood by a sentence of the harness's own version of the part (the
    opening for an opening, else the one sharing most words): no section is left starting mid-thought."""
    kept: list[str] = []
    changes: list[str] = []
    unused = list(harness)
    for i, sentence in enumerate(split_sentences(text)):
        report = check_text(sentence, m.sources, m.bibliography)
        _, wrong = repair_claims(sentence, m.results) if claims else ("", [])
        if report.ok and not wrong:
            kept.append(sentence)
            continue
        why = "; ".join([*report.problems(), *wrong]) or "unsupported"
        stand_in = _stand_in(sentence, unused, first=i == 0 and bool(harness) and unused[:1] == harness[:1])
        if stand_in is None:
            changes.append(f"dropped “{sentence[:160]}”: {why}")
            continue
        unused.remove(stand_in)
        kept.append(stand_in)
        changes.append(f"replaced “{sentence[:160]}” by the records' sentence: {why}")
    return " ".join(kept) or " ".join(harness), changes


def _stand_in(sentence: str, candidates: list[str], first: bool) -> str | None:
    """The harness sentence to put in the place of ``sentence``: the first one for an opening, else the one
    sharing most content words, where it shares enough to say the same thing (None: the sentence is dropped)."""
    if not candidates:
        return None
    if first:
        return candidates[0]
    words = set(content_words(sentence))
    best = max(candidates, key=lambda c: (len(words & set(content_words(c))), -candidates.index(c)))
    # a stand-in says what the dropped sentence said, or nothing stands in: a relay abstract's ablation sentence
    # was replaced by the harness's statement of the hypothesis, predicted numbers and all, sharing two words
    shared = len(words & set(content_words(best)))
    return best if shared >= max(3, 0.3 * len(words)) else None


def _unmarked(markdown: str, report: GroundingReport) -> int:
    """How many ungrounded numbers and unverified citations carry no visible mark."""
    return sum(1 for end in report.problem_ends() if not markdown.startswith(" " + UNVERIFIED_MARK, end))


def _prose_only(markdown: str) -> str:
    """The paper's sentences: headings, the table, figure lines, the references, the Hypothesis section (it
    states what is tested, not what was found) and Related Work (about other work) left out."""
    body = markdown.split("\n## References", 1)[0]
    body = re.sub(r"\n## (?:Hypothesis|Related Work)\n.*?(?=\n## |\Z)", "\n", body, flags=re.S)
    keep = [line for line in body.splitlines() if line.strip() and not line.lstrip().startswith(("#", "|", "![", "*"))]
    return "\n".join(keep)


def latex_citation_problems(tex: str) -> list[str]:
    """Cite keys of the LaTeX that have no ``\\bibitem``."""
    items = set(_BIBITEM.findall(tex))
    cited = {k.strip() for group in _TEX_CITE_KEYS.findall(tex) for k in group.split(",") if k.strip()}
    return sorted(cited - items)


def save_paper(ctx: StageContext, m: Material, prose: Prose, g: Grounded) -> WritingOutput:
    """paper.md, paper.tex and grounding.json saved; the stage's output with the rates the run records."""
    md = ctx.save_artifact("paper", "paper.md", g.markdown)
    tex = ctx.save_artifact("paper", "paper.tex", g.latex)
    ctx.save_artifact("grounding", "grounding.json", _grounding_file(g.grounding, g.report, m.bibliography, g.claims))
    return WritingOutput(
        title=m.numbers.plain(g.paper.title),
        markdown=md.path,
        latex=tex.path,
        grounded_number_rate=g.report.grounded_number_rate,
        verified_citation_rate=g.report.verified_citation_rate,
        claim_grounding_rate=g.claims.rate,
        grounding=g.grounding,
        claims_before=g.claims_before,
        claims=g.claims,
        degenerate=prose.degenerate,
        fields_checked=len(prose.harness),
        degenerate_fields=len(prose.degenerate),
    )


def _grounding_file(
    grounding: GroundingSummary, report: GroundingReport, bibliography: list[BibEntry], claims: ClaimCheck
) -> str:
    """grounding.json: the summary, every number and citation verdict, the claims, the bibliography."""
    return json.dumps(
        {
            **grounding.model_dump(mode="json"),
            "claims": claims.model_dump(mode="json"),
            "numbers": [n.model_dump() for n in report.numbers],
            "citations": [c.model_dump() for c in report.citations],
            "references": [e.model_dump() for e in bibliography],
        },
        indent=1,
        ensure_ascii=False,
    )


async def compile_pdf(
    ctx: StageContext, output: WritingOutput, figures: list[Figure], paper_cfg: PaperConfig, engine: str | None
) -> None:
    """The LaTeX compiled to PDF where a TeX engine is there (``output`` updated); a failure is recorded, or
    with ``paper.compile=always`` raised."""
    if paper_cfg.compile != "never" and engine is not None:
        extra = [f for fig in figures for f in (fig.pdf, fig.png) if f]
        try:
            pdf = await asyncio.to_thread(
                compile_latex,
                ctx.run_dir / output.latex,
                engine=engine,
                timeout_s=paper_cfg.compile_timeout_s,
                extra_files=extra,
            )
        except LatexError as exc:
            if paper_cfg.compile == "always":
                raise
            output.pdf_error = str(exc)
            log.warning("%s: %s", ctx.project_id, exc)
        else:
            output.pdf = ctx.record_artifact("paper", pdf.path).path
            output.pdf_pages = pdf.pages
    elif paper_cfg.compile == "always":
        raise LatexError(f"paper.compile=always but no TeX engine is installed; {ctx.project_id} has no PDF")
