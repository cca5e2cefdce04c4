"""``fars template list [DIR ...]`` and ``fars template check DIR``: the templates FARS can use, and one checked.

``list`` shows every template by name (the bundled ones and those under the given folders, as
``experiment.template_dirs`` would find them): domain, metric and direction, knobs, components, kind,
data licence, folder. ``check`` validates one template folder the way a run would use it:

1. the spec (``template.yaml``): every field, knob, component, scale and the entry point;
2. a smoke run of the baseline and one of a method that changes every component slot at once, each
   inside ``fars.sandbox`` (no network, no secrets, only the template folder readable) at the
   template's ``smoke`` scale; an inference template's subject model is served by a scripted model
   through the subject gateway instead, outside the sandbox (the gateway listens on the host);
3. the metrics contract: ``metrics.json`` validates, names the declared metric, reports it finite,
   and records every knob and component with the value it was given (the entry point honours them);
4. with ``--audit``, the option audit (``fars.commands.template_audit``): each option alone against the
   baseline over a few seeds, flagging one far outside the seed spread that the spec does not explain.

Exit status: 0 every check passed, 1 a check failed (each named), 2 bad arguments or an unreadable spec
(``list`` still lists the good templates, and names each refused one on stderr).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from fars.commands.configured import UsageError
from fars.commands.template_runs import contract_problems, launch, method_of_every_slot, run_argv, smoke_flags

USAGE = """usage: fars template list [DIR ...]
       fars template check DIR [--keep] [--timeout SECONDS] [--audit [--seeds N] [--scale NAME]]

  list              every template FARS can use (bundled, and the templates under each DIR)
  check DIR         validate the template folder DIR: its spec, a sandboxed smoke run of the baseline and
                    of a method changing every component, and the metrics contract
  --keep            keep the smoke runs' folders (printed) instead of deleting them
  --audit           also run the option audit: the baseline and each component option alone over --seeds seeds
                    (3) at the --scale scale (smoke), flagging an option far outside the seed spread that the
                    spec's known_effects does not explain, and a baseline whose seeds all agree
exit status: 0 all checks passed, 1 a check failed, 2 bad arguments or an unreadable spec (list: the good
templates are listed, each refused one named)
"""


def main(args: list[str]) -> int:
    """Entry point of ``fars template``."""
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command == "list":
        return list_templates(rest)
    if command == "check":
        rest = list(rest)
        keep, audit = _switch(rest, "--keep"), _switch(rest, "--audit")
        timeout = float(_option(rest, "--timeout", "300", "a number of seconds", float))
        seeds = int(_option(rest, "--seeds", "3", "a whole number of seeds, at least 2", _at_least_two))
        scale = str(_option(rest, "--scale", "smoke", "a scale name", str))
        folders = [a for a in rest if not a.startswith("--")]
        if len(folders) != 1:
            raise UsageError(f"check takes one template folder (got {folders or 'none'}); see `fars template --help`")
        return check_template(Path(folders[0]), keep=keep, timeout_s=timeout, audit=audit, seeds=seeds, scale=scale)
    raise UsageError(f"unknown template command {command!r}; use list or check")


def _switch(rest: list[str], flag: str) -> bool:
    """Whether ``flag`` is in ``rest`` (removed)."""
    if flag in rest:
        rest.remove(flag)
        return True
    return False


def _option(rest: list[str], flag: str, default: str, what: str, parse: Any) -> Any:
    """The value after ``flag`` in ``rest`` parsed (both removed), or ``default``; UsageError naming a bad one."""
    if flag not in rest:
        return parse(default)
    at = rest.index(flag)
    try:
        value = parse(rest[at + 1])
    except (IndexError, ValueError):
        raise UsageError(f"{flag} needs {what}") from None
    del rest[at : at + 2]
    return value


def _at_least_two(text: str) -> int:
    if int(text) < 2:
        raise ValueError(text)
    return int(text)


def list_templates(dirs: list[str]) -> int:
    """Print every template FARS can use, then name each template folder it refused and why (exit 2 then).

    A refused spec (a link, a FIFO, too large, a YAML bomb, a path leading out of its folder) is named on
    stderr with what to do, never its content; the good templates are listed all the same.
    """
    from experiments.spec import TemplateError, load_spec, scan_templates

    folders, problems = scan_templates(dirs)
    specs = []
    for folder in folders.values():
        try:
            specs.append(load_spec(folder))
        except TemplateError as exc:
            problems.append(str(exc))
    for spec in specs:
        direction = "higher" if spec.higher_is_better else "lower"
        slots = ", ".join(f"{c.name} ({'/'.join(c.options)})" for c in spec.components) or "none"
        flags = "" if spec.research else "  [not picked by templates=[auto]]"
        print(f"{spec.name}: {spec.title} - {spec.domain}{flags}")
        print(f"  metric {spec.metric} ({direction} is better) | kind {spec.kind} | engines {', '.join(spec.engines)}")
        print(f"  knobs: {', '.join(k.name for k in spec.knobs) or 'none'}")
        print(f"  components: {slots}")
        if spec.data is not None:
            print(f"  data: {spec.data.description} (licence: {spec.data.licence})")
        print(f"  folder: {spec.folder}")
    for problem in problems:
        print(f"refused: {problem}", file=sys.stderr)
    return 2 if problems else 0


async def _smoke(
    spec: Any, name: str, components: dict[str, str], root: Path, timeout_s: float
) -> tuple[str, list[str]]:
    """One smoke run of ``spec`` (sandboxed for training templates); its folder's name and its problems."""
    out = root / name
    out.mkdir(parents=True)
    steps, flags = smoke_flags(spec, components)
    argv = [sys.executable, str(spec.entry_path), *run_argv(out, 0, steps, flags)]
    problems = await launch(spec, argv, out, root / f"{name}.log", timeout_s)
    return name, problems or contract_problems(spec, out, flags)


