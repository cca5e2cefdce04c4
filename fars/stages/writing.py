"""Writing: the paper as Markdown and LaTeX, prose from the model, numbers and citations from records.

The model writes title, abstract, introduction and discussion, and may cite the related works it is
shown by their ``[@key]``. The harness writes the related work, setup, results paragraph, results
table and figure captions from the literature records, the plan and ``results.json``. Then grounding
(``fars.grounding``) checks every number and citation of the paper: model sentences that state an
untraceable number or cite no verified record are dropped (``paper.on_ungrounded=repair``), what is
left unverified is marked in the text and the paper is flagged; the rates before and after go to the
stage output, the RunRecord and W&B. Finally the LaTeX is compiled to PDF when a TeX engine is there.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from experiments.spec import load_template
from fars.config import FarsConfig, PaperConfig
from fars.contracts import (
    ExperimentOutput,
    GroundingCounts,
    GroundingSummary,
    HypothesisRecord,
    IdeationOutput,
    Plan,
    PlanningOutput,
    RelatedEntry,
    Results,
    WritingOutput,
)
from fars.grounding import (
    UNVERIFIED_MARK,
    BibEntry,
    GroundingReport,
    Sources,
    check_text,
    mark_unverified,
    repair_prose,
)
from fars.latex import LatexError, compile_latex, find_tex_engine
from fars.literature import LiteratureBackend, LiteratureError
from fars.literature.similarity import content_words
from fars.paper import Figure, Paper, Section, render_latex, render_markdown, results_table
from fars.stages.base import StageContext, StageFn, register_stage

if TYPE_CHECKING:
    from fars.services import Services

log = logging.getLogger(__name__)
_TEX_CITE_KEYS = re.compile(r"\\cite\{([^}]*)\}")
_BIBITEM = re.compile(r"\\bibitem\{([^}]*)\}")


class Draft(BaseModel):
    """The prose the model contributes."""

    title: str = Field(min_length=5, max_length=120)
    abstract: str = Field(min_length=20, max_length=700)
    introduction: str = Field(min_length=20, max_length=1000)
    discussion: str = Field(min_length=20, max_length=1000)


SIGNIFICANCE_LEVEL = 0.05  # the level the results paragraph calls a difference significant at


def findings(results: Results) -> str:
    """A plain statement of what the results show, written from the numbers."""
    metric = results.metric
    base = results.conditions["baseline"].metric.mean
    lines = [f"The baseline reached a mean {metric} of {base:.4f}."]
    for name, cond in results.conditions.items():
        if name == "baseline":
            continue
        mean, p = cond.metric.mean, cond.p_vs_baseline
        change = "higher than" if mean > base else "lower than" if mean < base else "the same as"
        test = (
            ""
            if p is None
            else f" (Welch t-test p = {p:.3g}, {'' if p < SIGNIFICANCE_LEVEL else 'not '}significant at {SIGNIFICANCE_LEVEL:g})"
        )
        lines.append(f"Setting {name} gave {mean:.4f}, {change} the baseline{test}.")
    lines.append(f"The best condition was {results.best}.")
    return " ".join(lines)


def setup_text(plan: Plan, description: str, metric: str) -> str:
    """The experimental setup, from the plan."""
    values = ", ".join(str(v) for v in plan.variants)
    return (
        f"{description} We vary {plan.knob}: the baseline uses the default {plan.baseline}, "
        f"compared with {values}. Every condition trains for {plan.steps} steps with seeds "
        f"{', '.join(str(s) for s in plan.seeds)}; all other settings stay at their defaults. "
        f"We report the final {metric} on held-out pairs and the validation loss."
    )


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


def figures_from(results: Results, project_dir: Path) -> list[Figure]:
    """The experiment's figures whose files exist in the project folder."""
    figures = []
    for item in results.figures:
        png = item.png if item.png and (project_dir / item.png).is_file() else None
        pdf = item.pdf if item.pdf and (project_dir / item.pdf).is_file() else None
        if png or pdf:
            figures.append(Figure(caption=item.caption, png=png, pdf=pdf))
    return figures


