"""Review forms as pydantic schemas, used for constrained output and validation."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints

ICLR_RATINGS = (1, 3, 5, 6, 8, 10)
Point = Annotated[str, StringConstraints(min_length=3, max_length=200)]


class ICLR2025Review(BaseModel):
    """The ICLR 2025 review form: text fields, 1-4 sub-scores, a rating on {1,3,5,6,8,10}, confidence."""

    summary: str = Field(min_length=10, max_length=600, description="what the paper claims and does")
    strengths: list[Point] = Field(min_length=1, max_length=4, description="main strengths")
    weaknesses: list[Point] = Field(min_length=1, max_length=4, description="main weaknesses")
    questions: list[Point] = Field(min_length=0, max_length=3, description="questions to the authors")
    soundness: Literal[1, 2, 3, 4] = Field(description="1 poor, 2 fair, 3 good, 4 excellent")
    presentation: Literal[1, 2, 3, 4] = Field(description="1 poor, 2 fair, 3 good, 4 excellent")
    contribution: Literal[1, 2, 3, 4] = Field(description="1 poor, 2 fair, 3 good, 4 excellent")
    rating: Literal[1, 3, 5, 6, 8, 10] = Field(
        description="1 strong reject, 3 reject, 5 marginally below, 6 marginally above, 8 accept, 10 strong accept"
    )
    confidence: Literal[1, 2, 3, 4, 5] = Field(description="1 educated guess ... 5 absolutely certain")


def decision_for(rating: float) -> str:
    """The decision a rating implies on the ICLR scale (6, marginally above, and up: accept)."""
    return "accept" if rating >= 6 else "reject"


FORMS: dict[str, type[BaseModel]] = {"iclr2025": ICLR2025Review}
