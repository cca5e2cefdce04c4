"""``fars probe [KEY=VALUE ...]``: the robustness probe: planted flaws, and what they do to the score.

Composes ``conf/probe.yaml``; takes ``limit`` papers (the dev data, or ``papers=`` a run folder, a
folder of papers or one paper file), makes a copy of each with every flaw kind of ``flaws`` planted
(see ``review.probe.flaws``), reviews originals and copies with the configured reviewer (any: a model,
``reviewer=length`` or ``reviewer=bow``), resumably (``out=`` an earlier folder continues it), and
writes ``probe.json``, ``probe.md`` with a plot, and a W&B run (offline by default). ``retest=K``
adds K repeated reviews of each original for the test-retest reliability.
Exit status: 0 done, 1 too few reviews for a report, 2 bad input or config.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import json
import logging
import sys
from pathlib import Path
from typing import Any

from pydantic import ConfigDict, Field, field_validator
from pydantic.dataclasses import dataclass

from fars.commands.configured import UsageError, track_report
from fars.config import LiteratureConfig, LLMConfig, TrackerConfig
from review.settings import ReviewerConfig

USAGE = """usage: fars probe [KEY=VALUE ...]

Review papers and copies of them with planted flaws; report per flaw the mean score change (95% interval),
how often the review names the flaw, and a verdict (JSON, Markdown with a plot, W&B).
  fars probe limit=10                                    10 dev papers on the embedded model, 6 flaw kinds
  fars probe papers=outputs/2026-01-01/12-00-00 llm=openai   a run's own papers
  fars probe reviewer=length limit=30                    does the text-length baseline reward padding?
  fars probe retest=2 llm.temperature=0.7 llm.cache=false    with test-retest reliability