def _smoke_runs(spec: Any, root: Path, timeout_s: float) -> int:
    """The smoke run of the baseline and of a method changing every slot, each its own process; the failures."""
    runs: list[tuple[str, dict[str, str]]] = [("baseline", {})]
    if spec.components:
        runs.append(("every-component", method_of_every_slot(spec)))

    async def go() -> list[tuple[str, list[str]]]:
        return [await _smoke(spec, name, comps, root, timeout_s) for name, comps in runs]

    failed = 0
    for (name, problems), (_, comps) in zip(asyncio.run(go()), runs, strict=True):
        what = f" ({json.dumps(comps)})" if comps else ""
        if problems:
            failed += 1
            print(f"smoke run {name}{what}: FAILED", file=sys.stderr)
            for problem in problems:
                print("  " + problem.replace("\n", "\n    "), file=sys.stderr)
        else:
            where = "in the sandbox" if spec.kind == "training" else "with a scripted subject model"
            print(f"smoke run {name}{what}: ok ({where})")
    return failed


def _audit(spec: Any, root: Path, *, seeds: int, scale: str, timeout_s: float) -> int:
    """Run and print the option audit (fars.commands.template_audit), whose runs also stand for the smoke runs
    (each held to the metrics contract); 1 when it fails, else 0."""
    from fars.commands.template_audit import run_audit

    if scale not in spec.scales:
        print(
            f"option audit: FAILED\n  {spec.name} declares no scale {scale!r} (it has {sorted(spec.scales)})",
            file=sys.stderr,
        )
        return 1
    if not spec.components:
        print("option audit: nothing to audit (no components); the smoke runs instead")
        return _smoke_runs(spec, root, timeout_s)
    if spec.kind != "training":
        print(
            "option audit: the subject model is scripted here, so the options' effects are the script's, not a "
            "model's; this checks that every option runs and records over several seeds"
        )
    report, problems = asyncio.run(run_audit(spec, root, seeds=seeds, scale=scale, timeout_s=timeout_s))
    if report is None:
        print("option audit: FAILED", file=sys.stderr)
        for problem in problems[:12]:
            print("  " + problem.replace("\n", "\n    "), file=sys.stderr)
        return 1
    where = "in the sandbox" if spec.kind == "training" else "with a scripted subject model"
    print(f"contract: ok (every audit run {where}, one process, wrote metrics the contract accepts)")
    print("\n".join(report.lines()), file=sys.stdout if report.ok else sys.stderr)
    return 0 if report.ok else 1


def check_template(
    folder: Path,
    *,
    keep: bool = False,
    timeout_s: float = 300.0,
    audit: bool = False,
    seeds: int = 3,
    scale: str = "smoke",
) -> int:
    """Validate one template folder (see the module docstring); print each check; the exit status."""
    from experiments.spec import TemplateError, load_spec

    try:
        spec = load_spec(folder)
    except TemplateError as exc:
        print(f"spec: FAILED\n  {exc}", file=sys.stderr)
        return 2
    print(f"spec: ok ({spec.name}: {len(spec.knobs)} knobs, {len(spec.components)} components, metric {spec.metric})")
    root = Path(tempfile.mkdtemp(prefix=f"fars-check-{spec.name}-"))
    started = time.perf_counter()
    if audit:
        failed = _audit(spec, root, seeds=seeds, scale=scale, timeout_s=timeout_s)
    else:
        failed = _smoke_runs(spec, root, timeout_s)
    print(f"{spec.name}: {'FAILED' if failed else 'ok'} ({time.perf_counter() - started:.1f} s)")
    if keep:
        print(f"smoke runs kept in {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)
    return 1 if failed else 0
