"""The view's pages: what each shows, built from the records, rendered by Jinja2 with autoescaping.

Every page is a set of named sections. The server renders them all for the first load; its live
stream renders them again after the run changed and sends those that differ, which the page swaps
in place (no reload). Model-written text reaches HTML only through autoescaped templates, the
Markdown renderer (raw HTML off) or the charts' own escaping.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup, escape
from pydantic import ValidationError

from fars.evaluation.compare import (
    CompareError,
    CompareSettings,
    Comparison,
    LoadedRun,
    RunStats,
    calibrated_scores,
    compare_runs,
    run_stats,
)
from fars.evaluation.report import ICLR_2026_ACCEPTED, ICLR_2026_SUBMISSIONS, bars_svg, histogram_svg, throughput_svg
from fars.run.records import ProjectStatus, ProjectSummary, RunRecord
from fars.safe_files import UnsafeYamlError, load_yaml, read_file
from fars.view.charts import condition_of, curves_svg
from fars.view.folders import RunFolder, ServedFolders, SweepFolder, read_text
from fars.view.markdown import render_markdown
from fars.view.reader import ProjectDetail, Readers, RunSnapshot, change_stamp, ledger_refusal, read_stored_record

FUNNEL_STEPS = ("hypotheses", "screened", "novel", "planned", "experimented", "written", "reviewed")
MAX_CALL_TEXT = 4000  # characters of a model reply shown per call
MAX_DIFF_LINES = 400
OVERRIDES_MAX_BYTES = 64 * 1024  # Hydra's overrides.yaml: a line per override
# the project page's parts, in order; each is swapped alone when it changed (the PDF frame reloads only with the paper)
PROJECT_SECTIONS = ("ideas", "plan", "training", "code", "paper", "review", "grounding", "calls", "errors")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m {int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h {int(seconds % 3600 // 60):02d}m"


def _number(value: Any, spec: str = ".2f") -> str:
    return "–" if value is None or not isinstance(value, int | float) else format(value, spec)


def _when(epoch: float | None) -> str:
    return "–" if not epoch else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))


def render_value(value: Any, depth: int = 0) -> Markup:
    """Any JSON-like value (a review form, a stage's output) as nested lists, every string escaped."""
    if depth > 8:
        return escape(json.dumps(value, default=str)[:2000])
    if isinstance(value, dict):
        if not value:
            return Markup('<span class="muted">–</span>')
        items = "".join(f"<dt>{escape(str(k))}</dt><dd>{render_value(v, depth + 1)}</dd>" for k, v in value.items())
        return Markup(f'<dl class="value">{items}</dl>')
    if isinstance(value, list | tuple):
        if not value:
            return Markup('<span class="muted">–</span>')
        return Markup("<ul>" + "".join(f"<li>{render_value(v, depth + 1)}</li>" for v in value) + "</ul>")
    if isinstance(value, float):
        return escape(format(value, ".4g"))
    if value is None:
        return Markup('<span class="muted">–</span>')
    return Markup('<span class="text">') + escape(str(value)) + Markup("</span>")


def make_environment() -> Environment:
    """The Jinja2 environment of the view's templates (autoescaping on for every template)."""
    env = Environment(
        loader=PackageLoader("fars.view", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(duration=_duration, num=_number, when=_when, value=render_value, quote=quote)
    env.globals.update(ICLR_SUBMISSIONS=ICLR_2026_SUBMISSIONS, ICLR_ACCEPTED=ICLR_2026_ACCEPTED)
    return env


@dataclass
class Page:
    """A page to render: its template, the sections the live stream updates, and their context."""

    title: str
    template: str
    context: dict[str, Any]
    sections: dict[str, str] = field(default_factory=dict)  # element id -> template of that section
    stream: str | None = None  # URL of the page's live stream (None: a page that does not update)
    generation: str = ""


class BadQuery(ValueError):
    """A query string the view cannot use (the server answers 400 naming it)."""


# -- runs -----------------------------------------------------------------------------------------
@dataclass
class RunRow:
    """One line of the Runs page."""

    folder: RunFolder
    record: RunRecord | None
    live: bool
    problem: str | None
    projects: int = 0
    in_flight: int = 0
    refused: list[str] = field(default_factory=list)  # files of the run folder refused, each with why


def run_row(folder: RunFolder, readers: Readers) -> RunRow:
    """A run's line: from its RunRecord when it finished, else summarised live from its ledger."""
    stored = read_stored_record(folder.path)
    record, problem = stored.record, stored.problem
    if record is None or record.status == "running":
        snap = readers.get(folder.key).snapshot()
        record, problem, refused = snap.record or record, snap.problem or problem, snap.refused
    else:  # a finished run's ledger is not opened for its line, only looked at (a few lstat calls)
        refused = [why] if (why := ledger_refusal(folder.path)) else []
    live = record is not None and record.status == "running"
    row = RunRow(folder, record, live, problem, refused=refused)
    if record is not None:
        row.projects = len(record.projects)
        row.in_flight = sum(1 for p in record.projects if p.status == ProjectStatus.running)
    return row


def runs_generation(served: ServedFolders) -> str:
    """A token that changes when a run appears or any run writes its ledger or RunRecord."""
    served.scan()
    stamps = repr([(key, change_stamp(f.path)) for key, f in sorted(served.runs.items())])
    return hashlib.sha1(stamps.encode()).hexdigest()[:16]


def runs_page(served: ServedFolders, readers: Readers) -> Page:
    """Every run and sweep under the served folders with status, papers, throughput, tokens, cost, score."""
    generation = runs_generation(served)
    rows = [run_row(f, readers) for f in sorted(served.runs.values(), key=lambda f: f.label)]
    by_key = {r.folder.key: r for r in rows}
    sweeps = []
    for sweep in sorted(served.sweeps.values(), key=lambda s: s.label):
        jobs = [by_key[k] for k in sweep.jobs if k in by_key]
        sweeps.append((sweep, jobs, _sweep_totals(jobs)))
    return Page(
        title="FARS runs",
        template="runs.html",
        context={"rows": rows, "sweeps": sweeps, "roots": served.roots},
        sections={"runs": "sections/runs_table.html"},
        stream="/live/runs",
        generation=generation,
    )


def _sweep_totals(jobs: list[RunRow]) -> dict[str, Any]:
    records = [j.record for j in jobs if j.record is not None]
    scores = [s for r in records for s in r.scores]
    return {
        "papers": sum(r.papers for r in records),
        "tokens": sum(r.totals.overall.total_tokens for r in records),
        "cost": sum(r.totals.overall.cost_usd for r in records),
        "mean_score": sum(scores) / len(scores) if scores else None,
        "running": sum(1 for j in jobs if j.live),
        "statuses": sorted({r.status for r in records}),
    }


# -- one run --------------------------------------------------------------------------------------
@dataclass
class Cell:
    """One (project, stage) square of the board."""

    state: str  # done, running, failed, stopped, budget, waiting, skipped
    seconds: float | None = None
    since: float | None = None  # epoch the stage began, for a running one (the page ticks it)


def board_cells(project: ProjectSummary, stages: list[str], started: float | None) -> list[Cell]:
    """The board's squares of one project, one per stage, from its summary and its latest stage start."""
    cells = []
    current = stages.index(project.stage) if project.stage in stages else (len(stages) if project.stage else -1)
    final = project.status not in (ProjectStatus.queued, ProjectStatus.running)
    ended = {
        ProjectStatus.failed: "failed",
        ProjectStatus.budget_exhausted: "budget",
        ProjectStatus.screened_out: "stopped",
    }
    for i, stage in enumerate(stages):
        seconds = project.stage_seconds.get(stage)
        if stage == project.stage and project.status in ended:
            cells.append(Cell(ended[project.status], seconds))
        elif seconds is not None:
            cells.append(Cell("done", seconds))
        elif stage == project.stage and project.status == ProjectStatus.running:
            cells.append(Cell("running", None, started))
        elif final and i > current:
            cells.append(Cell("skipped"))
        else:
            cells.append(Cell("waiting"))
    return cells


def run_page(snap: RunSnapshot) -> Page:
    """A run, live: cards, the projects x stages board, funnel, usage, papers over time, score histogram."""
    record = snap.record
    context: dict[str, Any] = {"snap": snap, "record": record, "folder": snap.folder, "now": time.time()}
    if record is not None:
        calibrated = calibrated_scores(record)
        funnel = record.funnel
        context.update(
            board=[(p, board_cells(p, snap.stages, snap.stage_started.get(p.id))) for p in record.projects],
            calibrated_mean=sum(calibrated) / len(calibrated) if calibrated else None,
            histogram=Markup(histogram_svg(record.scores, calibrated)),
            throughput=Markup(throughput_svg(record)),
            funnel=[(step, getattr(funnel, step)) for step in FUNNEL_STEPS],
            funnel_svg=Markup(
                bars_svg(
                    [("projects", float(len(record.projects)))]
                    + [(s, float(getattr(funnel, s))) for s in FUNNEL_STEPS]
                    + [("papers", float(record.papers))]
                )
            ),
            stage_tokens=Markup(bars_svg([(k, float(u.total_tokens)) for k, u in record.totals.by_stage.items()])),
            stage_cost=Markup(
                bars_svg([(k, u.cost_usd) for k, u in record.totals.by_stage.items()], " $", "#fac858", ".4f")
            ),
            model_tokens=Markup(
                bars_svg([(k, float(u.total_tokens)) for k, u in record.totals.by_model.items()], "", "#73c0de")
            ),
            in_flight=sum(1 for p in record.projects if p.status == ProjectStatus.running),
        )
    title = f"FARS run {snap.folder.label}"
    return Page(
        title=title,
        template="run.html",
        context=context,
        sections={
            "cards": "sections/run_cards.html",
            "board": "sections/run_board.html",
            "funnel": "sections/run_funnel.html",
            "charts": "sections/run_charts.html",
            "usage": "sections/run_usage.html",
        },
        stream=f"/live/run/{snap.folder.key}",
        generation=str(snap.generation),
    )


# -- one project ----------------------------------------------------------------------------------
def _files_route(folder: RunFolder) -> str:
    return f"/files/{folder.key}"


def _diff_lines(
    folder: RunFolder, path: str | None, served: ServedFolders, problems: list[str] | None = None
) -> list[str] | None:
    """A stored unified diff (a path relative to the run folder) as lines, at most ``MAX_DIFF_LINES``; None if unread
    (why it was refused added to ``problems``)."""
    text = read_text(folder, path, served, limit=500_000, problems=problems) if path else None
    if text is None:
        return None
    lines = text.splitlines()
    if len(lines) > MAX_DIFF_LINES:
        lines = [*lines[:MAX_DIFF_LINES], f"... {len(lines) - MAX_DIFF_LINES} more line(s): open the file"]
    return lines


def code_search(detail: ProjectDetail, folder: RunFolder, served: ServedFolders) -> dict[str, Any]:
    """The project's search over programs: its nodes (with reply and diff), the winner and its diff, or why none.

    ``state``: ``nodes`` (some finished; ``running`` says whether the search is still going), ``empty`` (the
    experiment finished and its search ran no node: ``reason`` says why), ``off`` (the experiment finished
    without a search) or ``waiting`` (no node has finished yet).
    """
    search = detail.experiment.results.code if detail.experiment is not None else None
    nodes = [
        {
            "node": n,
            "reply": detail.code_replies.get(n.id),
            "diff": _diff_lines(folder, n.diff, served, detail.problems),
        }
        for n in detail.code_nodes
    ]
    if nodes:
        state = "nodes"
    elif detail.experiment is not None:
        state = "empty" if search is not None else "off"
    else:
        state = "waiting"
    winner = search.winner if search is not None else None
    return {
        "state": state,
        "running": detail.experiment is None,
        "nodes": nodes,
        "search": search,
        "winner": winner,
        "winner_diff": _diff_lines(folder, search.diff, served, detail.problems) if search is not None else None,
        "buggy": sum(1 for n in detail.code_nodes if n.verdict == "buggy"),
    }


def project_page(snap: RunSnapshot, detail: ProjectDetail, served: ServedFolders, generation: int) -> Page:
    """A project: hypotheses, plan, training curves, code, paper, review, grounding, model calls, errors."""
    folder = snap.folder
    p = detail.summary
    files = _files_route(folder)
    by_kind: dict[str, list[str]] = {}
    for artifact in p.artifacts:
        by_kind.setdefault(artifact.kind, []).append(artifact.path)
    paper_md = next((a for a in by_kind.get("paper", []) if a.endswith(".md")), None)
    paper_pdf = next((a for a in by_kind.get("paper", []) if a.endswith(".pdf")), None)
    markdown = None
    if paper_md is not None:
        text = read_text(folder, paper_md, served, problems=detail.problems)
        if text is not None:
            markdown = render_markdown(text, files, str(Path(paper_md).parent))
    error_log = read_text(folder, f"projects/{p.id}/error.log", served, limit=200_000, problems=detail.problems)
    series = sorted({k for r in detail.curves for k in r.curves})
    calls = detail.calls
    totals = {
        "calls": len(calls),
        "input_tokens": sum(int(c.get("input_tokens") or 0) for c in calls),
        "output_tokens": sum(int(c.get("output_tokens") or 0) for c in calls),
        "cost_usd": sum(float(c.get("cost_usd") or 0.0) for c in calls),
        "latency_s": sum(float(c.get("latency_s") or 0.0) for c in calls),
        "cache_hits": sum(1 for c in calls if c.get("cache_hit")),
    }
    known = {
        "id",
        "project_id",
        "stage",
        "model",
        "input_tokens",
        "output_tokens",
        "cost_usd",
        "latency_s",
        "cache_hit",
        "ts",
        "response",
        "error",
        "request_hash",
        "ordinal",
    }
    extra_columns = [k for k in (calls[0] if calls else {}) if k not in known]
    failures = [e for e in detail.events if e.get("event") == "fail"]
    context = {
        "snap": snap,
        "folder": folder,
        "p": p,
        "d": detail,
        "files": files,
        "paper_md": paper_md,
        "paper_pdf": paper_pdf,
        "markdown": markdown,
        "artifacts": p.artifacts,
        "curves": [(name, curves_svg(detail.curves, name)) for name in series],
        "conditions": sorted({condition_of(r.name) for r in detail.curves}),
        "code": code_search(detail, folder, served),
        "calls": calls,
        "call_totals": totals,
        "extra_columns": extra_columns,
        "max_call_text": MAX_CALL_TEXT,
        "failures": failures,
        "error_log": error_log,
        "stages": snap.stages,
        "cells": board_cells(p, snap.stages, snap.stage_started.get(p.id)),
    }
    return Page(
        title=f"{p.id} · {p.title or p.hypothesis or 'project'}",
        template="project.html",
        context=context,
        sections={
            "project-head": "sections/project_head.html",
            **{f"project-{name}": f"sections/project_{name}.html" for name in PROJECT_SECTIONS},
        },
        stream=f"/live/project/{folder.key}/{quote(p.id)}",
        generation=str(generation),
    )


# -- compare --------------------------------------------------------------------------------------
@dataclass
class CompareRow:
    """One run of a comparison: its numbers, and its comparison with the baseline (row 0)."""

    key: str
    stats: RunStats
    comparison: Comparison | None = None
    error: str | None = None


def run_overrides(folder: RunFolder, served: ServedFolders) -> list[str]:
    """The overrides a run was started with (``.hydra/overrides.yaml``), as ``fars compare`` labels sweep jobs;
    none when the file is missing, refused (a link, a special file, over ``OVERRIDES_MAX_BYTES``) or not YAML."""
    try:
        data = read_file(folder.path, ".hydra/overrides.yaml", max_bytes=OVERRIDES_MAX_BYTES)
        loaded = load_yaml(data, source=".hydra/overrides.yaml", max_bytes=OVERRIDES_MAX_BYTES, max_nodes=10_000)
    except (OSError, yaml.YAMLError, UnsafeYamlError):
        return []
    if not isinstance(loaded, list):
        return []
    return [str(o)[:200] for o in loaded[:200] if not str(o).startswith(("hydra.", "resume="))]


def loaded_run(folder: RunFolder, readers: Readers) -> LoadedRun | str:
    """A run as ``fars compare`` takes it (a RunRecord; built live for a running run), or why not."""
    row = run_row(folder, readers)
    if row.record is None:
        return f"{folder.label}: no RunRecord yet ({row.problem or 'the run is starting'})"
    overrides = run_overrides(folder, readers.served)
    label = f"{folder.label}: {' '.join(overrides)}" if overrides and folder.sweep else folder.label
    return LoadedRun(label, folder.path, row.record, overrides)


def compare_page(
    folders: list[RunFolder], readers: Readers, title: str, sweep: SweepFolder | None = None, **settings: Any
) -> Page:
    """Two runs, or a sweep's jobs, side by side with ``fars compare``'s numbers against the first."""
    try:
        compare_settings = CompareSettings(**settings)
    except ValidationError as exc:
        named = "; ".join(f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise BadQuery(f"compare settings: {named}") from None
    loaded: list[tuple[RunFolder, LoadedRun]] = []
    problems: list[str] = []
    for folder in folders:
        run = loaded_run(folder, readers)
        if isinstance(run, str):
            problems.append(run)
        else:
            loaded.append((folder, run))
    rows = [CompareRow(f.key, run_stats(run)) for f, run in loaded]
    for i, (_folder, run) in enumerate(loaded[1:], start=1):
        try:
            rows[i].comparison = compare_runs(loaded[0][1], run, compare_settings)
        except (CompareError, ValueError) as exc:
            rows[i].error = str(exc)
    stages = list(dict.fromkeys(s for r in rows for s in r.stats.stage_seconds))
    return Page(
        title=title,
        template="compare.html",
        context={"rows": rows, "problems": problems, "settings": compare_settings, "sweep": sweep, "stages": stages},
    )
