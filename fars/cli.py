"""The ``fars`` command.

``fars run [OVERRIDES] [-m]`` composes ``conf/run.yaml`` with Hydra and runs the pipeline. Before
anything runs, every job of the run (every point of a ``-m`` sweep) is composed and validated; all
problems are printed together and the exit status is 2. ``fars run resume=DIR`` continues a run
folder with the overrides it was started with.
"""

from __future__ import annotations

import importlib
import logging
import sys
from pathlib import Path
from typing import Any

from fars import __version__

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
USAGE = """usage: fars COMMAND [ARGS]

commands:
  run [KEY=VALUE ...] [-m]   run the pipeline (Hydra overrides; -m sweeps comma-separated values)
                             e.g. fars run llm=scripted pipeline.papers=4
                                  fars run -m pipeline.projects=1,2
                                  fars run resume=outputs/2026-01-01/12-00-00-000000
  run --cfg job              print the composed config and exit
  run --help                 Hydra's help: config groups and their options
  compare BASE CAND [...]    compare runs or a sweep folder; exit 1 on a score regression (--help)
  report RUN                 write RUN/report.html, a self-contained page of the run (--help)
  review PAPER [KEY=VALUE]   review a .pdf/.tex/.md/.txt paper; writes review.json and review.md (--help)
  calibrate [KEY=VALUE]      measure the reviewer against human reviews, optionally fit its calibration (--help)
  probe [KEY=VALUE]          plant flaws in papers and measure what they do to the reviewer's score (--help)

exit status: 0 done, 1 the run produced no paper, 2 bad config or arguments
"""

# other commands: name -> module with ``main(args: list[str]) -> int`` (imported only when used)
COMMANDS: dict[str, str] = {
    "compare": "fars.commands.compare",
    "report": "fars.commands.report",
    "review": "fars.commands.review",
    "calibrate": "fars.commands.calibrate",
    "probe": "fars.commands.probe",
}

log = logging.getLogger("fars")
_last_record: Any = None


class UsageError(Exception):
    """Bad command-line input; the message says what to do."""


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``fars`` console script."""
    args = sys.argv[1:] if argv is None else list(argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    if args[0] in ("--version", "version"):
        print(f"fars {__version__}")
        return 0
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


def _resume_overrides(run_dir_text: str, overrides: list[str]) -> list[str]:
    """The overrides a run was started with, then the new ones, pinned to the old run folder."""
    import yaml

    run_dir = Path(run_dir_text).expanduser()
    from fars.pipeline import LEDGER_FILE

    saved = run_dir / ".hydra" / "overrides.yaml"
    # a run killed during start-up has its overrides but no ledger yet: resuming starts it afresh there
    if not (run_dir / LEDGER_FILE).is_file() and not saved.is_file():
        raise UsageError(
            f"resume={run_dir_text}: neither {LEDGER_FILE} nor .hydra/overrides.yaml there; "
            "give the folder of an earlier `fars run`"
        )
    original = yaml.safe_load(saved.read_text()) if saved.is_file() else []
    keep = [o for o in original if not o.startswith(("resume=", "hydra.run.dir="))]
    new = [o for o in overrides if not o.startswith("resume=")]
    return [*keep, *new, f"resume={run_dir.resolve()}", f"hydra.run.dir={run_dir.resolve()}"]


def expand_jobs(overrides: list[str], multirun: bool) -> list[list[str]]:
    """The override list of every job the command would launch (one unless sweeping)."""
    if not multirun:
        return [overrides]
    from hydra import compose, initialize_config_dir
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    user = [o for o in overrides if not o.startswith("hydra.")]
    preset: list[str] = []  # sweep values a preset declares in hydra.sweeper.params (+sweep=...)
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            params = compose("run", overrides=user, return_hydra_config=True).hydra.sweeper.get("params") or {}
        given = {o.split("=", 1)[0].lstrip("+~") for o in user}
        preset = [f"{key}={value}" for key, value in params.items() if key not in given]
    except HydraException:
        pass  # preflight reports the composition problem itself
    parsed = OverridesParser.create().parse_overrides([*user, *preset])
    batches = BasicSweeper.split_arguments(parsed, None)
    return [job for batch in batches for job in batch]


def preflight(jobs: list[list[str]]) -> list[str]:
    """Compose and validate every job's config; return every problem found (empty when all good)."""
    from hydra import initialize_config_dir

    from fars.commands.configured import compose_job
    from fars.config import ConfigError, validate_config
    from fars.latex import engine_notice

    problems: list[str] = []
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        for job in jobs:
            label = f"job [{' '.join(job)}]: " if len(jobs) > 1 else ""
            raw, rejected = compose_job("run", [o for o in job if not o.startswith("hydra.")])
            problems += [label + p for p in rejected]
            if raw is None:
                continue
            try:
                cfg = validate_config(raw)
            except ConfigError as exc:
                problems += [label + p for p in exc.problems]
                continue
            level, notice = engine_notice(cfg.paper.compile, cfg.paper.engine)
            if level >= logging.ERROR:  # paper.compile=always without a TeX engine: refuse before running
                problems.append(label + notice)
    return problems


