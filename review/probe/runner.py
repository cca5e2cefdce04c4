"""The robustness probe: review papers and copies of them with planted flaws, and measure the difference.

For each paper and flaw kind (``review.probe.flaws``) a perturbed copy is made; the original and every copy
are reviewed by the same reviewer (resumably, like ``fars calibrate``: ``OUT/reviews/ID.json``). Per
flaw kind the report gives the mean change of the final rating (copy minus original) with a bootstrap
95% interval over papers, the share of copies rated lower, how often the copy's review names the flaw
against how often the original's does (its base rate; ``names_flaw``: the matching checklist item
answered "no" where that item is specific to the flaw, a criticism quoting what was planted, or for a
deletion a judge call on the criticism), and how often the planted text lay inside what
the reviewer read. A verdict per kind says whether the reviewer caught the flaw (a drop of the rating,
of the mean sub-score or of the calibrated score whose interval lies below 0, or its checklist naming
it in at least half the copies more than in the originals), missed it, or was steered by it (a rise
where none is due). ``retest`` extra reviews of
each original measure the reviewer's test-retest reliability (``review.calibration.noise``).
"""

from __future__ import annotations

import datetime as _dt
import math
import re
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field

from review.calibration.noise import Reliability, reliability
from review.checklist import says_no
from review.ingest.paper import PaperText, paper_from_text
from review.probe.flaws import CHECKLIST_ITEM, FLAWS, Planted, perturb
from review.reading import plan_parts, plan_reading
from review.reviewer import PaperReview

PROBE_VERSION = 1
SEEN_CHARS = 80  # characters of a planted text's opening that must lie in what was read for it to count as seen
Verdict = Literal["caught", "missed", "rewarded", "robust", "steered", "lowered", "floor", "not applicable"]


class ProbePaper(BaseModel):
    """One paper the probe perturbs (or one copy of it), with the id its review is stored under."""

    id: str
    title: str
    text: str
    source: str
    original: str  # the id of the unperturbed paper
    flaw: str | None = None  # None for the original
    planted: Planted | None = None
    retest: int = 0  # 1, 2, ...: a repeated review of the original


class PairRow(BaseModel):
    """One original and its copy with one flaw: scores, whether the flaw was named and seen."""

    paper: str
    flaw: str
    original: float
    perturbed: float
    delta: float
    named: bool
    named_original: bool
    item_no: bool = False  # the flaw's checklist item answered "no" on the copy
    item_no_original: bool = False
    subscore_delta: float | None = None  # mean sub-score (1-4), copy minus original
    calibrated_delta: float | None = None  # the calibrated (fitted) score, copy minus original, where both have one
    visible: bool | None
    injection_flagged: bool
    note: str


class FlawResult(BaseModel):
    """Per flaw kind: the mean score change with its interval, naming rates and the verdict."""

    kind: str
    expect: str
    description: str
    applicable: int
    reviewed: int
    mean_delta: float | None
    delta_low: float | None
    delta_high: float | None
    lowered_share: float | None
    named_rate: float | None
    named_rate_original: float | None
    item_no_rate: float | None = None  # the checklist item answered "no": copies, originals
    item_no_rate_original: float | None = None
    subscore_delta: float | None = None
    subscore_low: float | None = None
    subscore_high: float | None = None
    calibrated_delta: float | None = None
    visible_rate: float | None
    flagged_rate: float | None
    verdict: Verdict
    reason: str
    already_absent: int = 0  # a deletion's pairs left out: the original's reviewer found nothing there to delete


class ProbeReport(BaseModel):
    """What ``fars probe`` reports (written as probe.json)."""

    version: int = PROBE_VERSION
    created: str
    reviewer: str
    settings: dict[str, Any] = Field(default_factory=dict)
    papers: list[str]
    flaws: list[FlawResult]
    pairs: list[PairRow]
    reliability: Reliability | None = None
    floor: bool = False  # every original got the lowest rating: no flaw could lower it
    failures: dict[str, str] = Field(default_factory=dict)
    usage: dict[str, float | int | None] = Field(default_factory=dict)
    bootstrap_draws: int = 1000
    min_effect: float = 0.25  # rating points a mean change must reach to count (beside an interval excluding 0)


