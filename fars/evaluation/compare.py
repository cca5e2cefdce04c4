"""Compare runs from their RunRecords alone: score statistics, funnel, usage, throughput, a verdict.

A comparison takes a baseline run and a candidate run. Scores are compared with Mann-Whitney U, a
bootstrap interval of the mean difference and Cliff's delta; when both runs share the seed and the
hypotheses, projects are paired by hypothesis and the paired differences are used instead. The
verdict is a *regression* when, at the configured confidence, the candidate's mean score is lower by
more than the configured margin (the one-sided bootstrap upper bound of the difference lies below
``-margin``); an *improvement* mirrors that. Otherwise the comparison says *no regression* only when
it could have seen one: the minimum detectable effect at the configured confidence and power (from
the runs' sizes, their spread, and the reviewer's test-retest noise) must not exceed the margin, and
the scores must vary at all. When they do not, the verdict is *inconclusive*: a gate that cannot
fail says so, rather than passing every change.

Scores from different judges are not compared: when the runs' reviewer model (``reviewer.model``, else
``llm.model``), review form or calibration differ, a difference of scores measures the judges as much as
the papers, so ``compare_runs`` names the difference and refuses a verdict (``CompareError``, exit 2)
unless ``other_judges=true`` (then it compares, with a note). A sweep over writer models with one fixed
``reviewer.model`` has one judge and compares as usual.

The reviewer's noise comes from ``noise`` (rating points, or a ``calibration.json`` / ``probe.json``
holding a ``reliability`` block), else from the runs' own ``review.json`` files (the spread of the
ensemble members' ratings of each paper), else it is not known and only the observed spread counts.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fars.evaluation import stats
from fars.run.records import RUN_RECORD_VERSION, RunRecord
from fars.run.summary import RUN_RECORD_FILE, RUN_RECORD_MAX_BYTES, is_paper
from fars.safe_files import read_file

log = logging.getLogger(__name__)

Verdict = Literal["regression", "improvement", "no regression", "inconclusive"]


class CompareError(ValueError):
    """Runs that cannot be compared; the message names the input and what to do."""


class CompareSettings(BaseModel):
    """How ``compare`` decides: margin and confidence of the gate, which score, resampling."""

    model_config = ConfigDict(extra="forbid")

    margin: float = Field(default=0.25, ge=0.0, description="rating points the mean may drop before it counts")
    confidence: float = Field(default=0.95, gt=0.5, lt=1.0)
    metric: Literal["auto", "raw", "calibrated"] = "auto"
    resamples: int = Field(default=10_000, ge=100)
    seed: int = 0
    min_papers: int = Field(default=2, ge=1, description="rated papers each run needs for a comparison")
    power: float = Field(default=0.8, ge=0.5, lt=1.0, description="power at which the detectable effect is sized")
    require_power: bool = Field(default=False, description="an inconclusive comparison fails the gate (exit 3)")
    noise: float | str | None = Field(
        default=None, description="the reviewer's test-retest SD in rating points, or a JSON with a reliability block"
    )
    other_judges: bool = Field(
        default=False, description="compare runs scored by different judges (reviewer model, form or calibration)"
    )


@dataclass
class LoadedRun:
    """A RunRecord with the folder it came from and a short label (sweep jobs: their overrides)."""

    label: str
    path: Path
    record: RunRecord
    overrides: list[str] = field(default_factory=list)


def _job_key(path: Path) -> tuple[Any, ...]:
    """Sort key: numeric folder names (sweep job numbers) in numeric order."""
    return tuple(int(part) if part.isdigit() else part for part in path.parts)


def _load_record(path: Path) -> RunRecord:
    try:
        record = RunRecord.model_validate_json(
            read_file(path.parent, path.name, max_bytes=RUN_RECORD_MAX_BYTES, allow_hard_links=True)
        )
    except (OSError, ValueError, ValidationError) as exc:
        raise CompareError(f"{path}: not a readable RunRecord ({type(exc).__name__}: {str(exc)[:200]})") from None
    return checked_record(path, record)


RATING_BOUND = 100.0  # ratings are on 1-10 scales; anything beyond this bound is damage, never a score


def checked_record(path: Path, record: RunRecord) -> RunRecord:
    """``record`` when a comparison can trust it; ``CompareError`` (exit 2: fail closed) when it cannot.

    Refused: a version this FARS does not know (a newer FARS wrote it), ratings that are not finite or
    beyond any rating scale (+-1e308 would turn every statistic into inf or NaN, and NaN compares as "no
    regression"), and a score list that disagrees with the projects' ratings. A stored mean that
    disagrees with its scores is not trusted: means are always recomputed from the scores. A version 1
    record, written before ``papers`` was stored, gets it counted from its projects (``is_paper``).
    """
    if record.version > RUN_RECORD_VERSION or record.version < 1:
        raise CompareError(
            f"{path}: RunRecord version {record.version}, this FARS reads versions 1 to {RUN_RECORD_VERSION}; "
            "compare it with the FARS that wrote it (upgrade FARS)"
        )
    ratings = [p.rating for p in record.projects if p.rating is not None]
    calibrated = [
        v for p in record.projects if p.review is not None and isinstance(v := p.review.calibrated_rating, int | float)
    ]
    for label, values in (("scores", record.scores), ("project ratings", ratings), ("calibrated ratings", calibrated)):
        bad = [v for v in values if not math.isfinite(v) or abs(v) > RATING_BOUND]
        if bad:
            raise CompareError(
                f"{path}: {label} hold {bad[0]!r}, not a rating (finite, within +-{RATING_BOUND:g}); "
                "the record is damaged or was edited: regenerate it from its ledger or rerun"
            )
    if sorted(record.scores) != sorted(ratings):
        raise CompareError(
            f"{path}: its scores {record.scores[:6]} disagree with its projects' ratings {ratings[:6]}; "
            "the record is damaged or was edited: regenerate it from its ledger or rerun"
        )
    if record.version == 1:
        record.papers = sum(1 for p in record.projects if is_paper(p.status))
    if record.scores and record.mean_score is not None:
        mean = sum(record.scores) / len(record.scores)
        if not math.isclose(record.mean_score, mean, rel_tol=1e-9, abs_tol=1e-9):
            log.warning(
                "%s: stored mean_score %r is not the mean of its scores (%.4f); using %.4f",
                path,
                record.mean_score,
                mean,
                mean,
            )
    return record


def _overrides(run_dir: Path) -> list[str]:
    saved = run_dir / ".hydra" / "overrides.yaml"
    if not saved.is_file():
        return []
    try:
        loaded = yaml.safe_load(saved.read_text(encoding="utf-8")) or []
    except yaml.YAMLError:
        return []
    return [str(o) for o in loaded if not str(o).startswith(("hydra.", "resume="))]


def load_runs(path_text: str) -> list[LoadedRun]:
    """The runs a path names: a ``run_record.json``, a run folder, or a sweep folder (every job in it)."""
    path = Path(path_text).expanduser()
    if path.is_file():
        return [LoadedRun(str(path.parent), path.parent, _load_record(path), _overrides(path.parent))]
    if not path.is_dir():
        raise CompareError(
            f"{path_text}: no such file or folder; give a run folder, its {RUN_RECORD_FILE} or a sweep folder"
        )
    if (path / RUN_RECORD_FILE).is_file():
        return [LoadedRun(path_text, path, _load_record(path / RUN_RECORD_FILE), _overrides(path))]
    found = sorted((p for p in path.rglob(RUN_RECORD_FILE) if len(p.relative_to(path).parts) <= 4), key=_job_key)
    if not found:
        raise CompareError(
            f"{path_text}: no {RUN_RECORD_FILE} in this folder or below; give the folder of a finished "
            "`fars run` (outputs/DATE/TIME) or of a sweep (multirun/DATE/TIME)"
        )
    runs = []
    for record_path in found:
        job_dir = record_path.parent
        overrides = _overrides(job_dir)
        name = str(job_dir.relative_to(path))
        label = f"{name}: {' '.join(overrides)}" if overrides else name
        runs.append(LoadedRun(label, job_dir, _load_record(record_path), overrides))
    return runs


@dataclass(frozen=True)
class ReviewScores:
    """What ``compare`` reads of one project's review: its scores and how to read the calibrated one."""

    rating: float | None
    calibrated: float | None
    calibration_status: str | None
    calibration_note: str | None
    ensemble: int
    injection_flagged: bool


def review_scores(project: Any) -> ReviewScores:
    """Every read of a project's review scores, in one place (``project.review``: a dict or a typed summary)."""
    review = project.review

    def get(key: str) -> Any:
        if review is None:
            return None
        return review.get(key) if isinstance(review, dict) else getattr(review, key, None)

    calibrated = getattr(project, "calibrated_rating", None)
    if calibrated is None:
        calibrated = get("calibrated_rating") if get("calibrated_rating") is not None else get("calibrated")
    ensemble = get("ensemble")
    return ReviewScores(
        rating=project.rating,
        calibrated=float(calibrated) if isinstance(calibrated, int | float) else None,
        calibration_status=get("calibration_status"),
        calibration_note=get("calibration_note"),
        ensemble=int(ensemble) if isinstance(ensemble, int | float) and ensemble >= 1 else 1,
        injection_flagged=bool(get("injection_flagged")),
    )


def calibrated_scores(record: RunRecord) -> list[float] | None:
    """Calibrated ratings of the rated papers, or None unless every rated paper has one."""
    values = []
    for project in record.projects:
        scores = review_scores(project)
        if scores.rating is None:
            continue
        if scores.calibrated is None:
            return None
        values.append(scores.calibrated)
    return values or None


class NoiseEstimate(BaseModel):
    """The reviewer's noise as it enters the power calculation: SD of one paper's score, and its source."""

    sd: float
    source: str


def noise_from_file(path: Path, ensemble: int = 1) -> NoiseEstimate:
    """The noise in a ``calibration.json`` or ``probe.json`` (its ``reliability`` block) or a bare one."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CompareError(f"noise={path}: not a readable JSON file ({exc})") from None
    block = data.get("reliability", data) if isinstance(data, dict) else None
    if not isinstance(block, dict) or not isinstance(block.get("within_sd"), int | float):
        raise CompareError(
            f"noise={path}: no reliability block with within_sd; give a calibration.json or probe.json that has one "
            "(an ensemble of 2+ or `fars probe retest=K`), or a number"
        )
    unit = block.get("unit", "review")
    sd = float(block["within_sd"]) / (math.sqrt(ensemble) if unit == "member" else 1.0)
    return NoiseEstimate(sd=sd, source=f"{path} ({block.get('source', 'reliability')})")


def noise_from_runs(runs: list[LoadedRun]) -> NoiseEstimate | None:
    """The spread of the ensemble members' ratings of each paper, read from the runs' review.json files."""
    from review.calibration.noise import reliability

    ratings: list[list[float]] = []
    members = []
    for run in runs:
        for project in run.record.projects:
            for artifact in project.artifacts:
                if artifact.kind != "review" or not artifact.path.endswith(".json"):
                    continue
                try:
                    review = json.loads((run.path / artifact.path).read_text(encoding="utf-8"))
                except (OSError, ValueError):
                    continue
                values = [
                    float(m["rating"]) for m in review.get("reviews", []) if isinstance(m.get("rating"), int | float)
                ]
                if len(values) >= 2:
                    ratings.append(values)
                    members.append(len(values))
    rel = reliability(ratings, unit="member", source="ensemble members", draws=0) if len(ratings) >= 2 else None
    if rel is None:
        return None
    ensemble = round(sum(members) / len(members))
    return NoiseEstimate(
        sd=rel.noise_of_score(ensemble),
        source=f"the spread of {ensemble} ensemble members' ratings over {rel.n_papers} reviews in the runs' review.json",
    )


def resolve_noise(setting: float | str | None, runs: list[LoadedRun]) -> NoiseEstimate | None:
    """The noise to size detectable effects with: the ``noise`` setting, else the runs' own reviews."""
    if isinstance(setting, int | float):
        return NoiseEstimate(sd=float(setting), source="the noise setting")
    if isinstance(setting, str) and setting.strip():
        try:
            return NoiseEstimate(sd=float(setting), source="the noise setting")
        except ValueError:
            return noise_from_file(Path(setting).expanduser())
    return noise_from_runs(runs)


@dataclass
class RunStats:
    """What one run achieved: papers, scores, funnel rates, usage per paper and throughput."""

    label: str
    status: str
    projects: int
    papers: int
    scores: list[float]
    calibrated: list[float] | None
    mean_score: float | None
    mean_calibrated: float | None
    funnel: dict[str, int]
    funnel_rates: dict[str, float | None]
    tokens_per_paper: float | None
    cost_per_paper: float | None
    minutes_per_paper: float | None
    papers_per_hour: float
    wall_s: float
    stage_seconds: dict[str, float]
    extra: dict[str, float | None] = field(default_factory=dict)


def _ratio(num: float, den: float) -> float | None:
    return num / den if den else None


def run_stats(run: LoadedRun) -> RunStats:
    """Summarise one run for the comparison table."""
    r = run.record
    papers = r.papers
    f = r.funnel
    calibrated = calibrated_scores(r)
    stage_totals: dict[str, float] = {}
    for p in r.projects:
        for stage, secs in p.stage_seconds.items():
            stage_totals[stage] = stage_totals.get(stage, 0.0) + secs
    extra: dict[str, float | None] = {}
    for name in ("grounded_number_rate", "verified_citation_rate"):  # optional fields of later records
        values = [v for p in r.projects if isinstance(v := getattr(p, name, None), int | float)]
        if values:
            extra[name] = sum(values) / len(values)
    return RunStats(
        label=run.label,
        status=r.status,
        projects=len(r.projects),
        papers=papers,
        scores=list(r.scores),
        calibrated=calibrated,
        mean_score=sum(r.scores) / len(r.scores) if r.scores else None,  # recomputed, never the stored mean
        mean_calibrated=sum(calibrated) / len(calibrated) if calibrated else None,
        funnel=f.model_dump(),
        funnel_rates={
            "screen_pass": _ratio(f.screened, f.hypotheses),
            "planned": _ratio(f.planned, len(r.projects)),
            "experimented": _ratio(f.experimented, f.planned),
            "written": _ratio(f.written, f.experimented),
            "reviewed": _ratio(f.reviewed, f.written),
            "papers_per_project": _ratio(papers, len(r.projects)),
        },
        tokens_per_paper=_ratio(r.totals.overall.total_tokens, papers),
        cost_per_paper=_ratio(r.totals.overall.cost_usd, papers),
        minutes_per_paper=_ratio(r.wall_s / 60, papers),
        papers_per_hour=r.papers_per_hour,
        wall_s=r.wall_s,
        stage_seconds={s: v / len(r.projects) for s, v in stage_totals.items()} if r.projects else {},
        extra=extra,
    )


def paired_scores(base: RunRecord, cand: RunRecord, metric: str) -> list[tuple[float, float]]:
    """(baseline, candidate) scores of projects on the same hypothesis, when both runs share the seed. Where a run
    has several papers on one hypothesis, the k-th in project order pairs with the other run's k-th (the same
    seed gives the same projects in the same order); only the first was paired before, the rest were dropped."""
    if base.config.get("seed") != cand.config.get("seed"):
        return []

    def by_hypothesis(record: RunRecord) -> dict[tuple[str, int], float]:
        scores: dict[tuple[str, int], float] = {}
        seen: dict[str, int] = {}
        for p in sorted(record.projects, key=lambda p: p.id):
            if not p.hypothesis:
                continue
            k = seen[p.hypothesis] = seen.get(p.hypothesis, -1) + 1  # counted rated or not, so the k-ths align
            read = review_scores(p)
            value = read.calibrated if metric == "calibrated" else read.rating
            if read.rating is not None and value is not None:
                scores[(p.hypothesis, k)] = float(value)
        return scores

    a, b = by_hypothesis(base), by_hypothesis(cand)
    return [(a[h], b[h]) for h in a if h in b]


@dataclass
class Comparison:
    """Baseline against candidate: the statistics and the verdict."""

    baseline: str
    candidate: str
    metric: str
    n_baseline: int
    n_candidate: int
    mean_baseline: float | None
    mean_candidate: float | None
    paired: bool
    n_pairs: int
    difference: stats.Interval | None
    mann_whitney_p: float | None  # two-sided
    regression_p: float | None  # one-sided: candidate lower (Wilcoxon when paired)
    cliffs_delta: float | None
    cliffs_magnitude: str | None
    verdict: Verdict
    reason: str
    raw_difference: float | None = None
    calibrated_difference: float | None = None
    power: stats.Power | None = None
    noise_sd: float | None = None
    noise_source: str | None = None
    notes: list[str] = field(default_factory=list)  # what a reader must know (calibrations marked, injections)


def _scores(s: RunStats, metric: str) -> list[float]:
    return (s.calibrated or []) if metric == "calibrated" else s.scores


def _notes(runs: list[LoadedRun], metric: str) -> list[str]:
    """Calibrated scores fitted under other settings, withheld calibrations and flagged papers, per run."""
    notes = []
    for run in runs:
        scores = [review_scores(p) for p in run.record.projects if p.rating is not None]
        marked = sorted(
            {s.calibration_note for s in scores if s.calibration_status == "other_settings" and s.calibration_note}
        )
        if metric == "calibrated" and marked:
            notes.append(f"{run.label}: calibrated scores marked: {'; '.join(marked)}")
        if any(s.calibration_status == "no_signal" for s in scores):
            notes.append(f"{run.label}: its calibration shows no signal on its own validation; raw scores compared")
        flagged = sum(1 for s in scores if s.injection_flagged)
        if flagged:
            notes.append(f"{run.label}: {flagged} paper(s) flagged for text aimed at the reviewer")
    return notes


def judge_of(record: RunRecord) -> dict[str, str]:
    """Who scored a run's papers: reviewer model, form and calibration (from its reviews, else its config)."""
    config: dict[str, Any] = record.config if isinstance(record.config, dict) else {}
    reviewer: dict[str, Any] = config["reviewer"] if isinstance(config.get("reviewer"), dict) else {}
    llm: dict[str, Any] = config["llm"] if isinstance(config.get("llm"), dict) else {}
    models, calibrations = set(), set()
    for project in record.projects:
        review = project.review
        if review is None:
            continue
        get = review.get if isinstance(review, dict) else lambda key, r=review: getattr(r, key, None)
        if get("reviewer"):
            models.add(str(get("reviewer")).removeprefix("model:"))
        if get("calibration"):
            calibrations.add(str(get("calibration")))
    configured = reviewer.get("models") or reviewer.get("model") or llm.get("model")
    model = (
        ", ".join(sorted(models)) if models else ("+".join(configured) if isinstance(configured, list) else configured)
    )
    calibration = ", ".join(sorted(calibrations)) if calibrations else reviewer.get("calibration")
    return {
        "reviewer model": str(model or "unknown"),
        "form": str(reviewer.get("form") or "unknown"),
        "calibration": str(calibration or "none"),
    }


def judge_differences(base: LoadedRun, cand: LoadedRun) -> list[str]:
    """How the judges of two runs differ, one line per difference (empty: one judge)."""
    a, b = judge_of(base.record), judge_of(cand.record)
    return [f"{key}: {a[key]} (baseline) vs {b[key]} (candidate)" for key in a if a[key] != b[key]]


def compare_runs(
    base: LoadedRun, cand: LoadedRun, settings: CompareSettings, noise: NoiseEstimate | None = None
) -> Comparison:
    """Compare a candidate run with a baseline run; raises CompareError when too few papers, or when the runs
    were scored by different judges (unless ``other_judges``)."""
    judges = judge_differences(base, cand)
    if judges and not settings.other_judges:
        raise CompareError(
            f"{cand.label} and {base.label} were scored by different judges ({'; '.join(judges)}): a difference "
            "of their scores measures the judges as much as the papers, so no verdict is given. Review both runs' "
            "papers with one judge (fix reviewer.model, reviewer.form and reviewer.calibration across the sweep), "
            "or pass compare.other_judges=true to compare anyway"
        )
    sa, sb = run_stats(base), run_stats(cand)
    metric = settings.metric
    if metric == "auto":
        metric = "calibrated" if sa.calibrated and sb.calibrated else "raw"
    if metric == "calibrated" and not (sa.calibrated and sb.calibrated):
        missing = base.label if not sa.calibrated else cand.label
        raise CompareError(f"{missing}: not every rated paper has a calibrated score; use --metric raw")
    a, b = _scores(sa, metric), _scores(sb, metric)
    raw_diff = sum(sb.scores) / len(sb.scores) - sum(sa.scores) / len(sa.scores) if sa.scores and sb.scores else None
    cal_diff = (
        sb.mean_calibrated - sa.mean_calibrated
        if sa.mean_calibrated is not None and sb.mean_calibrated is not None
        else None
    )
    common: dict[str, Any] = {
        "baseline": base.label,
        "candidate": cand.label,
        "metric": metric,
        "n_baseline": len(a),
        "n_candidate": len(b),
        "mean_baseline": sum(a) / len(a) if a else None,
        "mean_candidate": sum(b) / len(b) if b else None,
        "raw_difference": raw_diff,
        "calibrated_difference": cal_diff,
    }
    if not b and len(a) >= settings.min_papers:
        return Comparison(
            **common,
            paired=False,
            n_pairs=0,
            difference=None,
            mann_whitney_p=None,
            regression_p=None,
            cliffs_delta=None,
            cliffs_magnitude=None,
            verdict="regression",
            reason=f"the candidate produced no rated paper (baseline: {len(a)})",
        )
    for label, sample in ((base.label, a), (cand.label, b)):
        if len(sample) < settings.min_papers:
            raise CompareError(
                f"{label}: {len(sample)} rated paper(s), a comparison needs at least {settings.min_papers} per run; "
                "run more papers (pipeline.papers=N) or lower --min-papers"
            )
    pairs = paired_scores(base.record, cand.record, metric)
    paired = len(pairs) >= settings.min_papers
    diffs: list[float] = []
    if paired:
        diffs = [y - x for x, y in pairs]
        interval = stats.bootstrap_paired_difference(
            diffs, confidence=settings.confidence, resamples=settings.resamples, seed=settings.seed
        )
        one_sided = stats.wilcoxon_signed_rank(diffs, alternative="less").p_value
    else:
        interval = stats.bootstrap_mean_difference(
            a, b, confidence=settings.confidence, resamples=settings.resamples, seed=settings.seed
        )
        one_sided = stats.mann_whitney(a, b, alternative="less").p_value
    delta = stats.cliffs_delta(a, b)
    level = f"{settings.confidence:.0%}"
    floor = noise.sd if noise is not None else None
    power = stats.minimum_detectable_effect(
        a,
        b,
        differences=diffs if paired else None,
        confidence=settings.confidence,
        power=settings.power,
        noise_sd=floor,
    )
    constant = len(set(a) | set(b)) == 1
    if interval.upper < -settings.margin:
        verdict: Verdict = "regression"
        reason = (
            f"mean {metric} score lower by {-interval.estimate:.2f}; at {level} confidence by more than "
            f"{-interval.upper:.2f} (> margin {settings.margin})"
        )
    elif interval.lower > settings.margin:
        verdict = "improvement"
        reason = f"mean {metric} score higher by {interval.estimate:.2f}; at {level} confidence by more than {interval.lower:.2f}"
    elif constant:
        verdict = "inconclusive"
        reason = (
            f"every rated paper of both runs scored {a[0]:g}: the scores have no variance, so no drop could show "
            "(the reviewer cannot tell these runs apart)"
        )
    elif power.mde is None or power.mde > settings.margin:
        verdict = "inconclusive"
        size = "cannot be computed (" + (power.reason or "") + ")" if power.mde is None else f"is {power.mde:.2f}"
        reason = (
            f"difference {interval.estimate:+.2f}, but a drop of the margin {settings.margin} cannot be detected: the "
            f"minimum detectable effect at {level} confidence and {settings.power:.0%} power {size}"
        )
    else:
        verdict = "no regression"
        reason = (
            f"difference {interval.estimate:+.2f}; at {level} confidence not lower by more than the margin "
            f"{settings.margin} (one-sided bound {interval.upper:+.2f}; minimum detectable effect {power.mde:.2f})"
        )
    return Comparison(
        **common,
        paired=paired,
        n_pairs=len(pairs),
        difference=interval,
        mann_whitney_p=stats.mann_whitney(a, b).p_value,
        regression_p=one_sided,
        cliffs_delta=delta,
        cliffs_magnitude=stats.cliffs_magnitude(delta),
        verdict=verdict,
        reason=reason,
        power=power,
        noise_sd=floor,
        noise_source=noise.source if noise is not None else None,
        notes=_notes([base, cand], metric) + [f"different judges (other_judges=true): {d}" for d in judges],
    )


# -- text output ---------------------------------------------------------------------------------


def _fmt(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def _short(label: str, width: int = 40) -> str:
    return label if len(label) <= width else label[: width - 1] + "…"


def format_table(rows: list[RunStats], comparisons: dict[int, Comparison | str]) -> str:
    """One fixed-width table: a row per run, with its comparison against the baseline (row 0)."""
    header = [
        "#",
        "run",
        "status",
        "papers",
        "score",
        "calib",
        "diff",
        "interval",
        "MDE",
        "p(MW)",
        "cliff",
        "verdict",
        "tok/paper",
        "$/paper",
        "min/paper",
        "papers/h",
    ]
    lines = [header]
    for i, s in enumerate(rows):
        comp = comparisons.get(i)
        if isinstance(comp, Comparison):
            iv = comp.difference
            cells = [
                _fmt(iv.estimate, "+.2f") if iv else "-",
                f"[{iv.low:+.2f},{iv.high:+.2f}]" if iv else "-",
                _fmt(comp.power.mde if comp.power else None),
                _fmt(comp.mann_whitney_p, ".3f"),
                _fmt(comp.cliffs_delta, "+.2f"),
                comp.verdict + (" (paired)" if comp.paired else ""),
            ]
        elif isinstance(comp, str):
            cells = ["-", "-", "-", "-", "-", comp]
        else:
            cells = ["", "", "", "", "", "baseline" if i == 0 and len(rows) > 1 else ""]
        lines.append(
            [
                str(i),
                _short(s.label),
                s.status,
                f"{s.papers}/{s.projects}",
                _fmt(s.mean_score),
                _fmt(s.mean_calibrated),
                *cells,
                _fmt(s.tokens_per_paper, ",.0f"),
                _fmt(s.cost_per_paper, ".4f"),
                _fmt(s.minutes_per_paper, ".1f"),
                _fmt(s.papers_per_hour, ".1f"),
            ]
        )
    widths = [max(len(line[c]) for line in lines) for c in range(len(header))]
    text = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip() for line in lines]
    text.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(text)


def format_details(rows: list[RunStats], comparisons: dict[int, Comparison | str]) -> str:
    """Funnel rates, stage times and each comparison's statistics, below the table."""
    out = ["", "funnel rates (screen pass, planned, experimented, written, reviewed, papers/project):"]
    for i, s in enumerate(rows):
        rates = " ".join(_fmt(v, ".2f") for v in s.funnel_rates.values())
        stages = " ".join(f"{k}={v:.1f}s" for k, v in s.stage_seconds.items())
        extra = " ".join(f"{k}={_fmt(v)}" for k, v in s.extra.items())
        out.append(f"  {i}: {rates} | mean stage time {stages or '-'}{' | ' + extra if extra else ''}")
    for i, comp in comparisons.items():
        if isinstance(comp, str):
            out.append(f"\n{i} vs 0: not compared: {comp}")
            continue
        iv = comp.difference
        out.append(f"\n{i} vs 0: {comp.verdict.upper()}: {comp.reason}")
        out.append(
            f"  {comp.metric} scores n={comp.n_baseline}/{comp.n_candidate} mean {_fmt(comp.mean_baseline)} -> "
            f"{_fmt(comp.mean_candidate)}"
            + (f"; paired on {comp.n_pairs} shared hypotheses" if comp.paired else "; unpaired")
        )
        if iv is not None:
            out.append(
                f"  difference {iv.estimate:+.3f}, {iv.confidence:.0%} bootstrap interval [{iv.low:+.3f}, {iv.high:+.3f}]; "
                f"Mann-Whitney p={_fmt(comp.mann_whitney_p, '.4f')}; one-sided p(lower)={_fmt(comp.regression_p, '.4f')}; "
                f"Cliff's delta {_fmt(comp.cliffs_delta, '+.3f')} ({comp.cliffs_magnitude})"
            )
        pw = comp.power
        if pw is not None:
            floor = (
                f"; the reviewer's noise {comp.noise_sd:.2f} from {comp.noise_source}"
                if comp.noise_sd is not None
                else "; reviewer noise unknown (observed spread only; see --noise)"
            )
            size = "undefined: " + (pw.reason or "") if pw.mde is None else f"{pw.mde:.3f}"
            out.append(
                f"  minimum detectable effect {size} rating points at {pw.confidence:.0%} confidence and "
                f"{pw.power:.0%} power ({'paired' if pw.paired else 'unpaired'}, SD {pw.sd:.2f}, {pw.df:.0f} df{floor})"
            )
        for note in comp.notes:
            out.append(f"  note: {note}")
        if comp.calibrated_difference is not None and comp.metric == "raw":
            out.append(f"  calibrated difference {comp.calibrated_difference:+.3f}")
        if comp.raw_difference is not None and comp.metric == "calibrated":
            out.append(f"  raw difference {comp.raw_difference:+.3f}")
    return "\n".join(out)
