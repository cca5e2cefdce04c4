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
   and records every knob and component with the value it was given (the entry point honours them).

Exit status: 0 every check passed, 1 a check failed (each named), 2 bad arguments or an unreadable spec
(``list`` still lists the good templates, and names each refused one on stderr).
"""

from __future__ import annotations

import asyncio
import json
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from fars.commands.configured import UsageError

USAGE = """usage: fars template list [DIR ...]
       fars template check DIR [--keep] [--timeout SECONDS]

  list              every template FARS can use (bundled, and the templates under each DIR)
  check DIR         validate the template folder DIR: its spec, a sandboxed smoke run of the baseline and
                    of a method changing every component, and the metrics contract
  --keep            keep the smoke runs' folders (printed) instead of deleting them
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
        keep = "--keep" in rest
        timeout = 300.0
        if "--timeout" in rest:
            at = rest.index("--timeout")
            try:
                timeout = float(rest[at + 1])
            except (IndexError, ValueError):
                raise UsageError("--timeout needs a number of seconds") from None
            rest = rest[:at] + rest[at + 2 :]
        folders = [a for a in rest if not a.startswith("--")]
        if len(folders) != 1:
            raise UsageError(f"check takes one template folder (got {folders or 'none'}); see `fars template --help`")
        return check_template(Path(folders[0]), keep=keep, timeout_s=timeout)
    raise UsageError(f"unknown template command {command!r}; use list or check")


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


def method_of_every_slot(spec: Any) -> dict[str, str]:
    """A method that changes every component slot to its first alternative (one run covers them all)."""
    return {c.name: c.alternatives[0] for c in spec.components}


def contract_problems(spec: Any, out: Path, given: dict[str, Any]) -> list[str]:
    """What is wrong with a smoke run's ``metrics.json`` under the metrics contract (empty: nothing)."""
    from pydantic import ValidationError

    from experiments.metrics import Metrics
    from fars.sandbox import SandboxError, read_sandbox_file

    try:
        metrics = Metrics.model_validate_json(read_sandbox_file(out, "metrics.json"))
    except SandboxError as exc:
        return [f"metrics.json: {exc}"]
    except ValidationError as exc:
        fields = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5])
        return [f"metrics.json does not follow experiments.metrics.Metrics: {fields}"]
    problems = []
    if metrics.metric != spec.metric:
        problems.append(f"metrics.json names the metric {metrics.metric!r}, the spec {spec.metric!r}")
    value = metrics.final.get(spec.metric)
    if value is None:
        problems.append(f"final has no {spec.metric!r} (it has {sorted(metrics.final)})")
    elif not math.isfinite(value):
        problems.append(f"final {spec.metric} is {value}, not a finite number")
    for name, wanted in given.items():
        seen = metrics.config.get(name)
        if seen is None:
            problems.append(f"config does not record {name!r}: the entry point must record every knob and component")
        elif str(seen) != str(wanted) and not _same_number(seen, wanted):
            problems.append(f"config records {name}={seen!r} but the run was given {wanted!r}")
    return problems


def _same_number(a: Any, b: Any) -> bool:
    try:
        return math.isclose(float(a), float(b), rel_tol=1e-9)
    except (TypeError, ValueError):
        return False


async def _smoke(
    spec: Any, name: str, components: dict[str, str], root: Path, timeout_s: float
) -> tuple[str, list[str]]:
    """One smoke run of ``spec`` (sandboxed for training templates); its folder's name and its problems."""
    from fars.config import LLMConfig
    from fars.executor.gateway import SubjectGateway
    from fars.executor.runner import template_runtime
    from fars.llm.client import LLMClient
    from fars.sandbox import SandboxLimits, run_sandboxed_async

    out = root / name
    out.mkdir(parents=True)
    smoke = spec.scale("smoke")
    knobs = {**spec.defaults(), **{k: spec.knob(k).coerce(v) for k, v in smoke.knobs.items()}}
    flags = {**knobs, **spec.baseline_components(), **components}
    argv = [sys.executable, str(spec.entry_path), "--out_dir", str(out), "--seed", "0", "--steps", str(smoke.steps)]
    argv += [f"--{k}={v}" for k, v in flags.items()]
    if spec.kind == "training":
        result = await run_sandboxed_async(
            argv,
            out,
            SandboxLimits(wall_s=timeout_s),
            env={"OMP_NUM_THREADS": "1", "PYTHONPATH": template_runtime()[1]},
            readable=[*template_runtime()[0], str(spec.folder)],
            log_path=root / f"{name}.log",
        )
        if result.timed_out:
            return name, [f"ran past {timeout_s:g} s and was killed (see {root / name}.log)"]
        if not result.ok:
            tail = (result.stderr_tail or result.stdout_tail)[-800:]
            return name, [f"the entry point failed in the sandbox: {result.summary()}\n{tail}"]
        return name, contract_problems(spec, out, flags)
    client = LLMClient(LLMConfig(model="scripted/template-check", cache=False))
    gateway = SubjectGateway(client)
    gateway.start()
    try:
        _, env = gateway.grant("check", "experiment", name)
        proc = await asyncio.create_subprocess_exec(
            *argv, env={**_plain_env(), **env}, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        try:
            output, _ = await asyncio.wait_for(proc.communicate(), timeout_s)
        except asyncio.TimeoutError:
            proc.kill()
            return name, [f"ran past {timeout_s:g} s and was killed"]
        (root / f"{name}.log").write_bytes(output or b"")
        if proc.returncode != 0:
            return name, [
                f"the entry point exited {proc.returncode}:\n{(output or b'').decode(errors='replace')[-800:]}"
            ]
        problems = contract_problems(spec, out, flags)
        if gateway.calls == 0:
            problems.append("an inference template made no call to its subject model (FARS_SUBJECT_URL)")
        return name, problems
    finally:
        gateway.close()
        client.close()


def _plain_env() -> dict[str, str]:
    from fars.executor.launch import job_env

    return job_env(1)


def check_template(folder: Path, *, keep: bool = False, timeout_s: float = 300.0) -> int:
    """Validate one template folder (see the module docstring); print each check; the exit status."""
    from experiments.spec import TemplateError, load_spec

    try:
        spec = load_spec(folder)
    except TemplateError as exc:
        print(f"spec: FAILED\n  {exc}", file=sys.stderr)
        return 2
    print(f"spec: ok ({spec.name}: {len(spec.knobs)} knobs, {len(spec.components)} components, metric {spec.metric})")
    root = Path(tempfile.mkdtemp(prefix=f"fars-check-{spec.name}-"))
    runs: list[tuple[str, dict[str, str]]] = [("baseline", {})]
    if spec.components:
        runs.append(("every-component", method_of_every_slot(spec)))
    started = time.perf_counter()

    async def go() -> list[tuple[str, list[str]]]:
        return [await _smoke(spec, name, comps, root, timeout_s) for name, comps in runs]

    results = asyncio.run(go())
    failed = 0
    for (name, problems), (_, comps) in zip(results, runs, strict=True):
        what = f" ({json.dumps(comps)})" if comps else ""
        if problems:
            failed += 1
            print(f"smoke run {name}{what}: FAILED", file=sys.stderr)
            for problem in problems:
                print("  " + problem.replace("\n", "\n    "), file=sys.stderr)
        else:
            where = "in the sandbox" if spec.kind == "training" else "with a scripted subject model"
            print(f"smoke run {name}{what}: ok ({where})")
    print(f"{spec.name}: {'FAILED' if failed else 'ok'} ({time.perf_counter() - started:.1f} s)")
    if keep:
        print(f"smoke runs kept in {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)
    return 1 if failed else 0