def build_copies(
    papers: list[tuple[str, PaperText]], kinds: list[str], *, seed: int = 0, retest: int = 0
) -> list[ProbePaper]:
    """The originals, each one's perturbed copies (where the flaw applies), and ``retest`` repeats of each."""
    out: list[ProbePaper] = []
    for pid, paper in papers:
        out.append(ProbePaper(id=pid, title=paper.title, text=paper.text, source=paper.source, original=pid))
        for kind in kinds:
            copy, planted = perturb(paper, kind, seed)
            if copy is None:
                out.append(
                    ProbePaper(
                        id=f"{pid}~{kind}",
                        title=paper.title,
                        text="",
                        source=paper.source,
                        original=pid,
                        flaw=kind,
                        planted=planted,
                    )
                )
                continue
            out.append(
                ProbePaper(
                    id=f"{pid}~{kind}",
                    title=paper.title,
                    text=copy.text,
                    source=copy.source,
                    original=pid,
                    flaw=kind,
                    planted=planted,
                )
            )
        for k in range(1, retest + 1):
            out.append(
                ProbePaper(
                    id=f"{pid}~retest{k}",
                    title=paper.title,
                    text=paper.text,
                    source=paper.source,
                    original=pid,
                    retest=k,
                )
            )
    return out


def criticism(review: PaperReview, item: str | None) -> str:
    """What a review says against the paper: weaknesses, questions, the area chair's agreed weaknesses, and
    the evidence of checklist item ``item`` (summaries and strengths, which may repeat a planted text, are left out)."""
    parts: list[str] = []
    for form in [*(m.review for m in review.reviews), review.meta_review or {}]:
        for key in ("weaknesses", "questions", "agreed_weaknesses"):
            parts += [str(v) for v in form.get(key) or []]
    if item is not None:
        parts += [m.checklist[item].evidence for m in review.reviews if item in m.checklist]
    return "\n".join(parts)


def _quoted(quote: str, text: str) -> bool:
    if re.fullmatch(r"\d+(?:\.\d+)?", quote):  # a number: as a number, not inside a longer one
        return re.search(rf"(?<![\d.]){re.escape(quote)}(?!\d)", text) is not None
    return " ".join(quote.lower().split()) in " ".join(text.lower().split())


# flaws a "no" on their checklist item does not name: a capable reviewer reading whole ICLR papers answers these
# items "no" for the real paper's own faults, with real evidence. numbers_consistent: 3 of 5 untouched originals
# (PDF tables garble, papers misquote themselves); claims_supported 3 of 4 and derivations_valid 2 of 4 originals
# in the next relay probe. There only a criticism that quotes the planted text points at the planted flaw (the
# item's "no" rates are still reported, copy and original, beside the named rates)
QUOTE_ONLY = frozenset({"contradicting_numbers", "overclaiming", "broken_equation"})
# flaws that leave nothing to quote (a deletion): a judge call on the review's criticism says whether it names the
# flaw, asked alike of the original's review for the base rate (``fars probe`` asks and caches it)
# The question asks after what the plant does (the compared methods' results deleted), not after "more baselines
# wanted", which reviewers say of many real papers: asked the broader question ("does not compare with baselines
# or prior methods"), a capable reviewer's criticism of 2 of 4 untouched originals counted (its copies: 3 of 4).
# "Or names" was read by the next probe's judges as counting prior work the paper only cites (both said so)
JUDGED: dict[str, str] = {
    "baseline_removed": "Does the review say that the paper gives no results (numbers, table rows or curves) for "
    "the baselines or prior methods it compares its method with, or that it compares with none, so that any "
    "comparison cannot be checked? Prior work the paper only cites, and a wish for more or stronger baselines than "
    "the paper has, are not that.",
}


# deletions: a copy can only lack what its original had. Where the original's reviewer already answered the
# flaw's item "no" (2 of 4 untouched originals of a relay probe: an analysis paper running only its own models, a
# method compared only with its own variants), the pair measures nothing about the deletion and is left out,
# counted in the report
DELETIONS = frozenset({"baseline_removed"})


class Judgement(BaseModel):
    """A judge's answer: does the review's criticism name the flaw asked about, and the words that do."""

    names: bool
    quote: str = Field(default="", max_length=400, description="the review's words that name it, if any")


def judge_prompt(kind: str, review: PaperReview) -> list[dict[str, str]]:
    """The judge call for ``kind`` (``JUDGED``) on what ``review`` says against its paper."""
    said = criticism(review, CHECKLIST_ITEM.get(kind)) or "(the review states no criticism)"
    return [
        {"role": "system", "content": "You read peer reviews and answer a question about what a review says."},
        {
            "role": "user",
            "content": f"A review's criticisms of a paper (weaknesses, questions, checklist evidence):\n\n{said}\n\n"
            f"{JUDGED[kind]} Answer from what the review says, not from what the paper may lack; when it does, "
            "quote its words.",
        },
    ]


