"""``fars review PAPER [KEY=VALUE ...]``: review one paper (.pdf, .tex, .md, .txt, or a LaTeX source
folder) on a form.

Composes ``conf/review.yaml`` (groups ``llm``, ``reviewer``, ``literature``), reads the paper (what
was read, and any warning that it looks too short, is printed and recorded), runs the agentic
reviewer (related work, ensemble, meta-review, calibrated score) and writes ``review.json``,
``review.md`` and the call ledger into ``out``: by default ``PAPER_STEM.review/`` next to the paper,
or, when that holds an earlier review, the next free ``PAPER_STEM.review-N/``. An earlier review is
replaced only with ``overwrite=true``. Exit status: 0 reviewed, 1 the model gave no valid review,
2 bad input or config.

The folder beside the paper came with the paper and may hold what its author planted: a default
folder that is a link (or a file) is never used, and each output is written through
``fars.safe_files.write_atomic`` (a new file renamed over the name), so a link planted at
``review.json`` or ``review.md`` is replaced, never written through; a link or special file planted
at the call ledger's names is removed before the ledger is opened.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
import sys
from pathlib import Path
from typing import Any

from pydantic import ConfigDict, Field
from pydantic.dataclasses import dataclass

from fars.commands.configured import UsageError
from fars.config import LiteratureConfig, LLMConfig
from fars.run.ledger import LEDGER_FILE
from fars.safe_files import write_atomic
from review.settings import ReviewerConfig

USAGE = """usage: fars review PAPER [KEY=VALUE ...]

Review a paper (.pdf, .tex, .md, .txt, or a folder with its LaTeX source) and write review.json and
review.md into PAPER_STEM.review/ next to the paper (PAPER_STEM.review-2/ ... if one is there already).
  fars review paper.pdf                        embedded model, ICLR 2025 form
  fars review paper_src/                       the main .tex of a source folder, its \\input files followed
  fars review paper.md reviewer=iclr2022 reviewer.ensemble=3 out=my_review
  fars review paper.tex llm=openai literature=online overwrite=true
