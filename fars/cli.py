"""The ``fars`` command.

``fars run [OVERRIDES] [-m]`` composes ``conf/run.yaml`` with Hydra and runs the pipeline. Before
anything runs, every job of the run (every point of a ``-m`` sweep) is composed and validated; all
problems are printed together and the exit status is 2. ``fars run resume=DIR`` continues a run
folder with the overrides it was started with.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import importlib
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fars import __version__
from fars.commands.configured import CONF_DIR, UsageError, listing, register_defaults

USAGE = """usage: fars COMMAND [ARGS]

commands:
  run [KEY=VALUE ...] [-m]   run the pipeline (Hydra overrides; -m sweeps comma-separated values)
                             e.g. fars run llm=scripted pipeline.papers=4
                                  fars run -m pipeline.projects=1,2
                                  fars run resume=outputs/2026-01-01/12-00-00-000000
  run --cfg job              print the composed config and exit
  run --help                 Hydra's help: config groups and their options
  run -sc install=bash       shell completion of run's overrides: eval "$(fars run -sc install=bash)"
  compare BASE CAND [...]    compare runs or a sweep folder; exit 1 on a score regression (--help)
  report RUN                 write RUN/report.html, a self-contained page of the run (--help)
  review PAPER [KEY=VALUE]   review a .pdf/.tex/.md/.txt paper; writes review.json and review.md (--help)
  calibrate [KEY=VALUE]      measure the reviewer against human reviews, optionally fit its calibration (--help)
  template list|check DIR    the experiment templates; validate a template folder of your own (--help)
  view [DIR ...]             serve runs read-only in a browser, live while they run (--host, --port; --help)
  probe [KEY=VALUE]          plant flaws in papers and measure what they do to the reviewer's score (--help)

exit status: 0 done (every job of a sweep made a paper), 1 a run or sweep job failed or made no paper,
             2 bad config or arguments
