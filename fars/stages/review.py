"""Review: the agentic reviewer scores the written paper (ensemble, meta-review, calibrated score).

The stage output keeps ``rating`` on the ICLR scale (the area chair's rating when there is a
meta-review, else the ensemble mean) and ``review`` with the ensemble-mean sub-scores beside the raw,
meta and calibrated ratings (what the RunRecord, W&B and ``fars compare`` read); the whole
``PaperReview`` is saved as ``review.json`` and ``review.md``.
"""

from __future__ import annotations

from typing import Any

from fars.config import FarsConfig
from fars.stages.base import StageContext, StageFn, StageOutput, register_stage
from review.calibration import load_calibration
from review.ingest import paper_from_text
from review.render import review_markdown
from review.reviewer import AgenticReviewer, PaperReview


def stage_output(result: PaperReview) -> StageOutput:
    """The dict the ledger stores for a finished review."""
    summary: dict[str, Any] = {
        **result.subscores,
        "rating": result.final_rating,
        "raw_rating": result.raw_rating,
        "meta_rating": result.meta_rating,
        "calibrated_rating": result.calibrated_rating,
        "calibration": result.calibration,
        "decision": result.decision,
        "ensemble": len(result.reviews),
    }
    return {"rating": result.final_rating, "review": summary, "paper_review": result.model_dump(mode="json")}


@register_stage("review")
def review(cfg: FarsConfig) -> StageFn:
    """Factory of the Review stage: the calibration model and literature backend load once."""
    from fars.literature import make_backend

    if cfg.reviewer.kind == "oracle":
        raise ValueError(
            "reviewer=oracle returns human ratings and works only in `fars calibrate`; use reviewer=iclr2025"
        )
    calibration = load_calibration(cfg.reviewer.calibration, cfg.reviewer.form)
    backend = make_backend(cfg.literature) if cfg.reviewer.related_works > 0 else None

    async def run(ctx: StageContext) -> StageOutput:
        text = (ctx.run_dir / ctx.outputs["writing"]["markdown"]).read_text(encoding="utf-8")
        reviewer = AgenticReviewer(
            ctx.llm,
            cfg.reviewer,
            literature=backend,
            calibration=calibration,
            top_k=cfg.literature.top_k,
            name=f"model:{cfg.llm.model}",
        )
        result = await reviewer.review(paper_from_text(text, source=f"{ctx.project_id}/paper.md"))
        usage = ctx.ledger.usage(by="stage", project_id=ctx.project_id).get("review")
        if usage is not None:
            result.usage = usage.model_dump() | {"total_tokens": usage.total_tokens}
        ctx.save_artifact("review", "review.json", result.model_dump_json(indent=1))
        ctx.save_artifact("review_md", "review.md", review_markdown(result))
        return stage_output(result)

    return run