exit status: 0 reviewed, 1 no valid review, 2 bad input or config
"""
log = logging.getLogger("fars.review")


@dataclass(config=ConfigDict(extra="forbid"))
class ReviewCommandConfig:
    """The composed config of ``fars review``."""

    file: str | None = None  # the paper file, or a folder holding its LaTeX source or its PDF
    out: str | None = None  # output folder; None: <paper stem>.review/ next to the paper (a free -N if taken)
    overwrite: bool = False  # replace an earlier review in that folder (otherwise never)
    llm: LLMConfig = Field(default_factory=LLMConfig)
    reviewer: ReviewerConfig = Field(default_factory=ReviewerConfig)
    literature: LiteratureConfig = Field(default_factory=LiteratureConfig)


def split_args(args: list[str]) -> tuple[list[str], list[str]]:
    """Positional arguments (no '=') and Hydra overrides."""
    return [a for a in args if "=" not in a], [a for a in args if "=" in a]


def main(args: list[str]) -> int:
    """Entry point of ``fars review``."""
    if not args or any(a in ("-h", "--help") for a in args):
        print(USAGE)
        return 0 if args else 2
    positional, overrides = split_args(args)
    if len(positional) > 1:
        raise UsageError(f"one paper at a time (got {positional}); use `fars calibrate` for many")
    if positional:
        overrides = [o for o in overrides if not o.startswith("file=")] + [f"file={positional[0]}"]
    from fars.commands.configured import compose_config, listing
    from fars.llm.endpoint import api_base_problems
    from fars.stages.reviewing import reviewer_problems

    cfg, _ = compose_config("review", overrides, ReviewCommandConfig)
    problems = [*api_base_problems(cfg.llm), *reviewer_problems(cfg.reviewer)]
    if problems:  # before any paper is read or any model called
        raise UsageError(listing(problems))
    if not cfg.file:
        raise UsageError("no paper given: `fars review PAPER` (a .pdf, .tex, .md or .txt file)")
    from review.ingest.paper import PaperError, load_paper

    try:
        paper = load_paper(cfg.file)
    except PaperError as exc:
        raise UsageError(str(exc)) from None
    out = review_folder(Path(paper.source), Path(cfg.out) if cfg.out else None, overwrite=cfg.overwrite)
    print(describe_reading(paper), file=sys.stderr)
    for warning in paper.ingest.warnings:
        print(f"fars review: warning: {paper.source}: {warning}", file=sys.stderr)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("LiteLLM", "LiteLLM Router", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return asyncio.run(_review(cfg, paper, out))


def describe_reading(paper: Any) -> str:
    """One line on what was read of a paper: its title, characters, sections and files or pages."""
    record = paper.ingest
    if record.pages_read is not None:
        where = f"{record.pages_read} of {record.page_count} pages"
    else:
        where = f"{len(record.files)} file(s): {', '.join(record.files[:6])}{' ...' if len(record.files) > 6 else ''}"
    dropped = f"; dropped running header(s): {'; '.join(record.dropped[:3])}" if record.dropped else ""
    return (
        f"fars review: read {paper.source} ({record.reader}): '{paper.title[:80]}', {paper.chars} characters, "
        f"{len(paper.sections)} sections, from {where}{dropped}"
    )


OUTPUTS = ("review.json", "review.md")
LEDGER_FILES = tuple(LEDGER_FILE + suffix for suffix in ("", "-wal", "-shm", "-journal"))


def _folder_state(folder: Path) -> str:
    """``free`` (missing, or a folder without a review), ``review`` (a folder holding one) or ``planted``
    (a link, file or special file: not a folder FARS made; never looked into or written through)."""
    try:
        info = os.lstat(folder)
    except FileNotFoundError:
        return "free"
    if not stat.S_ISDIR(info.st_mode):
        return "planted"
    return "review" if os.path.lexists(folder / "review.json") else "free"


def review_folder(paper: Path, out: Path | None, *, overwrite: bool) -> Path:
    """Where the review of ``paper`` goes: ``out`` if given (refused when it holds a review, unless
    ``overwrite``), else ``PAPER_STEM.review`` next to the paper, else the first free
    ``PAPER_STEM.review-N`` there; never a folder holding an earlier review unless ``overwrite``, and
    never a default name where a link or a file stands (said, and passed over)."""
    if out is not None:
        out = out.expanduser().resolve()  # the user's own path: a link they name is theirs to follow
        if os.path.lexists(out / "review.json") and not overwrite:
            raise UsageError(
                f"{out} already holds a review ({out / 'review.json'}); give another out= or overwrite=true"
            )
        chosen = out
    else:
        chosen = paper.parent / f"{paper.stem}.review"
        n = 1
        while (state := _folder_state(chosen)) != "free" and not (state == "review" and overwrite):
            if state == "planted":
                print(
                    f"fars review: warning: {chosen} is not a folder (a link or a file someone left there); "
                    "it is not written through",
                    file=sys.stderr,
                )
            n += 1
            chosen = paper.parent / f"{paper.stem}.review-{n}"
    try:
        chosen.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(
            f"cannot write the review next to the paper ({chosen}: {exc.strerror}); give out=FOLDER"
        ) from None
    if out is None and _folder_state(chosen) == "planted":  # put there since it was looked at
        raise UsageError(f"{chosen} is not a folder (a link?); the review is not written through it; give out=FOLDER")
    return chosen


def clear_planted(folder: Path, names: tuple[str, ...]) -> None:
    """Remove whatever stands at ``folder/name`` that FARS cannot have written there (a link, a special
    file, a file with other hard links), so that nothing opened there writes through it."""
    for name in names:
        path = folder / name
        with contextlib.suppress(FileNotFoundError):
            info = os.lstat(path)
            if stat.S_ISDIR(info.st_mode):
                raise UsageError(f"{path} is a folder, where the review writes a file; give out=FOLDER")
            if not stat.S_ISREG(info.st_mode) or info.st_nlink > 1:
                log.warning("removing %s: a link or special file planted where the review writes", path)
                os.unlink(path)


async def _review(cfg: ReviewCommandConfig, paper: Any, out: Path) -> int:
    from fars.context import call_context
    from fars.llm.client import LLMClient, LLMError
    from fars.run.ledger import Ledger, LedgerError
    from fars.stages.reviewing import build_reviewer
    from review.render import calibrated_text, review_markdown

    try:
        clear_planted(out, LEDGER_FILES + OUTPUTS)
        ledger = Ledger(out / LEDGER_FILE)
    except (LedgerError, OSError) as exc:
        raise UsageError(f"cannot write the review into {out}: {exc}; give out=FOLDER") from None
    client = LLMClient(cfg.llm, ledger)
    try:
        reviewer = build_reviewer(client, cfg.reviewer, cfg.literature, top_k=cfg.literature.top_k, model=cfg.llm.model)
        log.info(
            "reviewing %s (%d characters) with %s on %s", paper.source, paper.chars, cfg.llm.model, cfg.reviewer.form
        )
        with call_context("paper", "review"):
            result = await reviewer.review(paper)
    except LLMError as exc:
        print(f"fars review: {paper.source}: no valid review: {exc}", file=sys.stderr)
        return 1
    finally:
        client.close()
    usage = ledger.usage(project_id="paper").get("", None) or ledger.total_usage()
    result.usage = usage.model_dump() | {"total_tokens": usage.total_tokens}
    try:  # new files renamed over the names: a link planted there is replaced, never written through
        write_atomic(out, "review.json", result.model_dump_json(indent=1))
        write_atomic(out, "review.md", review_markdown(result))
    except OSError as exc:
        print(f"fars review: cannot write the review into {out}: {exc}", file=sys.stderr)
        return 2
    flag = (
        " FLAGGED: the paper carries text aimed at its reviewer (removed; see review.md)."
        if result.injection_flagged
        else ""
    )
    unvalidated = "" if result.validated else " [unvalidated reviewer: see review.md]"
    print(
        f"{paper.title[:70]}: rating {result.final_rating:g}, {result.decision}{unvalidated} (ensemble mean {result.raw_rating:.2f}, "
        f"calibrated {calibrated_text(result)}), read {result.reading.chars_read if result.reading else 0} of "
        f"{result.reading.chars_total if result.reading else paper.chars} characters, {usage.total_tokens} tokens -> {out / 'review.json'}, {out / 'review.md'}{flag}"
    )
    return 0