exit status: 0 done, 1 too few reviews, 2 bad input or config
"""
log = logging.getLogger("fars.probe")


def _all_flaws() -> list[str]:
    from review.probe.flaws import FLAWS

    return list(FLAWS)


@dataclass(config=ConfigDict(extra="forbid"))
class ProbeConfig:
    """The composed config of ``fars probe``."""

    data: str = "../shared/data/iclr2022/dev.jsonl"
    papers: str | None = None  # a run folder, a folder of papers or a paper file; replaces data
    limit: int | None = Field(default=10, ge=2)
    seed: int = 0
    flaws: list[str] = Field(default_factory=_all_flaws)
    retest: int = Field(default=0, ge=0, le=10)
    concurrency: int = Field(default=1, ge=1, le=64)
    bootstrap: int = Field(default=1000, ge=50)
    min_effect: float = Field(default=0.25, ge=0.0)  # rating points a mean change must reach to count
    out: str | None = None
    llm: LLMConfig = Field(default_factory=LLMConfig)
    reviewer: ReviewerConfig = Field(default_factory=ReviewerConfig)
    literature: LiteratureConfig = Field(default_factory=lambda: LiteratureConfig(backend="none"))  # no search
    tracker: TrackerConfig = Field(default_factory=TrackerConfig)

    @field_validator("flaws")
    @classmethod
    def _known_flaws(cls, value: list[str]) -> list[str]:
        from review.probe.flaws import FLAWS

        unknown = [f for f in value if f not in FLAWS]
        if unknown or not value:
            raise ValueError(f"unknown or no flaw kind(s) {unknown or value}; choose from {list(FLAWS)}")
        return value


def paper_files(path_text: str) -> list[Path]:
    """The papers a ``papers=`` value names: a run folder's projects/*/paper.md, a folder's papers, or one file."""
    path = Path(path_text).expanduser()
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise UsageError(f"papers={path_text}: no such file or folder; give a run folder, a folder of papers or a file")
    found = sorted(path.glob("projects/*/paper.md")) or sorted(
        p for p in path.iterdir() if p.suffix.lower() in (".md", ".tex", ".pdf", ".txt")
    )
    if not found:
        raise UsageError(f"papers={path_text}: no projects/*/paper.md and no .md/.tex/.pdf/.txt paper in the folder")
    return found


def load_probe_papers(cfg: ProbeConfig) -> list[tuple[str, Any]]:
    """(id, PaperText) of the papers to probe, ``limit`` of them drawn with ``seed``."""
    import random

    from review.ingest.paper import PaperError, load_paper, paper_from_text

    if cfg.papers:
        papers = []
        for file in paper_files(cfg.papers):
            try:
                paper = load_paper(file)
            except PaperError as exc:
                raise UsageError(str(exc)) from None
            pid = file.parent.name if file.name == "paper.md" else file.stem
            papers.append((pid, paper))
    else:
        from review.calibration.humans import DataError, load_papers

        try:
            rows = load_papers(cfg.data)
        except DataError as exc:
            raise UsageError(str(exc)) from None
        papers = [(p.id, paper_from_text(p.text, source=f"{cfg.data}#{p.id}")) for p in rows]
    if cfg.limit is not None and cfg.limit < len(papers):
        picked = sorted(random.Random(cfg.seed).sample(range(len(papers)), cfg.limit))
        papers = [papers[i] for i in picked]
    if len(papers) < 2:
        raise UsageError(f"{len(papers)} paper(s) found; the probe needs at least 2 for its intervals")
    return papers


def main(args: list[str]) -> int:
    """Entry point of ``fars probe``."""
    if any(a in ("-h", "--help") for a in args):
        print(USAGE)
        return 0
    stray = [a for a in args if "=" not in a]
    if stray:
        raise UsageError(f"arguments must be KEY=VALUE overrides (got {stray}); see `fars probe --help`")
    from fars.commands.configured import compose_config, listing
    from fars.stages.reviewing import reviewer_problems

    cfg, raw = compose_config("probe", args, ProbeConfig)
    if cfg.reviewer.kind == "oracle":
        raise UsageError(
            "reviewer=oracle returns human ratings, which no planted flaw can move; probe a model or a baseline"
        )
    problems = reviewer_problems(cfg.reviewer)
    if problems:  # before any paper is read or any model called
        raise UsageError(listing(problems))
    papers = load_probe_papers(cfg)
    stamp = _dt.datetime.now().strftime("%Y-%m-%d/%H-%M-%S")
    out = Path(cfg.out) if cfg.out else Path("outputs") / "probe" / stamp
    out.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("LiteLLM", "httpx", "wandb"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if cfg.retest and cfg.llm.temperature == 0:
        log.warning(
            "retest=%d at llm.temperature=0: repeated reviews are deterministic and measure nothing", cfg.retest
        )
    return asyncio.run(_probe(cfg, raw, papers, out))


async def _probe(cfg: ProbeConfig, raw: dict[str, Any], papers: list[tuple[str, Any]], out: Path) -> int:
    from fars.context import call_context
    from fars.llm.client import LLMClient
    from fars.run.ledger import Ledger
    from fars.stages.reviewing import build_reviewer, judge_model
    from review.calibration.harness import review_all
    from review.ingest.paper import paper_from_text
    from review.probe.runner import build_copies, build_probe_report, plot_probe, probe_markdown

    baseline = cfg.reviewer.kind in ("length", "bow")
    name = f"baseline:{cfg.reviewer.kind}" if baseline else f"model:{judge_model(cfg.reviewer, cfg.llm.model)}"
    items = build_copies(papers, cfg.flaws, seed=cfg.seed, retest=cfg.retest)
    todo = [p for p in items if p.planted is None or p.planted.applicable]
    ledger = Ledger(out / "ledger.sqlite")
    client = None if baseline else LLMClient(cfg.llm, ledger)
    (out / "config.json").write_text(json.dumps(raw, indent=1, default=str), encoding="utf-8")
    (out / "copies.json").write_text(json.dumps([p.model_dump() for p in items], indent=1), encoding="utf-8")
    try:
        reviewer = build_reviewer(client, cfg.reviewer, cfg.literature, top_k=cfg.literature.top_k, model=cfg.llm.model)

        async def review_one(item: Any) -> Any:
            paper = paper_from_text(item.text, source=item.source, fallback_title=item.title)
            paper.title = item.title
            with call_context(item.id, "review"):
                result = await reviewer.review(paper, paper_id=item.original)
            usage = ledger.usage(project_id=item.id).get("")
            if usage is not None:
                result.usage = usage.model_dump() | {"total_tokens": usage.total_tokens}
            return result

        log.info("%d papers, %d flaw kinds: %d reviews to have", len(papers), len(cfg.flaws), len(todo))
        reviews, failures, session = await review_all(todo, review_one, out, concurrency=cfg.concurrency)
        judgements = await _judge(client, items, reviews, out) if client is not None else {}
    finally:
        if client is not None:
            client.close()
    if sum(1 for p in items if p.flaw is None and p.id in reviews) < 2:
        print(f"fars probe: fewer than 2 original papers reviewed (failures: {failures})", file=sys.stderr)
        return 1
    report = build_probe_report(
        items,
        reviews,
        failures,
        reviewer=reviewer,
        name=name,
        kinds=cfg.flaws,
        draws=cfg.bootstrap,
        seed=cfg.seed,
        settings={"reviewer": raw.get("reviewer"), "llm": {"model": cfg.llm.model, "temperature": cfg.llm.temperature}},
        session=session,
        min_effect=cfg.min_effect,
        judgements=judgements,
    )
    plots = [plot_probe(report, out / "probe.png")]
    (out / "probe.json").write_text(report.model_dump_json(indent=1), encoding="utf-8")
    (out / "probe.md").write_text(probe_markdown(report, plots), encoding="utf-8")
    _track(cfg.tracker, report, out, raw)
    _print_summary(report, out)
    return 0


async def _judge(client: Any, items: list[Any], reviews: dict[str, Any], out: Path) -> dict[str, bool]:
    """The judge's answers (``review.probe.runner.JUDGED``) on each reviewed copy of a judged flaw and on its
    original, kept with their question in ``OUT/judgements.json`` so a resumed probe asks none twice (a changed
    question is asked again); a failed call counts as not named, logged, and is asked again next time."""
    from fars.context import call_context
    from fars.llm.client import LLMError
    from review.probe.runner import JUDGED, Judgement, judge_prompt, judgement_key

    path = out / "judgements.json"
    stored: dict[str, dict[str, Any]] = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    asked = {
        judgement_key(rid, item.flaw): rid
        for item in items
        if item.flaw in JUDGED and item.planted is not None and item.planted.applicable
        for rid in (item.id, item.original)
        if rid in reviews and item.id in reviews
    }
    for key, rid in asked.items():
        kind = key.rsplit("|", 1)[1]
        if stored.get(key, {}).get("question") == JUDGED[kind]:
            continue  # asked before, the same question
        try:
            with call_context(rid, "probe-judge"):
                said = await client.structured(judge_prompt(kind, reviews[rid]), Judgement, max_tokens=300)
        except LLMError as exc:
            log.warning("judge call on %s for %s failed: %s", rid, kind, str(exc)[:200])
            continue
        stored[key] = said.model_dump() | {"question": JUDGED[kind]}
        path.write_text(json.dumps(stored, indent=1), encoding="utf-8")
    current = {key for key in asked if stored.get(key, {}).get("question") == JUDGED[key.rsplit("|", 1)[1]]}
    return {key: bool(stored[key].get("names")) for key in current}


def _print_summary(report: Any, out: Path) -> None:
    def fmt(value: float | None, spec: str = "+.2f") -> str:
        return "-" if value is None else format(value, spec)

    print(f"{report.reviewer}: {len(report.papers)} papers, {len(report.pairs)} pairs, {len(report.failures)} failed")
    if report.floor:
        print("  every original got the lowest rating: no flaw can lower it (a floor effect)")
    for f in report.flaws:
        interval = "" if f.delta_low is None else f" [{f.delta_low:+.2f}, {f.delta_high:+.2f}]"
        print(
            f"  {f.kind:>22}: change {fmt(f.mean_delta)}{interval}  named {fmt(f.named_rate, '.0%')} "
            f"(original {fmt(f.named_rate_original, '.0%')})  seen {fmt(f.visible_rate, '.0%')}  {f.verdict}"
        )
    if report.reliability is not None:
        rel = report.reliability
        icc = "undefined" if rel.icc is None else f"{rel.icc:.2f}"
        print(f"  test-retest ({rel.source}): within-paper SD {rel.within_sd:.2f}, ICC {icc}")
    print(f"report: {out / 'probe.md'}  {out / 'probe.json'}")


def _track(cfg: TrackerConfig, report: Any, out: Path, raw: dict[str, Any]) -> None:
    """Log the probe to W&B: each flaw's figures and verdict, the pairs and the plot."""
    summary: dict[str, Any] = {"papers": len(report.papers), "pairs": len(report.pairs), "floor": report.floor}
    figures = (
        "mean_delta",
        "delta_low",
        "delta_high",
        "lowered_share",
        "named_rate",
        "named_rate_original",
        "item_no_rate",
        "item_no_rate_original",
        "visible_rate",
    )
    for f in report.flaws:
        summary |= {f"{f.kind}/{key}": getattr(f, key) for key in figures if getattr(f, key) is not None}
        summary[f"{f.kind}/verdict"] = f.verdict
    if report.reliability is not None:
        summary |= {f"reliability/{k}": v for k, v in report.reliability.model_dump().items() if isinstance(v, float)}
    columns = ["paper", "flaw", "original", "perturbed", "delta", "named", "named_original", "visible"]
    track_report(
        cfg,
        out,
        raw,
        job="probe",
        summary=summary,
        table=("pairs_table", columns, report.pairs),
        image=("probe", out / "probe.png"),
    )
