"""``fars calibrate [KEY=VALUE ...]``: measure the reviewer against human reviews, optionally fit.

Composes ``conf/calibrate.yaml``; reviews ``limit`` papers of ``data`` (a JSONL of papers with human
reviews) concurrently, cached and resumable (``out=`` an earlier folder continues it), then writes
``calibration.json``, ``calibration.md`` with plots, and a W&B run (offline by default). With
``fit=true`` it also fits a calibration model on the reviews (nested k-fold CV) and writes
``calibration_model.json`` (and to ``save_to`` when given, e.g. ``review/calibration/fitted/default-iclr2025.json``),
and the baselines fitted on every reviewed paper (``baseline-length.json``, ``baseline-bow.json``, the
models ``reviewer=length|bow`` ship). Every report shows the ``baselines`` (text length, bag of words)
cross-validated on the same folds beside the reviewer, each score's Spearman controlling for length,
and a verdict per baseline. ``reviewer=oracle`` returns one human's rating per paper: the harness
check; ``reviewer=length`` or ``bow`` measures a shipped baseline as a reviewer.
Exit status: 0 done, 1 too few papers reviewed for metrics, 2 bad input or config.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import logging
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field
from pydantic.dataclasses import dataclass

from fars.commands.configured import UsageError, track_report
from fars.config import LiteratureConfig, LLMConfig, TrackerConfig
from review.settings import ReviewerConfig

USAGE = """usage: fars calibrate [KEY=VALUE ...]

Review papers that have human reviews and report agreement with the humans (JSON, Markdown, W&B).
  fars calibrate reviewer=oracle limit=null           the harness check: one human against the others
  fars calibrate limit=30 llm.local.n_threads=1       the embedded model on 30 dev papers
  fars calibrate out=outputs/calibrate/x fit=true     continue a run; fit and save a calibration model
  fars calibrate reviewer=length limit=null            the shipped text-length baseline as the reviewer