def run_command(args: list[str]) -> int:
    """``fars run``: validate every job up front, then hand over to Hydra."""
    if not CONF_DIR.is_dir():
        raise UsageError(f"config folder {CONF_DIR} is missing; install FARS from its source tree (pip install -e .)")
    passthrough = any(a in ("--cfg", "-c", "--help", "-h", "--hydra-help", "--info", "-i") for a in args)
    multirun = any(a in ("-m", "--multirun") for a in args)
    overrides = [a for a in args if not a.startswith("-")]
    flags = [a for a in args if a.startswith("-")]
    resume = [o.split("=", 1)[1] for o in overrides if o.startswith("resume=")]
    if resume and resume[0] not in ("", "null"):
        if multirun:
            raise UsageError("resume= cannot be combined with -m; resume one run folder at a time")
        overrides = _resume_overrides(resume[0], overrides)
    if not passthrough:
        problems = preflight(expand_jobs(overrides, multirun))
        if problems:
            from fars.commands.configured import listing

            print(f"fars run: {listing(problems)}", file=sys.stderr)
            return 2
    sys.argv = ["fars", *flags, *overrides]
    _hydra_entry()
    if _last_record is not None and not _last_record.scores:
        return 1
    return 0


def _task(dict_config: Any) -> float | None:
    """The Hydra task: one run of the pipeline in Hydra's output folder."""
    import asyncio

    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import OmegaConf

    from fars.config import validate_config
    from fars.pipeline import Pipeline

    global _last_record
    raw: dict[str, Any] = OmegaConf.to_container(dict_config, resolve=True)  # type: ignore[assignment]
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
        run_dir, cfg.llm.model, cfg.pipeline.papers, cfg.pipeline.projects, tracker,
        " | resuming" if cfg.resume else "",
    )  # fmt: skip
    log.info("after a crash or kill, continue with: fars run resume=%s", run_dir)
    record = asyncio.run(Pipeline(cfg, raw, run_dir).run())
    _last_record = record
    usage = record.totals.overall
    log.info(
        "%s: %d paper(s) in %.0fs, mean rating %s, %d tokens (%d calls, %d cached), $%.4f | %s",
        record.status, len(record.scores), record.wall_s,
        "n/a" if record.mean_score is None else f"{record.mean_score:.2f}",
        usage.total_tokens, usage.calls, usage.cache_hits, usage.cost_usd, run_dir / "run_record.json",
    )  # fmt: skip
    if cfg.tracker.backend == "wandb" and cfg.tracker.mode == "offline":
        log.info("upload the W&B run later with: wandb sync %s/wandb/offline-run-*", run_dir)
    return record.mean_score


def _hydra_entry() -> None:
    import hydra

    hydra.main(config_path=str(CONF_DIR), config_name="run", version_base="1.3")(_task)()


if __name__ == "__main__":
    from fars import cli as _cli  # the importable module: commands raise *its* UsageError, not __main__'s

    sys.exit(_cli.main())
