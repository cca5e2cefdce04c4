"""The checks before a run, one path for ``fars run`` and for the pipeline, run once in a process.

The schema (``fars.config``) checks types and ranges; this checks what only the rest of FARS knows:
that the stages exist and what each consumes is produced, what each listed stage needs of this machine
(its registered ``check``: the reviewer's calibration file, the job runner against the pool), that the
templates exist and load, that a TeX engine is there when one is required, that a server answers at
``llm.api_base``, and that the run folder can be used: a new run's holds no run; a resumed one's ledger
is sound, its config the run's own, its files still there (``fars.run.folder``) and its stored outputs
fit their contracts.

``fars run`` lists every problem of every job before anything runs (``run_config_problems``; it exits 2);
the pipeline asks the same checks as it opens its folder (``check_run``; ``RunRefused``). What passed
in this process for the same config, and the same ledger files, is not checked again (``_once``).
"""

from __future__ import annotations

import difflib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from experiments.spec import TemplateError, load_spec, scan_templates
from fars.config import FarsConfig, config_dict
from fars.llm.endpoint import api_base_problems
from fars.paper.latex import engine_notice
from fars.run.contracts import ContractError
from fars.run.folder import fresh_run_problems, resume_problems
from fars.run.ledger import LEDGER_FILE, Ledger, load_stored
from fars.run.summary import RUN_RECORD_FILE
from fars.stages.base import StageConfigError, StageSpec
from fars.stages.registry import listed_stages, resolve_stages

T = TypeVar("T")
_passed: dict[str, Any] = {}  # what each check that passed in this process found, by what it checked (``_once``)


class RunRefused(ValueError):
    """The run cannot start as configured, here; ``problems`` holds one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


def run_config_problems(cfg: FarsConfig) -> list[str]:
    """Every problem of a validated run config that the schema alone cannot see, with ``resume=`` its
    folder's too (empty when none): what ``fars run`` refuses a job for before anything runs."""
    return _checks(cfg, Path(cfg.resume) if cfg.resume else None)[0]


def check_run(cfg: FarsConfig, run_dir: Path) -> list[StageSpec]:
    """The run's stages in run order, once every check of ``cfg`` in ``run_dir`` passed (a new run there,
    or a resume with ``resume=``); ``RunRefused`` lists every problem."""
    problems, specs = _checks(cfg, run_dir)
    if problems:
        raise RunRefused(problems)
    return specs


def _checks(cfg: FarsConfig, run_dir: Path | None) -> tuple[list[str], list[StageSpec]]:
    """The config's checks, then the folder's (when there is one), each skipped when it passed already."""
    problems = _once(lambda: _config_key(cfg), lambda: (config_problems(cfg)[0], None))[0]
    # the stages are looked up afresh (cheap once imported): a pass is remembered, never the specs it found
    specs = [] if problems else resolve_stages(list(cfg.pipeline.stages))
    if run_dir is not None:
        problems += _once(lambda: _folder_key(cfg, run_dir), lambda: (folder_problems(run_dir, cfg, specs), None))[0]
    return problems, specs


def config_problems(cfg: FarsConfig) -> tuple[list[str], list[StageSpec]]:
    """Every problem of the config on this machine, and its stages in run order (as far as they resolve)."""
    problems: list[str] = []
    specs: list[StageSpec] = []
    try:
        specs = resolve_stages(list(cfg.pipeline.stages))
    except StageConfigError as exc:
        problems += exc.problems
    problems += template_problems(cfg)
    problems += stage_check_problems(cfg)
    level, notice = engine_notice(cfg.paper.compile, cfg.paper.engine)
    if level >= logging.ERROR:  # paper.compile=always without a TeX engine: refuse before running
        problems.append(notice)
    problems += api_base_problems(cfg.llm)
    return problems, specs


