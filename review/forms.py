"""Review forms as pydantic schemas, used for constrained output and validation.

Each form names its overall rating field and its numeric sub-scores, so the ensemble, the
calibration model and the metrics treat every form alike. ``FORMS`` maps a config name to a form.

One decision rule: a decision is never asked of a model; it is derived from a rating by
``decision_for`` (``DECISION_RULE``), so a reviewer or the area chair cannot say "accept" beside a
rating that means "reject". ``sized_form`` makes a form with room for a longer review (more and
longer points) for a model with a large context.
"""

from __future__ import annotations

from functools import cache
from typing import Annotated, Any, ClassVar, Literal

from annotated_types import MinLen
from pydantic import BaseModel, ConfigDict, Field, create_model

from review.bounded import Bounded
from review.checklist import EVIDENCE_CHARS, Checklist, checklist_model

ICLR_RATINGS = (1, 3, 5, 6, 8, 10)
ACCEPT_THRESHOLD = 6.0  # ICLR: 6, "marginally above the acceptance threshold", and up
Point = Annotated[str, Bounded(200, least=3)]  # a point of the form; a reply may overrun it (review.bounded)
Score4 = Literal[1, 2, 3, 4]
Rating = Literal[1, 3, 5, 6, 8, 10]
Confidence = Literal[1, 2, 3, 4, 5]
DECISION_RULE = (
    "The decision follows from the rating alone: accept when the rating is 6 (marginally above the "
    "acceptance threshold) or higher, reject below. Each reviewer's decision comes from its own rating; "
    "the paper's recorded decision comes from its final rating (the area chair's when there is a "
    "meta-review, else the ensemble mean). The calibrated rating predicts the mean human rating and does "
    "not change the decision."
)
POINTS, POINT_CHARS, SUMMARY_CHARS = 4, 200, 600  # the fixed form's limits (the embedded model's budget)
# the form's own words for each rating (ICLR's), so every place that labels a rating says the same
RATING_LABELS: dict[int, str] = {
    1: "strong reject",
    3: "reject",
    5: "marginally below the acceptance threshold",
    6: "marginally above the acceptance threshold",
    8: "accept",
    10: "strong accept",
}
CHECKLIST_HELP = "the integrity checklist: answer each question yes, no or unclear, with a short quote or location"


def rating_label(rating: float) -> str:
    """The form's words for a rating on {1,3,5,6,8,10}; a mean between steps is labelled by the step below it."""
    step = max((r for r in ICLR_RATINGS if r <= rating), default=ICLR_RATINGS[0])
    exact = RATING_LABELS[step]
    return exact if float(rating) == step else f"between {exact} and {RATING_LABELS[_next_step(step)]}"


def _next_step(step: int) -> int:
    later = [r for r in ICLR_RATINGS if r > step]
    return later[0] if later else step


def _drop_description(schema: dict[str, Any]) -> None:
    """Keep the class docstring out of the JSON schema: small models copy it into the summary."""
    schema.pop("description", None)


def decision_for(rating: float) -> str:
    """The decision a rating implies on the ICLR scale (6, marginally above, and up: accept)."""
    return "accept" if rating >= ACCEPT_THRESHOLD else "reject"


class ReviewForm(BaseModel):
    """A filled-in review form; subclasses name their rating and numeric sub-score fields."""

    model_config = ConfigDict(json_schema_extra=_drop_description)
    rating_field: ClassVar[str] = "rating"
    subscore_fields: ClassVar[tuple[str, ...]] = ()
    year: ClassVar[int] = 0

    def overall(self) -> float:
        """The overall rating on the ICLR scale {1,3,5,6,8,10}."""
        return float(getattr(self, self.rating_field))

    def subscores(self) -> dict[str, float]:
        """Numeric sub-scores (1-4), and confidence (1-5), by field name."""
        return {name: float(getattr(self, name)) for name in (*self.subscore_fields, "confidence")}


class ICLR2025Review(ReviewForm):
    """The ICLR 2025 review form: text fields, 1-4 sub-scores, a rating on {1,3,5,6,8,10}, confidence."""

    subscore_fields: ClassVar[tuple[str, ...]] = ("soundness", "presentation", "contribution")
    year: ClassVar[int] = 2025

    summary: Annotated[str, Bounded(600, least=10)] = Field(description="what the paper claims and does")
    strengths: list[Point] = Field(min_length=1, max_length=4, description="main strengths")
    weaknesses: list[Point] = Field(min_length=1, max_length=4, description="main weaknesses")
    questions: list[Point] = Field(min_length=0, max_length=3, description="questions to the authors")
    soundness: Score4 = Field(description="1 poor, 2 fair, 3 good, 4 excellent")
    presentation: Score4 = Field(description="1 poor, 2 fair, 3 good, 4 excellent")
    contribution: Score4 = Field(description="1 poor, 2 fair, 3 good, 4 excellent")
    checklist: Checklist = Field(description=CHECKLIST_HELP)
    rating: Rating = Field(
        description="1 strong reject, 3 reject, 5 marginally below, 6 marginally above, 8 accept, 10 strong accept"
    )
    confidence: Confidence = Field(description="1 educated guess ... 5 absolutely certain")


