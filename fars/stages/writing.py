"""Writing: the paper as Markdown and LaTeX, prose from the model, numbers and claims checked against records.

The model writes title, abstract, introduction and discussion, and may cite the related works it is
shown by their ``[@key]``. A part whose text is degenerate (``fars.paper.degenerate``: schema or prompt
echoed, placeholders, loops, nothing about the study) is written by the harness from the records
instead (``fars.paper.prose``), and counted. The harness writes the related work (citing only works
close enough to the hypothesis), setup, results paragraph, results table and figure captions from the
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
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from experiments.spec import load_template
from fars.config import FarsConfig, PaperConfig
from fars.literature import LiteratureBackend, LiteratureError
from fars.literature.similarity import content_words
from fars.paper.claims import check_claims, repair_claims
from fars.paper.degenerate import degenerate_reasons
from fars.paper.document import Figure, Paper, Section, render_latex, render_markdown, results_table
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
)
from fars.paper.latex import LatexError, compile_latex, find_tex_engine
from fars.paper.prose import (
    findings,
    harness_abstract,
    harness_discussion,
    harness_introduction,
    harness_title,
    setup_text,
)
from fars.run.contracts import (
    ClaimCheck,
    ExperimentOutput,
    GroundingCounts,
    GroundingSummary,
    HypothesisRecord,
    IdeationOutput,
    PlanningOutput,
    RelatedEntry,
    Results,
    WritingOutput,
)
from fars.stages.base import StageContext, StageFn, register_stage
from fars.stages.methods import study_terms

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


DRAFT_TEXTS = [f.description or "" for f in Draft.model_fields.values()] + [
    "Write the title, abstract, introduction and discussion of a short paper.",
    "You write clear, honest machine learning papers.",
]


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


def figures_from(results: Results, project_dir: Path, numbers: Numbers | None = None) -> list[Figure]:
    """The experiment's figures whose files exist in the project folder (caption numbers traced to the caption)."""
    figures = []
    for i, item in enumerate(results.figures):
        png = item.png if item.png and (project_dir / item.png).is_file() else None
        pdf = item.pdf if item.pdf and (project_dir / item.pdf).is_file() else None
        caption = numbers.numbers_in(item.caption, f"results.figures[{i}].caption") if numbers else item.caption
        if png or pdf:
            figures.append(Figure(caption=caption, png=png, pdf=pdf))
    return figures