def template_problems(cfg: FarsConfig) -> list[str]:
    """Each template the run may use that is missing or does not load, and each template folder refused.

    Every refused folder is named (a hostile spec is never read past its limits), and every template a run
    may use is loaded whole: with ``[auto]`` that is every one found, since ideation may pick any.
    """
    found, refused = scan_templates(cfg.experiment.template_dirs)
    problems = list(refused)
    known = sorted(found)
    auto = list(cfg.experiment.templates) == ["auto"]
    wanted = known if auto else list(cfg.experiment.templates)
    if "auto" in wanted:
        problems.append("experiment.templates: 'auto' stands alone ([auto]); or list template names")
    scale = cfg.experiment.scale
    at_scale = 0  # templates that load and declare the run's scale
    for name in wanted:
        if name == "auto":
            continue
        if name not in known:
            close = difflib.get_close_matches(name, known, n=2)
            hint = f"; did you mean {' or '.join(close)}?" if close else ""
            problems.append(f"experiment.templates: no template {name!r}{hint} (available: {known})")
            continue
        try:
            spec = load_spec(found[name])
        except TemplateError as exc:
            problems.append(str(exc) if auto else f"experiment.templates: {exc}")
            continue
        at_scale += spec.has_scale(scale)
        if not auto and not spec.has_scale(scale):
            problems.append(
                f"experiment.scale={scale}: template {name!r} declares no such scale "
                f"(its scales: {sorted(spec.scales)}); pick one of those or another template"
            )
    if auto and found and not at_scale:
        problems.append(f"experiment.scale={scale}: no template declares that scale (with [auto], those that do run)")
    return problems


def stage_check_problems(cfg: FarsConfig) -> list[str]:
    """What each listed stage's own check (``register_stage(check=...)``) finds missing on this machine;
    asked even when the list as a whole does not resolve, so every problem is named at once."""
    return [problem for spec in listed_stages(cfg.pipeline.stages) if spec.check for problem in spec.check(cfg)]


def folder_problems(run_dir: Path, cfg: FarsConfig, specs: list[StageSpec]) -> list[str]:
    """Why ``cfg`` cannot run in ``run_dir``: a new run into a folder that holds one, or a folder to resume
    that cannot be as it is (``fars.run.folder.resume_problems``) or whose stored outputs break their contracts."""
    if not cfg.resume:
        return fresh_run_problems(run_dir)
    problems = resume_problems(run_dir, cfg)
    path = run_dir / LEDGER_FILE
    if problems or not path.is_file():
        return problems
    ledger = Ledger(path)
    try:
        return stored_output_problems(ledger, specs)
    finally:
        ledger.close()


def stored_output_problems(ledger: Ledger, specs: list[StageSpec]) -> list[str]:
    """Every stored output of these stages that does not validate against its stage's contract."""
    by_stage = {s.name: s for s in specs}
    problems = []
    for (_project, stage), stored in sorted(ledger.finished_outputs().items()):
        spec = by_stage.get(stage)
        if spec is None:
            continue
        try:
            load_stored(stored, spec.produces)
        except ContractError as exc:
            problems.append(f"{ledger.path}: {exc}")
    return problems


def _once(key: Callable[[], str], check: Callable[[], tuple[list[str], T]]) -> tuple[list[str], T]:
    """``check()``, unless it passed in this process for the same ``key()``; the key of a pass is taken after
    the check, so what the check itself leaves (a ledger opened and closed again) counts as unchanged."""
    if (before := key()) in _passed:
        return [], _passed[before]
    problems, found = check()
    if not problems:
        _passed[key()] = found
    return problems, found


def _config_key(cfg: FarsConfig) -> str:
    """The config as the checks read it (nothing reads the tracker's settings, which a sweep sets after them)."""
    return json.dumps({k: v for k, v in config_dict(cfg).items() if k != "tracker"}, sort_keys=True, default=str)


def _folder_key(cfg: FarsConfig, run_dir: Path) -> str:
    """The config and the run folder's ledger and record files as they are now (any write to them changes it)."""
    files: list[list[int] | None] = []
    for name in (LEDGER_FILE, f"{LEDGER_FILE}-wal", RUN_RECORD_FILE):
        try:
            st = os.lstat(run_dir / name)
        except OSError:
            files.append(None)
            continue
        files.append([st.st_ino, st.st_size, st.st_mtime_ns])
    return json.dumps([os.path.realpath(run_dir), bool(cfg.resume), _config_key(cfg), files])
