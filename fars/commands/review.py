"""``fars review PAPER [KEY=VALUE ...]``: review one paper (.pdf, .tex, .md, .txt) on a form.

Composes ``conf/review.yaml`` (groups ``llm``, ``reviewer``, ``literature``), reads the paper, runs
the agentic reviewer (related work, ensemble, meta-review, calibrated score) and writes
``review.json``, ``review.md`` and the call ledger into ``out`` (default ``reviews/PAPER_STEM``).
Exit status: 0 reviewed, 1 the model gave no valid review, 2 bad input or config.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

from pydantic import ConfigDict, Field
from pydantic.dataclasses import dataclass

from fars.cli import UsageError
from fars.config import LiteratureConfig, LLMConfig
from review.settings import ReviewerConfig

USAGE = """usage: fars review PAPER [KEY=VALUE ...]

Review a paper (.pdf, .tex, .md or .txt) and write review.json and review.md.
  fars review paper.pdf                        embedded model, ICLR 2025 form
  fars review paper.md reviewer=iclr2022 reviewer.ensemble=3 out=my_review
  fars review paper.tex llm=openai literature=online
exit status: 0 reviewed, 1 no valid review, 2 bad input or config
"""
log = logging.getLogger("fars.review")


@dataclass(config=ConfigDict(extra="forbid"))
class ReviewCommandConfig:
    """The composed config of ``fars review``."""

    file: str | None = None  # the paper file
    out: str | None = None  # output folder; None: reviews/<paper stem>
    llm: LLMConfig = Field(default_factory=LLMConfig)
    reviewer: ReviewerConfig = Field(default_factory=ReviewerConfig)
    literature: LiteratureConfig = Field(default_factory=LiteratureConfig)


def split_args(args: list[str]) -> tuple[list[str], list[str]]:
    """Positional arguments (no '=') and Hydra overrides."""
    return [a for a in args if "=" not in a], [a for a in args if "=" in a]


def context_window(model: str) -> int | None:
    """The model's context window in tokens from litellm's model data (None when litellm does not know it)."""
    import litellm

    try:
        info = litellm.get_model_info(model)
    except Exception:  # an unknown model: the reviewer keeps its fixed limits
        return None
    tokens = info.get("max_input_tokens") or info.get("max_tokens")
    return int(tokens) if tokens else None


def build_reviewer(
    client: Any, reviewer: ReviewerConfig, literature: LiteratureConfig, model: str
) -> Any:  # an object with ``async review(paper, paper_id=None) -> PaperReview``
    """The reviewer of a config: the agentic one (literature backend, calibration model, the model's
    context window loaded), or a fitted baseline (``reviewer=length|bow``, no model needed)."""
    from review.calibration import CalibrationError, load_calibration

    if reviewer.kind == "oracle":
        raise UsageError("reviewer=oracle returns human ratings and works only in `fars calibrate`")
    if reviewer.kind in ("length", "bow"):
        from review.baselines import BaselineReviewer, load_baseline

        try:
            return BaselineReviewer(load_baseline(reviewer.kind, reviewer.baseline), reviewer.form)
        except CalibrationError as exc:
            raise UsageError(str(exc)) from None
    from fars.literature import make_backend
    from review.reviewer import AgenticReviewer

    try:
        calibration = load_calibration(reviewer.calibration, reviewer.form)
    except CalibrationError as exc:
        raise UsageError(str(exc)) from None
    backend = make_backend(literature) if reviewer.related_works > 0 else None
    return AgenticReviewer(
        client, reviewer, literature=backend, calibration=calibration, top_k=literature.top_k, name=f"model:{model}",
        context_tokens=lambda: context_window(model),
    )  # fmt: skip


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
    from fars.commands.configured import compose_config

    cfg, _ = compose_config("review", overrides, ReviewCommandConfig)
    if not cfg.file:
        raise UsageError("no paper given: `fars review PAPER` (a .pdf, .tex, .md or .txt file)")
    from review.ingest import PaperError, load_paper

    try:
        paper = load_paper(cfg.file)
    except PaperError as exc:
        raise UsageError(str(exc)) from None
    out = Path(cfg.out) if cfg.out else Path("reviews") / Path(cfg.file).stem
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("LiteLLM", "LiteLLM Router", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return asyncio.run(_review(cfg, paper, out))


async def _review(cfg: ReviewCommandConfig, paper: Any, out: Path) -> int:
    from fars.ledger import Ledger
    from fars.llm.client import LLMClient, LLMError, call_context
    from review.render import calibrated_text, review_markdown

    out.mkdir(parents=True, exist_ok=True)
    ledger = Ledger(out / "ledger.sqlite")
    client = LLMClient(cfg.llm, ledger)
    try:
        reviewer = build_reviewer(client, cfg.reviewer, cfg.literature, cfg.llm.model)
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
    (out / "review.json").write_text(result.model_dump_json(indent=1), encoding="utf-8")
    (out / "review.md").write_text(review_markdown(result), encoding="utf-8")
    flag = (
        " FLAGGED: the paper carries text aimed at its reviewer (removed; see review.md)."
        if result.injection_flagged
        else ""
    )
    print(
        f"{paper.title[:70]}: rating {result.final_rating:g}, {result.decision} (ensemble mean {result.raw_rating:.2f}, "
        f"calibrated {calibrated_text(result)}), read {result.reading.chars_read if result.reading else 0} of "
        f"{result.reading.chars_total if result.reading else paper.chars} characters, {usage.total_tokens} tokens -> {out / 'review.json'}, {out / 'review.md'}{flag}"
    )
    return 0
