"""Papers with human reviews (the ICLR 2022 JSONL format), and the oracle reviewer built on them.

The data is read from the user's copy (e.g. ``../shared/data/iclr2022/dev.jsonl``); no rating is
shipped in the package. The oracle reviewer returns one human's rating and sub-scores, chosen at
random per paper with a fixed seed, and says which (``excluded_human``), so the harness compares it
with the mean of the *other* humans: run through ``fars calibrate`` it must reproduce the
human-human agreement, which checks the harness itself.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from review.forms import ICLR2022Review, decision_for
from review.reviewer import MemberReview, PaperReview


class DataError(ValueError):
    """A data file that cannot be used; the message names it, the line and what to do."""


class HumanReviewedPaper(BaseModel):
    """One paper with its text and every human reviewer's final scores."""

    id: str
    title: str
    text: str
    abstract: str | None = None
    human_ratings: list[float] = Field(min_length=1)
    human_subscores: dict[str, list[float | None] | None] = Field(default_factory=dict)
    decision: str

    @property
    def accepted(self) -> bool:
        """Whether the paper was accepted."""
        return self.decision.lower().startswith("accept")

    @property
    def mean_rating(self) -> float:
        """Mean of the human ratings."""
        return sum(self.human_ratings) / len(self.human_ratings)


def load_papers(path: str | Path) -> list[HumanReviewedPaper]:
    """All papers of a JSONL file; a bad line raises ``DataError`` naming the file and line."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"data={path}: no such file; point data= at a JSONL of papers with human reviews")
    papers = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                papers.append(HumanReviewedPaper.model_validate_json(line))
            except ValidationError as exc:
                raise DataError(f"{path}:{number}: not a paper with human reviews ({exc.errors()[0]['msg']})") from exc
    if not papers:
        raise DataError(f"{path}: no papers in the file")
    return papers


def select_papers(papers: list[HumanReviewedPaper], limit: int | None, seed: int) -> list[HumanReviewedPaper]:
    """``limit`` papers drawn at random with ``seed`` (all when None), in a stable order."""
    if limit is None or limit >= len(papers):
        return list(papers)
    picked = random.Random(seed).sample(range(len(papers)), limit)
    return [papers[i] for i in sorted(picked)]


def file_sha256(path: str | Path) -> str:
    """sha256 of a file (identifies the data a calibration was fitted on without shipping it)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def held_out_index(paper: HumanReviewedPaper, seed: int) -> int:
    """The human the oracle returns for a paper: random, fixed by the seed and the paper id."""
    rng = random.Random(f"{seed}:{paper.id}")
    return rng.randrange(len(paper.human_ratings))


def _subscore(paper: HumanReviewedPaper, name: str, index: int, default: float) -> float:
    values = paper.human_subscores.get(name) or []
    value = values[index] if index < len(values) else None
    return float(value) if value is not None else default


def oracle_review(paper: HumanReviewedPaper, seed: int) -> PaperReview:
    """The review of one human reviewer, on the ICLR 2022 form's numeric fields."""
    index = held_out_index(paper, seed)
    rating = float(paper.human_ratings[index])
    subscores = {name: _subscore(paper, name, index, 2.5) for name in ICLR2022Review.subscore_fields}
    subscores["confidence"] = _subscore(paper, "confidence", index, 3.0)
    review: dict[str, Any] = {**subscores, "recommendation": rating}
    member = MemberReview(
        persona="human", review=review, rating=rating, subscores=subscores, decision=decision_for(rating)
    )
    return PaperReview(
        reviewer="oracle",
        form="iclr2022",
        title=paper.title,
        source=f"human review {index} of {paper.id}",
        reviews=[member],
        raw_rating=rating,
        subscores=subscores,
        decision=decision_for(rating),
        excluded_human=index,
    )


def dump_jsonl(rows: list[dict[str, Any]], path: Path) -> None:
    """Write rows as JSON lines (used by tests to make small data files)."""
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