def related_work_text(
    chosen: HypothesisRecord,
    area: list[RelatedEntry],
    keys: dict[str, str],
    source: str,
    bar: float,
    numbers: Numbers | None = None,
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
            similarity = (
                numbers.num(novelty.max_similarity, "novelty.max_similarity", "{:.2f}")
                if numbers
                else f"{novelty.max_similarity:.2f}"
            )
            limit = numbers.num(bar, "config.novelty_max_similarity", "{:g}") if numbers else f"{bar:g}"
            out.append(
                f"The closest, [@{keys[novelty.nearest]}], shares words with our hypothesis at a content-word "
                f"cosine similarity of {similarity}, below the novelty bar of {limit}."
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
    template_dirs: tuple[str, ...]

    @classmethod
    def of(cls, cfg: FarsConfig) -> WritingSettings:
        """The settings of a run's config."""
        return cls(cfg.paper, cfg.literature.novelty_max_similarity, tuple(cfg.experiment.template_dirs))


def sources_for(
    results: Results, plan_dump: dict[str, Any], novelty: dict[str, Any], defaults: dict[str, Any], bar: float
) -> Sources:
    """What the paper's numbers may be traced to, with the words that name each condition."""
    aliases = {name: list(c.components.values()) for name, c in results.conditions.items()}
    return Sources(
        aliases=aliases,
        metric=results.metric,
        results=results.model_dump(mode="json"),
        novelty=novelty,
        plan=plan_dump,
        template=defaults,
        config={"novelty_max_similarity": bar, "significance_level": results.alpha},
    )


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
        spec = load_template(plan.template, settings.template_dirs)
        numbers = Numbers()
        summary = findings(results, numbers)
        setup = setup_text(plan, spec, numbers)

        close_enough = [
            r for r in [*hypothesis.related, *idea.related] if r.similarity >= paper_cfg.related_min_similarity
        ]
        related = {r.id: r for r in close_enough}
        bibliography, unresolved = await resolve_bibliography(backend, list(related.values()))
        keys = {e.record_id: e.key for e in bibliography}
        source = idea.literature.backend or backend.name
        sources = sources_for(
            results,
            plan.model_dump(mode="json"),
            hypothesis.novelty.model_dump(mode="json") if hypothesis.novelty else {},
            spec.defaults(),
            settings.novelty_max_similarity,
        )
        citable = "\n".join(f"[@{e.key}] {e.title}" for e in bibliography[:6])
        ask = [
            {"role": "system", "content": "You write clear, honest machine learning papers."},
            {
                "role": "user",
                "content": (
                    f"Hypothesis: {hypothesis.statement}\nExperiment: {numbers.plain(setup)}\n"
                    f"Findings: {numbers.plain(summary)}\n"
                    + (f"Related works you may cite, by their key in brackets:\n{citable}\n" if citable else "")
                    + "Write the title, abstract, introduction and discussion of a short paper. Claim only what the "
                    "findings' corrected tests show. Do not write any numbers: the results table is added separately."
                ),
            },
        ]
        draft = await llm.structured(ask, Draft, max_tokens=1000)
        harness = {
            "title": harness_title(spec, plan, results),
            "abstract": harness_abstract(spec, plan, results, hypothesis, numbers),
            "introduction": harness_introduction(spec, plan, hypothesis, numbers),
            "discussion": harness_discussion(spec, plan, results, numbers),
        }
        expected = [*study_terms(spec, plan.conditions[1].components), *results.conditions]
        prose: dict[str, str] = {}
        degenerate: dict[str, list[str]] = {}
        for part in harness:
            reasons = degenerate_reasons(
                getattr(draft, part),
                echoes=DRAFT_TEXTS,
                prompt=ask[1]["content"],
                field_names=Draft.model_fields,
                expected=expected,
            )
            if reasons:
                degenerate[part] = reasons
            prose[part] = harness[part] if reasons else getattr(draft, part)
        if degenerate:
            log.info("%s: the harness wrote %s (the model's text was degenerate)", ctx.project_id, sorted(degenerate))
        same = hypothesis.title.strip(" .").lower() == hypothesis.statement.strip(" .").lower()
        prose["hypothesis"] = hypothesis.statement if same else f"{hypothesis.title}. {hypothesis.statement}"
        model_parts = [p for p in ("title", "abstract", "introduction", "discussion") if p not in degenerate]
        if hypothesis.written_by == "model":
            model_parts.append("hypothesis")
        related_text = related_work_text(
            hypothesis, idea.related, keys, source, settings.novelty_max_similarity, numbers
        )
        figures = figures_from(results, ctx.project_dir, numbers)
        appendix = code_appendix(results, ctx.run_dir, numbers)

        def build(texts: dict[str, str]) -> Paper:
            return Paper(
                title=texts["title"],
                abstract=texts["abstract"],
                sections=[
                    Section(heading="Introduction", body=texts["introduction"]),
                    Section(heading="Related Work", body=related_text),
                    Section(heading="Hypothesis", body=texts["hypothesis"]),
                    Section(heading="Experimental Setup", body=setup),
                    Section(heading="Results", body=summary),
                    Section(heading="Discussion", body=texts["discussion"]),
                ],
                table=results_table(results, numbers),
                figures=figures,
                bibliography=bibliography,
                appendix=appendix,
                metadata={"project": ctx.project_id, "template": spec.name, "design": plan.design},
            )

        first_md, first_spans = render_markdown(build(prose), numbers)
        before = check_text(first_md, sources, bibliography, first_spans)
        claims_before = _claims_of(model_parts, prose, results)
        repairs: list[str] = []
        for name in model_parts:  # only the model's own words are repaired; the harness's are checked
            text = prose[name]
            if paper_cfg.on_ungrounded == "repair":
                fixed, dropped = repair_prose(text, sources, bibliography)
                fixed, changed = repair_claims(fixed or "", results)
                if dropped or changed:
                    repairs += [f"{name}: {d}" for d in [*dropped, *changed]]
                    text = fixed or harness.get(name, text)
            else:
                text, changed = repair_claims(text, results, mark=True)
                repairs += [f"{name}: {d}" for d in changed]
            prose[name] = mark_unverified(text, check_text(text, sources, bibliography))
        paper = build(prose)
        markdown, spans = render_markdown(paper, numbers)
        after = check_text(markdown, sources, bibliography, spans)
        if not after.ok and _unmarked(markdown, after):  # harness text as a last resort: never unmarked
            markdown, spans = mark_unverified_keeping(markdown, after, spans)
            after = check_text(markdown, sources, bibliography, spans)
        claims = check_claims(_prose_only(markdown), results)
        latex = render_latex(paper, numbers)
        tex_problems = latex_citation_problems(latex)
        grounding = GroundingSummary(
            before=GroundingCounts(**before.summary()),
            after=GroundingCounts(**after.summary()),
            flagged=not after.ok or bool(tex_problems) or bool(claims.problems),
            unmarked=_unmarked(markdown, after),
            problems=[*after.problems(), *claims.problems],
            repairs=repairs,
            latex_citation_problems=tex_problems,
            bibliography=len(bibliography),
            unresolved_records=unresolved,
        )
        if grounding.flagged:
            log.warning("%s: paper flagged by grounding: %s", ctx.project_id, "; ".join(grounding.problems[:3]))
        md = ctx.save_artifact("paper", "paper.md", markdown)
        tex = ctx.save_artifact("paper", "paper.tex", latex)
        ctx.save_artifact("grounding", "grounding.json", _grounding_file(grounding, after, bibliography, claims))
        title = numbers.plain(paper.title)
        output = WritingOutput(
            title=title,
            markdown=md.path,
            latex=tex.path,
            grounded_number_rate=after.grounded_number_rate,
            verified_citation_rate=after.verified_citation_rate,
            claim_grounding_rate=claims.rate,
            grounding=grounding,
            claims_before=claims_before,
            claims=claims,
            degenerate=degenerate,
            fields_checked=4,
            degenerate_fields=len(degenerate),
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
        ctx.ledger.update_project(ctx.project_id, title=title)
        return output

    return run


MAX_DIFF_LINES = 300  # of the winning code's diff shown in the appendix


def code_appendix(results: Results, run_dir: Path, numbers: Numbers) -> list[Section]:
    """The appendix on the search over programs: what it tried and, when one won, the winning diff."""
    code = results.code
    if code is None or not code.nodes:
        return []
    buggy = sum(1 for n in code.nodes if n.verdict == "buggy")
    tried = (
        f"The search over programs tried {numbers.num(len(code.nodes), 'results.code.nodes#count', '{:d}')} versions "
        f"of the template's code, of which {numbers.num(buggy, 'results.code.nodes#buggy', '{:d}')} failed to run."
    )
    if code.winner is None or code.diff is None:
        return [Section(heading="The search over programs", body=f"{tried} {code.reason}.")]
    path = run_dir / code.diff
    text = path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""
    lines = text.splitlines()
    shown = "\n".join(lines[:MAX_DIFF_LINES]) + (
        f"\n... ({len(lines) - MAX_DIFF_LINES} more lines)" if len(lines) > MAX_DIFF_LINES else ""
    )
    body = (
        f"{tried} The winner, node {code.winner}, runs as condition code; its changes against the template are below"
        + (
            f", and each is removed in turn by the ablations {', '.join(p.split(':')[0] for p in code.parts)}."
            if code.parts
            else "."
        )
    )
    return [Section(heading="The winning code", body=body, code=shown)]


def _claims_of(parts: list[str], prose: dict[str, str], results: Results) -> ClaimCheck:
    """The claims of the model's own parts, as written."""
    return check_claims(" ".join(prose[p].rstrip(".") + "." for p in parts), results)


def _prose_only(markdown: str) -> str:
    """The paper's sentences: headings, the table, figure lines, the references and the Hypothesis section
    (it states what is tested, not what was found) left out."""
    body = markdown.split("\n## References", 1)[0]
    body = re.sub(r"\n## Hypothesis\n.*?(?=\n## |\Z)", "\n", body, flags=re.S)
    keep = [line for line in body.splitlines() if line.strip() and not line.lstrip().startswith(("#", "|", "![", "*"))]
    return "\n".join(keep)


def _unmarked(markdown: str, report: GroundingReport) -> int:
    """How many ungrounded numbers and unverified citations carry no visible mark."""
    return sum(1 for end in report.problem_ends() if not markdown.startswith(" " + UNVERIFIED_MARK, end))


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
