"""Review: the agentic reviewer scores the written paper (ensemble, meta-review, calibrated score).

The stage output keeps ``rating`` on the ICLR scale (the area chair's rating when there is a
meta-review, else the ensemble mean) and ``review`` with the ensemble-mean sub-scores beside the raw,
meta and calibrated ratings, the judge, the checklist and whether the judge's signal is validated (what
the RunRecord, W&B and ``fars compare`` read); the whole
``PaperReview`` is saved as ``review.json`` and ``review.md``. The reviewer is built once per run by
``fars.stages.reviewing.build_reviewer`` (as ``fars review`` builds it) over the run's literature backend.
Registered with the stage: its settings are checked before anything runs, a review that fails is tried
again ``pipeline.review_retries`` times, and a written paper whose review fails for good is kept as a
paper without a rating.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from fars.config import FarsConfig
from fars.run.contracts import ReviewOutput, ReviewSummary, WritingOutput
from fars.stages.base import StageContext, StageFn, register_stage
from fars.stages.reviewing import build_reviewer, reviewer_problems
from review.ingest.paper import paper_from_text
from review.render import review_markdown
from review.reviewer import PaperReview
from review.settings import ReviewerConfig

if TYPE_CHECKING:
    from fars.stages.services import Services


@dataclass(frozen=True)
class ReviewSettings:
    """What the Review stage needs of the run's config."""

    reviewer: ReviewerConfig
    top_k: int
    model: str

    @classmethod
    def of(cls, cfg: FarsConfig) -> ReviewSettings:
        """The settings of a run's config."""
        return cls(cfg.reviewer, cfg.literature.top_k, cfg.llm.model)  # the judge: reviewer.model, else this


@register_stage(
    "review",
    produces=ReviewOutput,
    consumes=(WritingOutput,),
    settings=ReviewSettings.of,
    check=lambda cfg: reviewer_problems(cfg.reviewer),  # the calibration loads; the oracle only calibrates
    retries=lambda cfg: cfg.pipeline.review_retries,  # a model fault under load: the paper is reviewed again
    on_failure="keep_paper_unreviewed",  # a written paper whose review fails for good stays a paper, unrated
    doing="reviewing",
)
def review(settings: ReviewSettings, services: Services) -> StageFn:
    """Factory of the Review stage: the reviewer (calibration model included) is built once per run."""
    reviewer = build_reviewer(
        services.llm, settings.reviewer, services.literature, top_k=settings.top_k, model=settings.model
    )

    async def run(ctx: StageContext) -> ReviewOutput:
        text = (ctx.run_dir / ctx.input(WritingOutput).markdown).read_text(encoding="utf-8")
        result = await reviewer.review(paper_from_text(text, source=f"{ctx.project_id}/paper.md"))
        usage = ctx.ledger.usage(by="stage", project_id=ctx.project_id).get("review")
        if usage is not None:
            result.usage = usage.model_dump() | {"total_tokens": usage.total_tokens}
        ctx.save_artifact("review", "review.json", result.model_dump_json(indent=1))
        ctx.save_artifact("review_md", "review.md", review_markdown(result))
        return stage_output(result)

    return run


def stage_output(result: PaperReview) -> ReviewOutput:
    """The output the ledger stores for a finished review."""
    summary = ReviewSummary(
        rating=result.final_rating,
        raw_rating=result.raw_rating,
        meta_rating=result.meta_rating,
        calibrated_rating=result.calibrated_rating,
        calibration=result.calibration,
        calibration_status=str(result.calibration_status) if result.calibration_status else None,
        calibration_note=result.calibration_note,
        decision=result.decision,
        ensemble=len(result.reviews),
        subscores=dict(result.subscores),
        injection_flagged=result.injection_flagged,
        reviewer=result.reviewer,
        validated=result.validated,
        signal_note=result.signal_note,
        checklist=dict(result.checklist),
    )
    return ReviewOutput(rating=result.final_rating, review=summary, paper_review=result)