def related_work_text(
    chosen: HypothesisRecord, area: list[RelatedEntry], keys: dict[str, str], source: str, bar: float
) -> str:
    """The related-work paragraph, written by the harness from the retrieved and verified records."""
    hyp = [r for r in chosen.related if r.id in keys]
    around = [r for r in area if r.id in keys and r.id not in {h.id for h in hyp}]
    if not hyp and not around:
        return f"No related work could be retrieved and verified ({source})."
    out = []
    if around:
        out.append(f"Work retrieved for this research area ({source}) includes {_cite_list(around, keys)}.")
    if hyp:
        out.append(f"The works nearest to our hypothesis are {_cite_list(hyp, keys)}.")
        novelty = chosen.novelty
        if novelty is not None and novelty.checked and novelty.nearest in keys and novelty.max_similarity is not None:
            out.append(
                f"The closest, [@{keys[novelty.nearest]}], shares words with our hypothesis at a content-word "
                f"cosine similarity of {novelty.max_similarity:.2f}, below the novelty bar of {bar:g}."
            )
    return " ".join(out)


def _cite_list(records: list[RelatedEntry], keys: dict[str, str]) -> str:
    cites = [f"[@{keys[r.id]}]" for r in records]
    return cites[0] if len(cites) == 1 else ", ".join(cites[:-1]) + " and " + cites[-1]


async def resolve_bibliography(
    backend: LiteratureBackend, related: list[RelatedEntry]
) -> tuple[list[BibEntry], list[str]]:
    """Bibliography entries for the related works the backend confirms exist; the ids it could not."""
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


def latex_citation_problems(tex: str) -> list[str]:
    """Cite keys of the LaTeX that have no ``\\bibitem``."""
    items = set(_BIBITEM.findall(tex))
    cited = {k.strip() for group in _TEX_CITE_KEYS.findall(tex) for k in group.split(",") if k.strip()}
    return sorted(cited - items)


@dataclass(frozen=True)
class WritingSettings:
    """What Writing needs of the run's config."""

    paper: PaperConfig
    novelty_max_similarity: float  # the novelty bar the related-work paragraph quotes

    @classmethod
    def of(cls, cfg: FarsConfig) -> WritingSettings:
        """The settings of a run's config."""
        return cls(cfg.paper, cfg.literature.novelty_max_similarity)