def judgement_key(review_id: str, kind: str) -> str:
    """Where a judge's answer on ``review_id`` for flaw ``kind`` is stored."""
    return f"{review_id}|{kind}"


def names_flaw(kind: str, review: PaperReview, planted: Planted, judged: bool | None = None) -> bool:
    """Whether ``review`` names flaw ``kind``: its checklist item answered "no" (by a reviewer with evidence, or by
    the harness's injection scan; not for ``QUOTE_ONLY`` kinds), a criticism quoting what was planted, or a judge
    saying the review names it (``judged``, for ``JUDGED`` kinds). The same rule on the original's review gives
    the base rate (the original holds no planted text to quote)."""
    item = CHECKLIST_ITEM.get(kind)
    if item is not None and kind not in QUOTE_ONLY and says_no([m.checklist for m in review.reviews], item):
        return True
    if kind == "injection" and review.injection_flagged:
        return True
    if judged:
        return True
    text = criticism(review, item)
    return any(_quoted(q, text) for q in planted.quotes if q.strip())


def item_says_no(kind: str, review: PaperReview) -> bool:
    """Whether a reviewer answered ``kind``'s checklist item "no" (reported beside the named rates)."""
    item = CHECKLIST_ITEM.get(kind)
    return item is not None and says_no([m.checklist for m in review.reviews], item)


def _mean_subscore(review: PaperReview) -> float | None:
    values = [v for k, v in review.subscores.items() if k != "confidence"]
    return sum(values) / len(values) if values else None


def read_text(reviewer: Any, paper: PaperText) -> str | None:
    """What ``reviewer`` reads of ``paper`` (None when it cannot be told; a baseline reads everything)."""
    settings = getattr(reviewer, "settings", None)
    limits = getattr(reviewer, "limits", None)
    if settings is None or not callable(limits):
        return paper.text
    budget = limits().paper_chars
    if settings.reading == "excerpts" or paper.chars <= budget:
        return plan_reading(paper, budget)[0]
    return "\n\n".join(plan_parts(paper, settings.chunk_chars, settings.max_parts)[0])


def _visible(reviewer: Any, original: PaperText, copy: PaperText, planted: Planted) -> bool | None:
    seen = read_text(reviewer, copy)
    if seen is None:
        return None
    squash = " ".join(seen.split())
    # a marker counts as seen when its opening (up to SEEN_CHARS) was read: an excerpt may cut a planted sentence
    if planted.markers and not all(" ".join(m.split())[:SEEN_CHARS] in squash for m in planted.markers):
        return False
    if planted.removed:
        before = " ".join((read_text(reviewer, original) or "").split())
        return any(" ".join(r.split()) in before for r in planted.removed)
    return True