"""

# other commands: name -> module with ``main(args: list[str]) -> int`` (imported only when used)
COMMANDS: dict[str, str] = {
    "compare": "fars.commands.compare",
    "report": "fars.commands.report",
    "review": "fars.commands.review",
    "calibrate": "fars.commands.calibrate",
    "template": "fars.commands.template",
    "view": "fars.commands.view",
    "probe": "fars.commands.probe",
}

log = logging.getLogger("fars")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``fars`` console script."""
    args = sys.argv[1:] if argv is None else list(argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    if args[0] in ("--version", "version"):
        print(f"fars {__version__}")
        return 0
    if args[0] in COMPLETION_FLAGS:  # the shell's completion script: `COMP_LINE="fars run ..." fars -sc query=bash`
        return complete(args[1:])
    command, rest = args[0], args[1:]
    if command == "run":
        handler = run_command
    elif command in COMMANDS:
        handler = importlib.import_module(COMMANDS[command]).main
    else:
        print(f"fars: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
        return 2
    try:
        return int(handler(rest))
    except UsageError as exc:
        print(f"fars {command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the run's jobs are cancelled and its RunRecord written already
        print(f"fars {command}: interrupted", file=sys.stderr)
        return 130


COMPLETION_FLAGS = ("-sc", "--shell-completion")
# Hydra's flags that take the next argument as their value (kept beside it when flags and overrides are split):
# the long forms, then the short ones
_VALUE_FLAGS = (
    *("--cfg", "--package", "--config-path", "--config-name", "--config-dir", "--experimental-rerun", "--info"),
    *("-c", "-p", "-cp", "-cn", "-cd", "-i"),
)
_INFO_VALUES = ("all", "config", "defaults", "defaults-tree", "plugins", "searchpath")


def split_args(args: list[str]) -> tuple[list[str], list[str]]:
    """``fars run``'s arguments as (Hydra flags with their values, overrides), each in the order given.

    A flag's value stays beside it (``--cfg job``, ``-sc install=bash``), so the overrides can be rewritten
    (resume) and the flags still mean what they said.
    """
    flags: list[str] = []
    overrides: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("-"):
            overrides.append(arg)
        else:
            flags.append(arg)
            if i + 1 < len(args) and _takes(arg, args[i + 1]):
                flags.append(args[i + 1])
                i += 1
        i += 1
    return flags, overrides


def _takes(flag: str, following: str) -> bool:
    """Whether ``following`` is the value of Hydra flag ``flag`` rather than an override."""
    if following.startswith("-"):
        return False
    if flag in ("--info", "-i"):  # its value is optional
        return following in _INFO_VALUES
    if flag in COMPLETION_FLAGS:
        return following.split("=", 1)[0] in ("install", "uninstall", "query")
    return flag in _VALUE_FLAGS


def _resume_overrides(run_dir_text: str, overrides: list[str]) -> list[str]:
    """The overrides a run was started with, then the new ones, pinned to the old run folder.

    ``resume_force`` is never carried over from an earlier session: each forced resume is asked for anew.
    """
    import yaml

    from fars.run.ledger import LEDGER_FILE
    from fars.safe_files import read_text

    run_dir = Path(run_dir_text).expanduser()
    saved = run_dir / ".hydra" / "overrides.yaml"
    # a run killed during start-up has its overrides but no ledger yet: resuming starts it afresh there
    if not os.path.lexists(run_dir / LEDGER_FILE) and not saved.is_file():
        raise UsageError(
            f"resume={run_dir_text}: neither {LEDGER_FILE} nor .hydra/overrides.yaml there; "
            "give the folder of an earlier `fars run`"
        )
    original: object = []
    if saved.is_file():
        try:
            original = yaml.safe_load(read_text(saved.parent, saved.name, max_bytes=1024 * 1024)) or []
        except (OSError, yaml.YAMLError) as exc:
            raise UsageError(
                f"resume={run_dir_text}: {saved} cannot be read ({str(exc)[:200]}); restore it, or give the "
                "overrides again on the command line after deleting it"
            ) from None
    if not isinstance(original, list) or not all(isinstance(o, str) for o in original):
        raise UsageError(f"resume={run_dir_text}: {saved} is not a list of overrides; restore it or delete it")
    keep = [o for o in original if not o.startswith(("resume=", "hydra.run.dir=", "resume_force="))]
    new = [o for o in overrides if not o.startswith("resume=")]
    return [*keep, *new, f"resume={run_dir.resolve()}", f"hydra.run.dir={run_dir.resolve()}"]


def expand_jobs(overrides: list[str], multirun: bool) -> list[list[str]]:
    """The override list of every job the command would launch (one unless sweeping)."""
    if not multirun:
        return [overrides]
    from fars.commands.configured import hydra_session, sweep_jobs
    from fars.config import FarsConfig

    with hydra_session("run", FarsConfig):
        return sweep_jobs("run", [o for o in overrides if not o.startswith("hydra.")])


def preflight(jobs: list[list[str]], sweep_hydra: list[str] | None = None) -> list[str]:
    """Compose (once each) and validate every job's config; return every problem found (empty when all good).

    SLURM requests are checked against ``sinfo`` here too: the training jobs of ``executor=slurm`` and,
    in a sweep (``sweep_hydra``: its ``hydra.*`` overrides), the jobs of ``hydra/launcher=slurm``.
    """
    from fars.commands.configured import compose_job, hydra_session
    from fars.config import ConfigError, FarsConfig, validate_config
    from fars.pipeline.preflight import run_config_problems

    problems: list[str] = []
    with hydra_session("run", FarsConfig):
        for job in jobs:
            label = f"job [{' '.join(job)}]: " if len(jobs) > 1 else ""
            composed = compose_job("run", [*job, *(sweep_hydra or [])], hydra=sweep_hydra is not None)
            problems += [label + p for p in composed.problems]
            if composed.raw is None:
                continue
            try:
                cfg = validate_config(composed.raw)
            except ConfigError as exc:
                problems += [label + p for p in exc.problems]
                continue
            problems += [label + p for p in run_config_problems(cfg)]
            launcher = None if composed.hydra is None else composed.hydra.get("launcher")
            problems += [label + p for p in _slurm_problems(cfg, launcher)]
    return list(dict.fromkeys(problems))


def _output_dir(overrides: list[str], multirun: bool) -> tuple[list[str], Path]:
    """The overrides with the run (or sweep) folder made explicit, and that folder.

    The folder is fixed here, not by Hydra's ``${now:...}``, so the exit status can be read from the
    RunRecords the jobs leave there whichever launcher ran them (in this process or elsewhere).
    """
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    given = [o.split("=", 1)[1] for o in overrides if o.startswith(key + "=")]
    if given:
        return overrides, Path(given[-1])
    now = _dt.datetime.now()
    folder = Path("multirun" if multirun else "outputs") / now.strftime("%Y-%m-%d") / now.strftime("%H-%M-%S-%f")
    return [*overrides, f"{key}={folder}"], folder


def exit_status(folder: Path, jobs: int, multirun: bool) -> tuple[int, list[str]]:
    """0 when every job's RunRecord says completed with at least one paper, else 1; and why not, per job."""
    from pydantic import ValidationError

    from fars.run.summary import RUN_RECORD_FILE, read_run_record

    found = sorted(folder.glob(f"*/{RUN_RECORD_FILE}")) if multirun else [folder / RUN_RECORD_FILE]
    bad: list[str] = []
    for path in found:
        if not path.is_file():
            bad.append(f"{path.parent}: no {RUN_RECORD_FILE} (the job did not run or died before writing it)")
            continue
        try:
            record = read_run_record(path.parent)
        except (ValidationError, ValueError, OSError) as exc:
            bad.append(f"{path.parent}: unreadable {RUN_RECORD_FILE} ({str(exc)[:200]})")
            continue
        if record.status != "completed":
            bad.append(f"{path.parent}: run {record.status}" + (f" ({record.error})" if record.error else ""))
        elif record.papers == 0:
            bad.append(f"{path.parent}: no paper was produced")
    if multirun and len(found) < jobs:
        bad.append(f"{folder}: {jobs} job(s) launched but only {len(found)} RunRecord(s) found")
    return (1 if bad else 0), bad


def _slurm_problems(cfg: Any, launcher: dict[str, Any] | None) -> list[str]:
    """What ``sinfo`` says against this job's SLURM requests: its training jobs, and in a sweep the sweep job
    itself (``launcher``: the composed ``hydra.launcher`` node)."""
    from fars.executor.cluster import launcher_problems
    from fars.executor.slurm import preflight_problems

    problems = preflight_problems(cfg)
    if launcher is not None:
        problems += launcher_problems(launcher)
    return problems


def run_command(args: list[str]) -> int:
    """``fars run``: validate every job up front, then hand over to Hydra; the exit status comes from the records."""
    if not CONF_DIR.is_dir():
        raise UsageError(
            f"config folder {CONF_DIR} is missing; reinstall FARS (pip install fars, or -e . in a checkout)"
        )
    passthrough = any(
        a in ("--cfg", "-c", "--help", "-h", "--hydra-help", "--info", "-i", *COMPLETION_FLAGS) for a in args
    )
    multirun = any(a in ("-m", "--multirun") for a in args)
    flags, overrides = split_args(args)
    resume = [o.split("=", 1)[1] for o in overrides if o.startswith("resume=")]
    if resume and resume[0] not in ("", "null"):
        if multirun:
            raise UsageError("resume= cannot be combined with -m; resume one run folder at a time")
        overrides = _resume_overrides(resume[0], overrides)
    jobs = expand_jobs(overrides, multirun)
    if passthrough:
        problems = _resolve_problems(jobs) if "--resolve" in flags else []
        if problems:
            print(f"fars run: {listing(problems)}", file=sys.stderr)
            return 2
        sys.argv = ["fars", *flags, *_output_dir(overrides, multirun)[0]]
        _hydra_entry()
        return 0
    overrides, folder = _output_dir(overrides, multirun)
    resuming = bool(resume and resume[0] not in ("", "null"))
    if not resuming:  # a new run never continues (and pays into) an old ledger
        from fars.run.folder import fresh_run_problems

        taken = [p for job in (sorted(folder.glob("*/")) if multirun else [folder]) for p in fresh_run_problems(job)]
        if taken:
            raise UsageError(
                taken[0] if len(taken) == 1 else f"{len(taken)} job folders of {folder} hold runs: {taken[0]}"
            )
    with _run_folder_held(None if multirun else folder) as hold:
        sweep_hydra = [o for o in overrides if o.startswith("hydra.")] if multirun else None
        problems = preflight(jobs, sweep_hydra)
        if problems:
            print(f"fars run: {listing(problems)}", file=sys.stderr)
            return 2
        hold.take()  # a new run's folder is made (and held) only once its config is known to be good
        sys.argv = ["fars", *flags, *overrides]
        _hydra_entry()
    code, bad = exit_status(folder, len(jobs), multirun)
    for line in bad:
        log.error("%s", line)
        print(f"fars run: {line}", file=sys.stderr)
    return code


class _Hold:
    """This process's hold on a run folder for the whole command (one session per folder)."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder
        self.lock: Any = None

    def take(self) -> None:
        """Hold the folder (made if missing); a folder another session holds is a usage error (exit 2)."""
        if self.folder is None or self.lock is not None:
            return
        from fars.run.folder import RunFolderBusy, RunFolderError, hold_run_folder

        try:
            self.lock = hold_run_folder(self.folder)
        except (RunFolderBusy, RunFolderError) as exc:
            raise UsageError(str(exc)) from None


@contextlib.contextmanager
def _run_folder_held(folder: Path | None) -> Iterator[_Hold]:
    """Hold ``folder`` from now when it exists (a resume), else from ``take()``; released at the end."""
    hold = _Hold(folder)
    if folder is not None and folder.is_dir():
        hold.take()  # before preflight: a second session is told at once who holds the folder
    try:
        yield hold
    finally:
        if hold.lock is not None:
            from fars.run.folder import release_run_folder

            release_run_folder(hold.lock)


def _resolve_problems(jobs: list[list[str]]) -> list[str]:
    """What composing each job with interpolations resolved rejects (``--cfg job --resolve``)."""
    from fars.commands.configured import compose_job, hydra_session
    from fars.config import FarsConfig

    problems: list[str] = []
    with hydra_session("run", FarsConfig):
        for job in jobs:
            problems += compose_job("run", job).problems
    return problems


def _task(dict_config: Any) -> float | None:
    """The Hydra task: one run of the pipeline in Hydra's output folder.

    A run that fails still leaves its RunRecord (status ``failed``); the error is logged and not
    raised, so one failed job does not end a sweep, and the exit status is read from the records.
    """
    import asyncio

    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from fars.commands.configured import plain
    from fars.config import validate_config
    from fars.pipeline.queue import Pipeline

    raw = plain(dict_config, resolve=True)
    cfg = validate_config(raw)
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    if cfg.tracker.group is None and hydra_cfg.mode == RunMode.MULTIRUN:
        cfg.tracker.group = Path(hydra_cfg.sweep.dir).name  # a sweep's jobs form one W&B group
    for noisy in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "httpx", "wandb"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    tracker = f"W&B {cfg.tracker.mode}" if cfg.tracker.backend == "wandb" else "no tracker"
    log.info(
        "run folder %s | model %s | %d paper(s), %d in flight | %s%s",
        run_dir,
        cfg.llm.model,
        cfg.pipeline.papers,
        cfg.pipeline.projects,
        tracker,
        " | resuming" if cfg.resume else "",
    )
    log.info("after a crash or kill, continue with: fars run resume=%s", run_dir)
    from fars.executor.slurm import as_main, cancel_jobs_on_exit

    try:
        with cancel_jobs_on_exit():  # SIGTERM acts as Ctrl-C; SLURM jobs still queued or running are cancelled
            record = asyncio.run(as_main(Pipeline(cfg, run_dir).run()))
    except Exception as exc:  # recorded in the RunRecord (status failed) by the pipeline
        log.error("run failed: %s: %s (%s)", type(exc).__name__, exc, run_dir / "run_record.json")
        return None
    usage = record.totals.overall
    log.info(
        "%s: %d paper(s) in %.0fs, mean rating %s, %d tokens (%d calls, %d cached), $%.4f | %s",
        record.status,
        record.papers,
        record.wall_s,
        "n/a" if record.mean_score is None else f"{record.mean_score:.2f}",
        usage.total_tokens,
        usage.calls,
        usage.cache_hits,
        usage.cost_usd,
        run_dir / "run_record.json",
    )
    if cfg.tracker.backend == "wandb" and cfg.tracker.mode == "offline":
        log.info("upload the W&B run later with: wandb sync %s/wandb/offline-run-*", run_dir)
    return record.mean_score


def _hydra_entry() -> None:
    import hydra

    from fars.config import FarsConfig

    register_defaults("run", FarsConfig)
    hydra.main(config_path=str(CONF_DIR), config_name="run", version_base="1.3")(_task)()


def complete(args: list[str]) -> int:
    """Answer ``fars -sc ARGS``: a completion query (``query=bash``), else an install or uninstall of the script.

    ``eval "$(fars run -sc install=bash)"`` (or ``fars -sc install=bash``; also zsh and fish) installs
    Hydra's script for the ``fars`` command. On TAB it calls ``fars -sc query=SHELL`` with the line typed
    so far in ``COMP_LINE``: command names first, then Hydra's own completion of ``fars run``'s
    overrides (Hydra reads the line as ``APP OVERRIDES...``, so the word ``run`` is taken out first).
    """
    import os

    if not any(a.startswith("query=") for a in args):  # `fars -sc install=bash`: the same as `fars run -sc ...`
        return run_command(["-sc", *args])
    line = os.environ.get("COMP_LINE", "")
    words = line.split()
    if len(words) < 2 or (len(words) == 2 and not line.endswith(" ")):  # still typing the command's name
        prefix = words[1] if len(words) == 2 else ""
        print(" ".join(name for name in ("run", *COMMANDS) if name.startswith(prefix)))
        return 0
    if words[1] != "run":
        return 0  # the other commands take files and KEY=VALUE of their own: the shell's default completion
    head, _, tail = line.partition(" run")
    os.environ["COMP_LINE"] = head + tail
    sys.argv = ["fars", "-sc", *args]
    _hydra_entry()
    return 0


if __name__ == "__main__":
    from fars import cli as _cli  # the importable module: commands raise *its* UsageError, not __main__'s

    sys.exit(_cli.main())