class ICLR2022Review(ReviewForm):
    """The ICLR 2022 review form: correctness and two novelty/significance scores (1-4), recommendation."""

    rating_field: ClassVar[str] = "recommendation"
    subscore_fields: ClassVar[tuple[str, ...]] = (
        "correctness",
        "technical_novelty_and_significance",
        "empirical_novelty_and_significance",
    )
    year: ClassVar[int] = 2022

    summary: Annotated[str, Bounded(600, least=10)] = Field(description="summary of the paper")
    strengths: list[Point] = Field(min_length=1, max_length=4, description="main strengths")
    weaknesses: list[Point] = Field(min_length=1, max_length=4, description="main weaknesses")
    summary_of_the_review: Annotated[str, Bounded(400, least=10)] = Field(description="the review in short")
    correctness: Score4 = Field(description="1 claims incorrect ... 4 all claims well supported")
    technical_novelty_and_significance: Score4 = Field(description="1 not significant or novel ... 4 highly")
    empirical_novelty_and_significance: Score4 = Field(description="1 not significant or novel ... 4 highly")
    checklist: Checklist = Field(description=CHECKLIST_HELP)
    recommendation: Rating = Field(
        description="1 strong reject, 3 reject, 5 marginally below, 6 marginally above, 8 accept, 10 strong accept"
    )
    confidence: Confidence = Field(description="1 educated guess ... 5 absolutely certain")


class MetaReview(BaseModel):
    """The area chair's meta-review over the ensemble's reviews."""

    model_config = ConfigDict(json_schema_extra=_drop_description)
    summary: Annotated[str, Bounded(600, least=10)] = Field(description="the reviewers' consensus on the paper")
    agreed_strengths: list[Point] = Field(min_length=1, max_length=3, description="strengths reviewers agree on")
    agreed_weaknesses: list[Point] = Field(min_length=1, max_length=3, description="weaknesses reviewers agree on")
    rating: Rating = Field(description="the area chair's overall rating on the ICLR scale")


FORMS: dict[str, type[ReviewForm]] = {"iclr2025": ICLR2025Review, "iclr2022": ICLR2022Review}
_SUMMARY_FIELDS = ("summary", "summary_of_the_review")


@cache
def sized_form(
    form: type[BaseModel], points: int = POINTS, point_chars: int = POINT_CHARS, summary_chars: int = SUMMARY_CHARS
) -> type[BaseModel]:
    """``form`` (a review form or ``MetaReview``) with room for ``points`` points of ``point_chars``
    characters per list and summaries of ``summary_chars``; the form itself at the fixed limits.

    The subclass keeps the form's name, rating and sub-score fields, so everything that reads a form
    reads it alike; only the JSON schema the model is given, and its validation, grow.
    """
    if (points, point_chars, summary_chars) == (POINTS, POINT_CHARS, SUMMARY_CHARS):
        return form
    evidence_chars = max(EVIDENCE_CHARS, point_chars // 2)
    point = Annotated[str, Bounded(point_chars, least=3)]
    fields: dict[str, Any] = {}
    for name, info in form.model_fields.items():
        least = next(
            (
                m.min_length if isinstance(m, MinLen) else m.least
                for m in info.metadata
                if isinstance(m, (MinLen, Bounded))
            ),
            0,
        )
        if getattr(info.annotation, "__origin__", None) is list:
            fields[name] = (list[point], Field(min_length=least, max_length=points, description=info.description))
        elif name in _SUMMARY_FIELDS:
            fields[name] = (Annotated[str, Bounded(summary_chars, least=least)], Field(description=info.description))
        elif name == "checklist":
            fields[name] = (checklist_model(evidence_chars), Field(description=info.description))
    sized: type[BaseModel] = create_model(form.__name__, __base__=form, __module__=form.__module__, **fields)
    sized.__doc__ = form.__doc__
    return sized


def get_form(name: str) -> type[ReviewForm]:
    """The form registered as ``name``; an unknown name lists the known ones."""
    if name not in FORMS:
        raise KeyError(f"unknown review form {name!r}; known: {sorted(FORMS)} (set reviewer.form)")
    return FORMS[name]


def form_fields(form: str) -> list[str]:
    """The calibration features of a form: its sub-scores, confidence and overall rating."""
    cls = get_form(form)
    return [*cls.subscore_fields, "confidence", "rating"]