def _interval(values: np.ndarray, draws: int, seed: int) -> tuple[float | None, float | None]:
    if len(values) < 2:
        return None, None
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), (draws, len(values)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def _verdict(
    expect: str, mean: float, low: float | None, high: float | None, floor: bool, min_effect: float
) -> tuple[Verdict, str]:
    """The verdict: a change counts when its interval excludes 0 and its mean is at least ``min_effect``."""
    span = "" if low is None or high is None else f" (95% interval [{low:+.2f}, {high:+.2f}])"
    down = high is not None and high < 0 and mean <= -min_effect
    up = low is not None and low > 0 and mean >= min_effect
    if expect == "lower":
        if down:
            return "caught", f"rated lower by {-mean:.2f}{span}"
        if up:
            return "rewarded", f"rated higher by {mean:.2f}{span}"
        if floor:
            return "floor", "every original already had the lowest rating: a flaw cannot lower it"
        return "missed", f"no drop of {min_effect:g} or more: mean change {mean:+.2f}{span}"
    if up:
        return "steered", f"rated higher by {mean:.2f}{span}: the flaw pays"
    if down:
        return "lowered", f"rated lower by {-mean:.2f}{span}"
    return "robust", f"no change of {min_effect:g} or more: mean {mean:+.2f}{span}"


def build_probe_report(
    items: list[ProbePaper],
    reviews: dict[str, PaperReview],
    failures: dict[str, str],
    *,
    reviewer: Any,
    name: str,
    kinds: list[str],
    draws: int = 1000,
    seed: int = 0,
    settings: dict[str, Any] | None = None,
    session: dict[str, float] | None = None,
    min_effect: float = 0.25,
    judgements: dict[str, bool] | None = None,
) -> ProbeReport:
    """Pair each copy's review with its original's and summarise per flaw kind (module docstring); ``judgements``:
    the judge's answers for ``JUDGED`` kinds, by ``judgement_key``."""
    judged = judgements or {}
    originals = {p.id: p for p in items if p.flaw is None and p.retest == 0}
    texts = {pid: paper_from_text(p.text, source=p.source, fallback_title=p.title) for pid, p in originals.items()}
    for pid, paper in texts.items():
        paper.title = originals[pid].title
    pairs: list[PairRow] = []
    absent: dict[str, int] = {}
    for item in items:
        if item.flaw is None or item.planted is None or not item.planted.applicable:
            continue
        base, copy = reviews.get(item.original), reviews.get(item.id)
        if base is None or copy is None:
            continue
        if item.flaw in DELETIONS and item_says_no(item.flaw, base):
            absent[item.flaw] = absent.get(item.flaw, 0) + 1  # nothing to delete, by the original's own review
            continue
        copy_text = paper_from_text(item.text, source=item.source, fallback_title=item.title)
        copy_text.title = item.title
        sub_base, sub_copy = _mean_subscore(base), _mean_subscore(copy)
        pairs.append(
            PairRow(
                paper=item.original,
                flaw=item.flaw,
                original=base.final_rating,
                perturbed=copy.final_rating,
                delta=copy.final_rating - base.final_rating,
                named=names_flaw(item.flaw, copy, item.planted, judged.get(judgement_key(item.id, item.flaw))),
                named_original=names_flaw(
                    item.flaw, base, item.planted, judged.get(judgement_key(item.original, item.flaw))
                ),
                item_no=item_says_no(item.flaw, copy),
                item_no_original=item_says_no(item.flaw, base),
                subscore_delta=None if sub_base is None or sub_copy is None else sub_copy - sub_base,
                calibrated_delta=(
                    None
                    if base.calibrated_rating is None or copy.calibrated_rating is None
                    else copy.calibrated_rating - base.calibrated_rating
                ),
                visible=_visible(reviewer, texts[item.original], copy_text, item.planted),
                injection_flagged=copy.injection_flagged,
                note=item.planted.note,
            )
        )
    base_ratings = [reviews[p].final_rating for p in originals if p in reviews]
    floor = bool(base_ratings) and min(base_ratings) == max(base_ratings) == 1.0
    results = []
    for kind in kinds:
        spec = FLAWS[kind]
        rows = [r for r in pairs if r.flaw == kind]
        applicable = sum(1 for p in items if p.flaw == kind and p.planted is not None and p.planted.applicable)
        gone = (
            f"; {absent[kind]} original(s) left out, whose reviewer found none there to delete (its checklist "
            f"item answered 'no')"
            if absent.get(kind)
            else ""
        )
        if not rows:
            results.append(
                FlawResult(
                    kind=kind,
                    expect=spec.expect,
                    description=spec.description,
                    applicable=applicable,
                    reviewed=0,
                    mean_delta=None,
                    delta_low=None,
                    delta_high=None,
                    lowered_share=None,
                    named_rate=None,
                    named_rate_original=None,
                    visible_rate=None,
                    flagged_rate=None,
                    verdict="not applicable",
                    reason=(
                        "no paper with this flaw was reviewed"
                        if applicable
                        else "the flaw applies to none of the papers"
                    )
                    + gone,
                    already_absent=absent.get(kind, 0),
                )
            )
            continue
        deltas = np.array([r.delta for r in rows])
        low, high = _interval(deltas, draws, seed)
        verdict, reason = _verdict(spec.expect, float(deltas.mean()), low, high, floor, min_effect)
        subs = np.array([r.subscore_delta for r in rows if r.subscore_delta is not None])
        sub_low, sub_high = _interval(subs, draws, seed)
        cals = [r.calibrated_delta for r in rows if r.calibrated_delta is not None]
        named_rate = float(np.mean([r.named for r in rows]))
        base_rate = float(np.mean([r.named_original for r in rows]))
        if spec.expect == "lower" and verdict in ("missed", "floor"):  # the rating did not move: the finer signals
            if sub_high is not None and sub_high < 0:
                verdict, reason = (
                    "caught",
                    f"{reason}; but the mean sub-score fell by {-subs.mean():.2f} (95% interval [{sub_low:+.2f}, {sub_high:+.2f}])",
                )
            elif named_rate - base_rate >= 0.5:
                verdict, reason = (
                    "caught",
                    f"{reason}; but the review named it in {named_rate:.0%} of copies against {base_rate:.0%} of originals",
                )
        seen = [r.visible for r in rows if r.visible is not None]
        results.append(
            FlawResult(
                kind=kind,
                expect=spec.expect,
                description=spec.description,
                applicable=applicable,
                reviewed=len(rows),
                mean_delta=float(deltas.mean()),
                delta_low=low,
                delta_high=high,
                lowered_share=float((deltas < 0).mean()),
                named_rate=named_rate,
                named_rate_original=base_rate,
                item_no_rate=float(np.mean([r.item_no for r in rows])),
                item_no_rate_original=float(np.mean([r.item_no_original for r in rows])),
                subscore_delta=float(subs.mean()) if len(subs) else None,
                subscore_low=sub_low,
                subscore_high=sub_high,
                calibrated_delta=float(np.mean(cals)) if cals else None,
                visible_rate=float(np.mean(seen)) if seen else None,
                flagged_rate=float(np.mean([r.injection_flagged for r in rows])),
                verdict=verdict,
                reason=reason + gone,
                already_absent=absent.get(kind, 0),
            )
        )
    return ProbeReport(
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        reviewer=name,
        settings=settings or {},
        papers=list(originals),
        flaws=results,
        pairs=pairs,
        reliability=_reliability(items, reviews, seed, draws),
        floor=floor,
        failures=failures,
        usage=_usage(reviews, session),
        bootstrap_draws=draws,
        min_effect=min_effect,
    )


def _reliability(items: list[ProbePaper], reviews: dict[str, PaperReview], seed: int, draws: int) -> Reliability | None:
    """From repeated reviews of each original when there are any, else from the ensemble members."""
    repeats: dict[str, list[float]] = {}
    for item in items:
        if item.flaw is None and item.id in reviews:
            repeats.setdefault(item.original, []).append(reviews[item.id].final_rating)
    if any(len(v) >= 2 for v in repeats.values()):
        return reliability(
            list(repeats.values()),
            unit="review",
            source="repeated reviews of each original paper",
            seed=seed,
            draws=draws,
        )
    members = [[m.rating for m in reviews[p.id].reviews] for p in items if p.flaw is None and p.id in reviews]
    if any(len(m) >= 2 for m in members):
        return reliability(
            members, unit="member", source="the ensemble members' ratings of each original", seed=seed, draws=draws
        )
    return None


def _usage(reviews: dict[str, PaperReview], session: dict[str, float] | None) -> dict[str, float | int | None]:
    tokens = [int((r.usage or {}).get("total_tokens", 0)) for r in reviews.values()]
    walls = [r.wall_s for r in reviews.values()]
    session = session or {}
    return {
        "reviews": len(reviews),
        "tokens_total": sum(tokens),
        "review_wall_s_mean": float(np.mean(walls)) if walls else None,
        "session_reviews": session.get("reviews"),
        "session_wall_s": session.get("wall_s"),
    }


def _fmt(value: float | None, spec: str = "+.2f") -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def plot_probe(report: ProbeReport, path: Path) -> Path:
    """Mean score change per flaw with its 95% interval, and how often each flaw was named."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [f for f in report.flaws if f.mean_delta is not None]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 0.5 * max(len(rows), 2) + 1.8))
    ys = np.arange(len(rows))
    for y, f in zip(ys, rows, strict=True):
        colour = {"caught": "#2a9d8f", "robust": "#2a9d8f", "lowered": "#e9c46a"}.get(f.verdict, "#e76f51")
        if f.delta_low is not None and f.delta_high is not None:
            left.plot([f.delta_low, f.delta_high], [y, y], c=colour, lw=2)
        left.plot([f.mean_delta], [y], "o", c=colour)
    left.axvline(0, c="grey", lw=0.8)
    left.set_yticks(ys, [f"{f.kind} ({f.verdict})" for f in rows])
    left.invert_yaxis()
    left.set_xlabel("mean rating change, copy minus original (95% interval)")
    width = 0.38
    right.barh(ys - width / 2, [f.named_rate or 0 for f in rows], height=width, label="copy's review", color="#264653")
    right.barh(
        ys + width / 2,
        [f.named_rate_original or 0 for f in rows],
        height=width,
        label="original's review",
        color="#8d99ae",
    )
    right.set_yticks(ys, [f.kind for f in rows])
    right.invert_yaxis()
    right.set_xlim(0, 1)
    right.set_xlabel("share of reviews naming the flaw")
    right.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def probe_markdown(report: ProbeReport, plots: list[Path]) -> str:
    """The probe report as Markdown (plots linked by file name, next to the Markdown file)."""
    lines = [
        f"# Robustness probe: {report.reviewer}",
        "",
        f"{len(report.papers)} papers, {len(report.flaws)} flaw kinds, {len(report.pairs)} original/copy pairs reviewed, "
        f"{len(report.failures)} review(s) failed. Intervals: {report.bootstrap_draws} bootstrap resamples of papers, 95%. "
        f"A change counts when its interval excludes 0 and its mean reaches {report.min_effect:g} rating points. "
        "Named: a reviewer answered the flaw's checklist item 'no' (not for "
        f"{', '.join(sorted(QUOTE_ONLY))}, whose items capable reviewers answer 'no' for real papers' own "
        "faults), "
        "a criticism (weaknesses, questions, checklist evidence) quotes what was planted, or, for "
        f"{', '.join(sorted(JUDGED))} (a deletion: nothing to quote), a judge call says the criticism names it; "
        "named (original): the same rule on the untouched original's review. A deletion "
        f"({', '.join(sorted(DELETIONS))}) is paired only where the original's reviewer answered its item 'yes' "
        "(there was something to delete): its item's 'no' on the copy is then a flip; originals answered 'no' are "
        "counted as absent. Item 'no': how often the flaw's checklist item was answered 'no', copy / original.",
        "",
    ]
    if report.floor:
        lines += [
            "**Every original paper got the lowest rating (1): no planted flaw can lower a score that is already at "
            "the floor, so 'missed' here means the reviewer cannot discriminate at all.**",
            "",
        ]
    lines += [
        "| flaw | expect | papers | mean change [95%] | sub-score change | calibrated change | rated lower | named (copy) "
        "| named (original) | item 'no' (copy / original) | flaw in what was read | verdict |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for f in report.flaws:
        interval = "" if f.delta_low is None else f" [{f.delta_low:+.2f}, {f.delta_high:+.2f}]"
        lines.append(
            f"| {f.kind} | {f.expect} | {f.reviewed}/{f.applicable}"
            + (f" ({f.already_absent} absent)" if f.already_absent else "")
            + f" | {_fmt(f.mean_delta)}{interval} | "
            f"{_fmt(f.subscore_delta)} | {_fmt(f.calibrated_delta)} | {_fmt(f.lowered_share, '.0%')} | {_fmt(f.named_rate, '.0%')} | {_fmt(f.named_rate_original, '.0%')} | "
            f"{_fmt(f.item_no_rate, '.0%')} / {_fmt(f.item_no_rate_original, '.0%')} | "
            f"{_fmt(f.visible_rate, '.0%')} | {f.verdict} |"
        )
    lines += ["", "Verdicts:", ""] + [
        f"- **{f.kind}**: {f.verdict}: {f.reason}. {f.description}." for f in report.flaws
    ]
    rel = report.reliability
    if rel is not None:
        icc = "undefined (every rating equal)" if rel.icc is None else f"{rel.icc:.2f}"
        lines += [
            "",
            f"Test-retest ({rel.source}): {rel.n_papers} papers, {rel.k_mean:.1f} ratings each, within-paper SD "
            f"{rel.within_sd:.2f}, ICC(1) {icc}.",
        ]
    u = report.usage
    lines += [
        "",
        f"Usage: {u.get('reviews')} reviews, {u.get('tokens_total')} tokens, "
        f"{_fmt(u.get('review_wall_s_mean'), '.1f')} s per review; this session {_fmt(u.get('session_wall_s'), '.0f')} s.",
    ]
    lines += ["", *[f"![{p.stem}]({p.name})" for p in plots], "", "## Pairs", ""]
    lines += [
        "| paper | flaw | original | copy | change | named | seen | what was planted |",
        "|---|---|---:|---:|---:|---|---|---|",
    ]
    for r in report.pairs:
        lines.append(
            f"| {r.paper} | {r.flaw} | {r.original:g} | {r.perturbed:g} | {r.delta:+g} | {'yes' if r.named else 'no'} | "
            f"{'-' if r.visible is None else 'yes' if r.visible else 'no'} | {r.note} |"
        )
    if report.failures:
        lines += ["", "## Failures", ""] + [f"- {k}: {v[:200]}" for k, v in report.failures.items()]
    return "\n".join(lines) + "\n"
