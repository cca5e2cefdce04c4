"""Checks of a validated ``fars run`` config that need more than its schema: the registries and files.

The schema (``fars.config``) checks types and ranges; this checks what only the rest of FARS knows:
that the stages exist and what each consumes is produced, that the templates exist, that the
reviewer can be built here (its calibration file loads; the oracle is refused outside calibration),
that the job runner can run the experiment settings, that a TeX engine is there when one is
required, that a server answers at ``llm.api_base``, and that a folder to resume holds outputs that
fit their contracts. ``fars run`` calls it
for every job before anything runs; the pipeline repeats the stage and folder checks at start.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Sequence
from pathlib import Path

from fars.config import FarsConfig


def run_config_problems(cfg: FarsConfig) -> list[str]:
    """Every problem of a validated run config that the schema alone cannot see (empty when none)."""
    from experiments.spec import TemplateError, load_spec, scan_templates
    from fars.executor.runner import runner_problems
    from fars.llm.endpoint import api_base_problems
    from fars.paper.latex import engine_notice
    from fars.stages.base import StageConfigError
    from fars.stages.registry import resolve_stages
    from fars.stages.reviewing import reviewer_problems

    problems: list[str] = []
    specs = []
    try:
        specs = resolve_stages(list(cfg.pipeline.stages))
    except StageConfigError as exc:
        problems += exc.problems
    names = set(cfg.pipeline.stages)  # checked even when the list as a whole does not resolve
    # each refused template folder is named (a hostile spec is never read past its limits), and every template
    # a run may use is loaded whole: with [auto] that is every one found, since ideation may pick any
    found, refused = scan_templates(cfg.experiment.template_dirs)
    problems += refused
    known = sorted(found)
    auto = list(cfg.experiment.templates) == ["auto"]
    wanted = known if auto else list(cfg.experiment.templates)
    if "auto" in wanted:
        problems.append("experiment.templates: 'auto' stands alone ([auto]); or list template names")
    for name in wanted:
        if name == "auto":
            continue
        if name not in known:
            close = difflib.get_close_matches(name, known, n=2)
            hint = f"; did you mean {' or '.join(close)}?" if close else ""
            problems.append(f"experiment.templates: no template {name!r}{hint} (available: {known})")
            continue
        try:
            load_spec(found[name])
        except TemplateError as exc:
            problems.append(str(exc) if auto else f"experiment.templates: {exc}")
    if "review" in names:
        problems += reviewer_problems(cfg.reviewer)
    if "experiment" in names:
        problems += runner_problems(cfg.experiment, cfg.executor)
    level, notice = engine_notice(cfg.paper.compile, cfg.paper.engine)
    if level >= logging.ERROR:  # paper.compile=always without a TeX engine: refuse before running
        problems.append(notice)
    problems += api_base_problems(cfg.llm)
    if cfg.resume:
        problems += resume_problems(Path(cfg.resume), specs, cfg)
    return problems


def resume_problems(run_dir: Path, specs: Sequence[object], cfg: FarsConfig | None = None) -> list[str]:
    """Problems of a run folder to resume: a ledger that is damaged, emptied or behind its record, other
    settings than the run's own, deleted files (``fars.run.folder``), stored outputs that break their contracts."""
    from fars.pipeline.queue import LEDGER_FILE, stored_output_problems
    from fars.run.folder import ledger_problems
    from fars.run.folder import resume_problems as folder_problems
    from fars.run.ledger import Ledger
    from fars.stages.base import StageSpec

    problems = folder_problems(run_dir, cfg) if cfg is not None else ledger_problems(run_dir)
    path = run_dir / LEDGER_FILE
    if problems or not path.is_file():
        return problems
    ledger = Ledger(path)
    try:
        return stored_output_problems(ledger, [s for s in specs if isinstance(s, StageSpec)])
    finally:
        ledger.close()