@register_stage(
    "writing",
    produces=WritingOutput,
    consumes=(IdeationOutput, PlanningOutput, ExperimentOutput),
    settings=WritingSettings.of,
)
def writing(settings: WritingSettings, services: Services) -> StageFn:
    """Factory of the Writing stage."""
    paper_cfg = settings.paper
    backend = services.literature
    llm = services.llm
    engine = find_tex_engine(paper_cfg.engine) if paper_cfg.compile != "never" else None

    async def run(ctx: StageContext) -> WritingOutput:
        idea = ctx.input(IdeationOutput)
        hypothesis = idea.require_chosen()
        plan = ctx.input(PlanningOutput).plan
        results = ctx.input(ExperimentOutput).results
        template = load_template(plan.template)
        metric = results.metric
        summary = findings(results)

        related = {r.id: r for r in [*hypothesis.related, *idea.related]}
        bibliography, unresolved = await resolve_bibliography(backend, list(related.values()))
        keys = {e.record_id: e.key for e in bibliography}
        source = idea.literature.backend or backend.name
        sources = Sources(
            results=results.model_dump(mode="json"),
            novelty=hypothesis.novelty.model_dump(mode="json") if hypothesis.novelty else {},
            plan=plan.model_dump(mode="json"),
            template=template.defaults(),
            config={
                "novelty_max_similarity": settings.novelty_max_similarity,
                "significance_level": SIGNIFICANCE_LEVEL,
            },
        )
        citable = "\n".join(f"[@{e.key}] {e.title}" for e in bibliography[:6])
        ask = [
            {"role": "system", "content": "You write clear, honest machine learning papers."},
            {
                "role": "user",
                "content": (
                    f"Hypothesis: {hypothesis.statement}\nExperiment: {setup_text(plan, template.description, metric)}\n"
                    f"Findings: {summary}\n"
                    + (f"Related works you may cite, by their key in brackets:\n{citable}\n" if citable else "")
                    + "Write the title, abstract, introduction and discussion of a short paper. "
                    "Do not write any numbers: the results table is added separately."
                ),
            },
        ]
        draft = await llm.structured(ask, Draft, max_tokens=1000)
        prose = {
            "title": draft.title,
            "abstract": draft.abstract,
            "introduction": draft.introduction,
            "hypothesis": f"{hypothesis.title}. {hypothesis.statement}",
            "discussion": draft.discussion,
        }
        fallback = {
            "title": f"The effect of {plan.knob} on {metric} in the {template.name} task",
            "abstract": f"We test a hypothesis about {plan.knob} in the {template.name} task. {summary}",
            "introduction": f"This paper asks how {plan.knob} affects {metric} in the {template.name} task.",
            "hypothesis": f"Changing {plan.knob} changes the final {metric}.",
            "discussion": "The results above are the evidence this paper offers; they hold for the settings tested.",
        }
        related_text = related_work_text(hypothesis, idea.related, keys, source, settings.novelty_max_similarity)
        figures = figures_from(results, ctx.project_dir)

        def build(texts: dict[str, str]) -> Paper:
            return Paper(
                title=texts["title"],
                abstract=texts["abstract"],
                sections=[
                    Section(heading="Introduction", body=texts["introduction"]),
                    Section(heading="Related Work", body=related_text),
                    Section(heading="Hypothesis", body=texts["hypothesis"]),
                    Section(heading="Experimental Setup", body=setup_text(plan, template.description, metric)),
                    Section(heading="Results", body=summary),
                    Section(heading="Discussion", body=texts["discussion"]),
                ],
                table=results_table(results),
                figures=figures,
                bibliography=bibliography,
                metadata={"project": ctx.project_id, "template": template.name, "knob": plan.knob},
            )

        before = check_text(render_markdown(build(prose)), sources, bibliography)
        repairs: list[str] = []
        if paper_cfg.on_ungrounded == "repair" and not before.ok:
            for name, text in prose.items():
                fixed, dropped = repair_prose(text, sources, bibliography)
                if dropped:
                    repairs += [f"{name}: {d}" for d in dropped]
                    prose[name] = fixed or fallback[name]
        for name, text in prose.items():  # anything still unverified is marked where it stands
            prose[name] = mark_unverified(text, check_text(text, sources, bibliography))
        paper = build(prose)
        markdown = render_markdown(paper)
        after = check_text(markdown, sources, bibliography)
        if not after.ok and _unmarked(markdown, after):
            markdown = mark_unverified(markdown, after)  # harness text as a last resort: never unmarked
            after = check_text(markdown, sources, bibliography)
        latex = render_latex(paper)
        tex_problems = latex_citation_problems(latex)
        grounding = GroundingSummary(
            before=GroundingCounts(**before.summary()),
            after=GroundingCounts(**after.summary()),
            flagged=not after.ok or bool(tex_problems),
            unmarked=_unmarked(markdown, after),
            problems=after.problems(),
            repairs=repairs,
            latex_citation_problems=tex_problems,
            bibliography=len(bibliography),
            unresolved_records=unresolved,
        )
        if grounding.flagged:
            log.warning("%s: paper flagged by grounding: %s", ctx.project_id, "; ".join(after.problems()[:3]))
        md = ctx.save_artifact("paper", "paper.md", markdown)
        tex = ctx.save_artifact("paper", "paper.tex", latex)
        ctx.save_artifact("grounding", "grounding.json", _grounding_file(grounding, after, bibliography))
        output = WritingOutput(
            title=paper.title,
            markdown=md.path,
            latex=tex.path,
            grounded_number_rate=after.grounded_number_rate,
            verified_citation_rate=after.verified_citation_rate,
            grounding=grounding,
        )
        if paper_cfg.compile != "never" and engine is not None:
            extra = [f for fig in figures for f in (fig.pdf, fig.png) if f]
            try:
                pdf = await asyncio.to_thread(
                    compile_latex,
                    ctx.run_dir / tex.path,
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
        ctx.ledger.update_project(ctx.project_id, title=paper.title)
        return output

    return run


def _unmarked(markdown: str, report: GroundingReport) -> int:
    """How many ungrounded numbers and unverified citations carry no visible mark."""
    return sum(1 for end in report.problem_ends() if not markdown.startswith(" " + UNVERIFIED_MARK, end))


def _grounding_file(grounding: GroundingSummary, report: GroundingReport, bibliography: list[BibEntry]) -> str:
    """grounding.json: the summary, every verdict, and the bibliography with the record ids."""
    return json.dumps(
        {
            **grounding.model_dump(mode="json"),
            "numbers": [n.model_dump() for n in report.numbers],
            "citations": [c.model_dump() for c in report.citations],
            "references": [e.model_dump() for e in bibliography],
        },
        indent=1,
        ensure_ascii=False,
    )