exit status: 0 done, 1 too few papers reviewed, 2 bad input or config
"""
log = logging.getLogger("fars.calibrate")
Baseline = Literal["length", "bow"]


def _all_baselines() -> list[Baseline]:
    return ["length", "bow"]


@dataclass(config=ConfigDict(extra="forbid"))
class CalibrateConfig:
    """The composed config of ``fars calibrate``."""

    data: str = "../shared/data/iclr2022/dev.jsonl"
    limit: int | None = Field(default=30, ge=3)  # papers drawn at random (seeded); null: all
    seed: int = 0
    concurrency: int = Field(default=1, ge=1, le=64)  # papers reviewed at once
    bootstrap: int = Field(default=1000, ge=50)
    threshold: float = Field(default=5.5, ge=1, le=10)  # score at or above: predicted accept
    out: str | None = None  # output folder; null: outputs/calibrate/DATE/TIME
    fit: bool = False
    folds: int = Field(default=5, ge=2, le=20)
    fit_name: str | None = None  # name of the fitted model; null: <model>-<form>
    save_to: str | None = None  # also write the fitted model here
    baselines: list[Baseline] = Field(default_factory=_all_baselines)  # fitted on the same folds, shown beside
    llm: LLMConfig = Field(default_factory=LLMConfig)
    reviewer: ReviewerConfig = Field(default_factory=ReviewerConfig)
    literature: LiteratureConfig = Field(
        default_factory=lambda: LiteratureConfig(backend="none")
    )  # no search: dev papers
    tracker: TrackerConfig = Field(default_factory=TrackerConfig)


def main(args: list[str]) -> int:
    """Entry point of ``fars calibrate``."""
    if any(a in ("-h", "--help") for a in args):
        print(USAGE)
        return 0
    stray = [a for a in args if "=" not in a]
    if stray:
        raise UsageError(f"arguments must be KEY=VALUE overrides (got {stray}); see `fars calibrate --help`")
    from fars.commands.configured import compose_config, listing
    from fars.llm.endpoint import api_base_problems
    from fars.stages.reviewing import reviewer_problems

    cfg, raw = compose_config("calibrate", args, CalibrateConfig)
    if cfg.fit and cfg.reviewer.kind in ("length", "bow"):
        raise UsageError(
            f"reviewer={cfg.reviewer.kind} is a fitted baseline, its rating already a prediction of the human mean; "
            "fit=true fits a calibration for a model reviewer (and writes baseline-length.json and baseline-bow.json "
            "from the papers it reviewed)"
        )
    problems = [*api_base_problems(cfg.llm), *reviewer_problems(cfg.reviewer, allow_oracle=True)]
    if problems:  # before any paper is read or any model called
        raise UsageError(listing(problems))
    from review.calibration.humans import DataError, file_sha256, load_papers, select_papers

    try:
        papers = select_papers(load_papers(cfg.data), cfg.limit, cfg.seed)
    except DataError as exc:
        raise UsageError(str(exc)) from None
    stamp = _dt.datetime.now().strftime("%Y-%m-%d/%H-%M-%S")
    out = Path(cfg.out) if cfg.out else Path("outputs") / "calibrate" / stamp
    out.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("LiteLLM", "httpx", "wandb"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    data_info = {"path": cfg.data, "sha256": file_sha256(cfg.data), "selected_ids": [p.id for p in papers]}
    return asyncio.run(_calibrate(cfg, raw, papers, out, data_info))


async def _calibrate(
    cfg: CalibrateConfig, raw: dict[str, Any], papers: list[Any], out: Path, data: dict[str, Any]
) -> int:
    from fars.context import call_context
    from fars.llm.client import LLMClient
    from fars.run.ledger import Ledger
    from fars.stages.reviewing import build_reviewer, judge_model
    from review.calibration.harness import build_report, review_all
    from review.calibration.humans import oracle_review

    oracle = cfg.reviewer.kind == "oracle"
    baseline = cfg.reviewer.kind in ("length", "bow")
    form = "iclr2022" if oracle else cfg.reviewer.form
    judge = judge_model(cfg.reviewer, cfg.llm.model)  # the calibration is fitted for this reviewer model
    name = "oracle" if oracle else f"baseline:{cfg.reviewer.kind}" if baseline else f"model:{judge}"
    ledger = Ledger(out / "ledger.sqlite")
    client = None if oracle or baseline else LLMClient(cfg.llm, ledger)
    try:
        reviewer = (
            None
            if oracle
            else build_reviewer(client, cfg.reviewer, cfg.literature, top_k=cfg.literature.top_k, model=cfg.llm.model)
        )

        async def review_one(paper: Any) -> Any:
            if oracle:
                return oracle_review(paper, cfg.seed)
            from review.ingest.paper import paper_from_text

            assert reviewer is not None
            with call_context(paper.id, "review"):
                result = await reviewer.review(
                    paper_from_text(paper.text, source=f"{cfg.data}#{paper.id}"), paper_id=paper.id
                )
            usage = ledger.usage(project_id=paper.id).get("")
            if usage is not None:
                result.usage = usage.model_dump() | {"total_tokens": usage.total_tokens}
            return result

        (out / "config.json").write_text(_json(raw), encoding="utf-8")
        reviews, failures, session = await review_all(papers, review_one, out, concurrency=cfg.concurrency)
    finally:
        if client is not None:
            client.close()
    fit: dict[str, Any] | None = None
    if cfg.fit:
        fit = {
            "name": cfg.fit_name or ("oracle" if oracle else f"{judge.replace('/', '-')}-{form}"),
            "folds": cfg.folds,
            "fitted_on": {
                "data": Path(cfg.data).name,
                "data_sha256": data["sha256"],
                "reviewer_settings": raw.get("reviewer"),
                "model": judge,
            },
        }
    notes = []
    fitted_model = getattr(reviewer, "model", None) if baseline else None
    if fitted_model is not None and fitted_model.fitted_on.get("data_sha256") == data["sha256"]:
        notes.append(
            f"the {cfg.reviewer.kind} baseline reviewer was fitted on this very data file: its figures are in-sample "
            "(the cross-validated baselines in the same table are not)"
        )
    try:
        report, fitted = build_report(
            papers,
            reviews,
            failures,
            reviewer=name,
            form=form,
            data={k: v for k, v in data.items() if k != "selected_ids"},
            threshold=cfg.threshold,
            draws=cfg.bootstrap,
            seed=cfg.seed,
            fit=fit,
            session=session,
            folds=cfg.folds,
            baselines=tuple(cfg.baselines),
            notes=notes,
        )
    except ValueError as exc:
        print(f"fars calibrate: {exc}", file=sys.stderr)
        return 1
    if cfg.fit and fit is not None:
        _save_baselines([p for p in papers if p.id in reviews], out, fit["fitted_on"])
    from review.calibration.report import plot_metrics, plot_scatter, report_markdown

    plots = [plot_scatter(report, out / "scatter.png"), plot_metrics(report, out / "metrics.png")]
    (out / "calibration.json").write_text(report.model_dump_json(indent=1), encoding="utf-8")
    (out / "calibration.md").write_text(report_markdown(report, plots), encoding="utf-8")
    if fitted is not None:
        fitted.save(out / "calibration_model.json")
        if cfg.save_to:
            fitted.save(Path(cfg.save_to))
    _track(cfg.tracker, report, out, raw)
    _print_summary(report, out)
    return 0


def _save_baselines(done: list[Any], out: Path, fitted_on: dict[str, Any]) -> None:
    """Fit the baselines on every reviewed paper (target: the mean of all its humans) and write them."""
    import numpy as np

    from review.calibration.baselines import fit_all, save_baseline

    targets = np.array([p.mean_rating for p in done])
    info = {k: v for k, v in fitted_on.items() if k in ("data", "data_sha256")}
    for kind, model in fit_all([p.text for p in done], targets, fitted_on=info).items():
        save_baseline(model, out / f"baseline-{kind}.json")


def _json(value: Any) -> str:
    import json

    return json.dumps(value, indent=1, default=str)


def _print_summary(report: Any, out: Path) -> None:
    def show(group: Any, metric: str) -> str:
        v = group.metrics[metric]
        if v["value"] is None:
            return "undefined"
        ci = "" if v["low"] is None else f" [{v['low']:.2f}, {v['high']:.2f}]"
        return f"{v['value']:.3f}{ci}"

    print(
        f"{report.reviewer}: {report.reviewed} papers reviewed, {report.failed} failed, "
        f"valid-form rate {report.valid_form_rate:.1%}"
    )
    for note in report.notes:
        print(f"  note: {note}")
    for group in [*report.scores, report.human_baseline, *report.baselines]:
        print(
            f"  {group.kind:>10}: Spearman {show(group, 'spearman')}  accepted {show(group, 'spearman_accepted')}  "
            f"rejected {show(group, 'spearman_rejected')}  AUC {show(group, 'decision_auc')}  MAE {show(group, 'mae')}"
        )
    for kind, strata in report.partial_length.items():
        v = strata["all"]
        value = "undefined" if v["value"] is None else f"{v['value']:.3f}"
        ci = "" if v["low"] is None else f" [{v['low']:.2f}, {v['high']:.2f}]"
        print(f"  {kind:>10}: Spearman controlling for text length {value}{ci}")
    for verdict in report.verdicts:
        print(f"  verdict: {verdict.line}")
    if report.reliability is not None:
        rel = report.reliability
        icc = "undefined" if rel.icc is None else f"{rel.icc:.2f}"
        print(f"  test-retest ({rel.source}): within-paper SD {rel.within_sd:.2f}, ICC {icc}, {rel.n_papers} papers")
    if report.calibration.get("signal") is False:
        print(f"  the calibration fitted here shows no signal ({report.calibration.get('figures')}): not a score")
    print(f"report: {out / 'calibration.md'}  {out / 'calibration.json'}")


def _track(cfg: TrackerConfig, report: Any, out: Path, raw: dict[str, Any]) -> None:
    """Log the report to W&B: every figure of every group, the papers and the scatter plot."""
    summary: dict[str, Any] = {"valid_form_rate": report.valid_form_rate, "reviewed": report.reviewed}
    for group in [*report.scores, report.human_baseline, *report.baselines]:
        for metric, values in group.metrics.items():
            for key, value in values.items():
                if value is not None:
                    summary[f"{group.kind}/{metric}/{key}"] = value
    for kind, strata in report.partial_length.items():
        for stratum, values in strata.items():
            summary |= {f"{kind}/partial_length_{stratum}/{k}": v for k, v in values.items() if v is not None}
    for verdict in report.verdicts:
        summary[f"verdict/{verdict.kind}_vs_{verdict.baseline}"] = verdict.verdict
    if report.reliability is not None:
        summary |= {f"reliability/{k}": v for k, v in report.reliability.model_dump().items() if isinstance(v, float)}
    summary.update({f"usage/{k}": v for k, v in report.usage.items() if v is not None})
    columns = ["id", "decision", "human_mean", "raw", "calibrated", "meta", "length", "bow", "tokens"]
    track_report(
        cfg,
        out,
        raw,
        job="calibrate",
        summary=summary,
        table=("papers", columns, report.papers),
        image=("scatter", out / "scatter.png"),
    )
