"""``fars compare BASELINE CANDIDATE [...]``: compare runs and gate CI on score regressions.

Each argument is a run folder, a ``run_record.json`` or a sweep folder (every job in it). The first
run is the baseline; every other run is compared with it, and one table is printed, with each
comparison's minimum detectable effect. Settings come from ``conf/compare.yaml``, then flags, then
``KEY=VALUE`` (or ``compare.KEY=VALUE``) arguments, e.g. ``compare.require_power=true``.

Exit status: 0 no regression (or inconclusive, unless ``require_power``); 1 a regression beyond the
margin at the confidence; 2 an error (bad input, too few papers); 3 inconclusive with
``require_power=true`` (the runs could not have shown a drop of the margin, or the scores do not
vary). Needs only the run folders (RunRecords, and review.json for the reviewer's noise); W&B plays no part.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from fars.commands.configured import CONF_DIR
from fars.evaluation.compare import (
    CompareError,
    CompareSettings,
    Comparison,
    LoadedRun,
    compare_runs,
    format_details,
    format_table,
    load_runs,
    resolve_noise,
    run_stats,
)

DEFAULTS_FILE = CONF_DIR / "compare.yaml"


def parser() -> argparse.ArgumentParser:
    """The command-line flags; unset flags fall back to the defaults file."""
    p = argparse.ArgumentParser(
        prog="fars compare",
        description="Compare runs (the first is the baseline) and exit 1 on a score regression.",
        epilog="exit status: 0 no regression (or inconclusive), 1 regression beyond the margin, 2 error, "
        "3 inconclusive with require_power. Settings may also be given as KEY=VALUE, e.g. compare.require_power=true",
    )
    p.add_argument("runs", nargs="+", help="run folders, run_record.json files or sweep folders")
    p.add_argument("--margin", type=float, help="rating points the mean may drop before it is a regression")
    p.add_argument("--confidence", type=float, help="confidence of the one-sided bound (e.g. 0.95)")
    p.add_argument("--metric", choices=["auto", "raw", "calibrated"], help="which score to compare")
    p.add_argument("--resamples", type=int, help="bootstrap resamples")
    p.add_argument("--seed", type=int, help="bootstrap seed")
    p.add_argument("--min-papers", dest="min_papers", type=int, help="rated papers each run needs")
    p.add_argument("--power", type=float, help="power at which the minimum detectable effect is sized (e.g. 0.8)")
    p.add_argument(
        "--require-power",
        dest="require_power",
        action="store_const",
        const=True,
        help="exit 3 when a comparison is inconclusive (the margin cannot be detected)",
    )
    p.add_argument("--noise", help="reviewer test-retest SD (rating points) or a calibration/probe JSON")
    p.add_argument("--baseline", type=int, default=0, help="index of the baseline among all runs (default 0)")
    p.add_argument("--config", type=Path, default=DEFAULTS_FILE, help="YAML file of defaults")
    p.add_argument("--json", type=Path, help="also write the full result as JSON to this file")
    return p


_OVERRIDE = re.compile(r"^(?:compare\.)?([a-z_]+)=(.*)$")


def split_overrides(args: list[str]) -> tuple[list[str], dict[str, Any]]:
    """Arguments without the ``[compare.]KEY=VALUE`` settings among them (a path that exists stays a path)."""
    rest, overrides = [], {}
    for arg in args:
        match = _OVERRIDE.match(arg)
        if match and not arg.startswith("-") and not Path(arg).exists():
            overrides[match.group(1)] = yaml.safe_load(match.group(2)) if match.group(2) else None
        else:
            rest.append(arg)
    return rest, overrides


def settings_from(args: argparse.Namespace, overrides: dict[str, Any] | None = None) -> CompareSettings:
    """Defaults from the config file, overridden by the flags given, then by KEY=VALUE arguments."""
    values: dict[str, Any] = {}
    if args.config is not None:
        if not args.config.is_file():
            raise CompareError(f"--config {args.config}: no such file")
        values = yaml.safe_load(args.config.read_text(encoding="utf-8")) or {}
    for name in CompareSettings.model_fields:
        if getattr(args, name, None) is not None:
            values[name] = getattr(args, name)
    unknown = sorted(set(overrides or {}) - set(CompareSettings.model_fields))
    if unknown:
        raise CompareError(f"unknown compare setting(s) {unknown}; known: {sorted(CompareSettings.model_fields)}")
    values.update(overrides or {})
    try:
        return CompareSettings.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise CompareError(f"invalid compare settings ({args.config} and flags): {problems}") from None


def _json_ready(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: _json_ready(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(v) for v in value]
    return value


def main(args: list[str]) -> int:
    """Run the comparison; print the table and verdicts; return the exit status."""
    rest, overrides = split_overrides(args)
    ns = parser().parse_args(rest)
    try:
        settings = settings_from(ns, overrides)
        runs: list[LoadedRun] = [run for path in ns.runs for run in load_runs(path)]
        if not 0 <= ns.baseline < len(runs):
            raise CompareError(f"--baseline {ns.baseline}: there are {len(runs)} run(s), give 0 to {len(runs) - 1}")
        noise = resolve_noise(settings.noise, runs)
    except CompareError as exc:
        print(f"fars compare: {exc}", file=sys.stderr)
        return 2
    runs.insert(0, runs.pop(ns.baseline))
    rows = [run_stats(run) for run in runs]
    comparisons: dict[int, Comparison | str] = {}
    errors: list[str] = []
    for i, run in enumerate(runs[1:], start=1):
        try:
            comparisons[i] = compare_runs(runs[0], run, settings, noise)
        except (CompareError, ValueError) as exc:
            comparisons[i] = "error"
            errors.append(f"{i} vs 0: {exc}")
    print(format_table(rows, comparisons))
    print(format_details(rows, comparisons))
    regressions = [i for i, c in comparisons.items() if isinstance(c, Comparison) and c.verdict == "regression"]
    inconclusive = [i for i, c in comparisons.items() if isinstance(c, Comparison) and c.verdict == "inconclusive"]
    if ns.json is not None:
        ns.json.write_text(
            json.dumps(
                _json_ready(
                    {
                        "settings": settings.model_dump(),
                        "runs": rows,
                        "comparisons": comparisons,
                        "errors": errors,
                        "regressions": regressions,
                        "inconclusive": inconclusive,
                    }
                ),
                indent=1,
            ),
            encoding="utf-8",
        )
    for line in errors:
        print(f"fars compare: {line}", file=sys.stderr)
    if len(runs) == 1:
        print("\none run: nothing to compare (give a baseline and a candidate, or a sweep folder)")
        return 0
    if errors:
        return 2
    if regressions:
        print(f"\nVERDICT: regression in run(s) {regressions} against {runs[0].label} (exit 1)")
        return 1
    if inconclusive:
        code = 3 if settings.require_power else 0
        hint = "" if settings.require_power else "; compare.require_power=true makes this exit 3"
        print(
            f"\nVERDICT: inconclusive for run(s) {inconclusive} against {runs[0].label}: a drop of the margin "
            f"{settings.margin} could not have been detected, so this is not evidence of no regression (exit {code}{hint})"
        )
        return code
    print(f"\nVERDICT: no regression against {runs[0].label} (exit 0)")
    return 0
