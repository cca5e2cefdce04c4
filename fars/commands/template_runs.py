"""The runs ``fars template check`` makes of a template, shared by its smoke runs and its option audit
(``fars.commands.template_audit``): the flags at a scale, the command line, a launch inside the sandbox (or
beside a scripted subject model for an inference template), and the metrics contract each run is held to."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path
from typing import Any


def method_of_every_slot(spec: Any) -> dict[str, str]:
    """A method that changes every component slot to its first alternative (one run covers them all)."""
    return {c.name: c.alternatives[0] for c in spec.components}


def contract_problems(spec: Any, out: Path, given: dict[str, Any], file: str = "metrics.json") -> list[str]:
    """What is wrong with a smoke run's metrics (``file`` in the run's folder ``out``) under the metrics
    contract (empty: nothing)."""
    from pydantic import ValidationError

    from experiments.metrics import Metrics
    from fars.sandbox import SandboxError, read_sandbox_file

    try:
        metrics = Metrics.model_validate_json(read_sandbox_file(out, file))
    except SandboxError as exc:
        return [f"{file}: {exc}"]
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
    elif spec.metric_range is not None and not spec.metric_range[0] <= value <= spec.metric_range[1]:
        problems.append(f"final {spec.metric} is {value}, outside the spec's metric_range {list(spec.metric_range)}")
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


def smoke_flags(spec: Any, components: dict[str, str], scale: str = "smoke") -> tuple[int, dict[str, Any]]:
    """The steps and every flag (knobs at the scale's values, components over the baseline's) of a check run."""
    size = spec.scale(scale)
    knobs = {**spec.defaults(), **{k: spec.knob(k).coerce(v) for k, v in size.knobs.items()}}
    return size.steps, {**knobs, **spec.baseline_components(), **components}


def run_argv(out: Path, seed: int, steps: int, flags: dict[str, Any]) -> list[str]:
    """The entry point's command line for one run (after the interpreter and the entry point's path)."""
    return [
        "--out_dir",
        str(out),
        "--seed",
        str(seed),
        "--steps",
        str(steps),
        *[f"--{k}={v}" for k, v in flags.items()],
    ]


async def launch(spec: Any, argv: list[str], workdir: Path, log_path: Path, timeout_s: float) -> list[str]:
    """Run ``argv`` as a template job would run (a training template inside the sandbox, writing only in
    ``workdir``; an inference template beside a subject gateway to a scripted model); what went wrong."""
    from fars.config import LLMConfig
    from fars.executor.gateway import SubjectGateway
    from fars.executor.runner import template_runtime
    from fars.llm.client import LLMClient
    from fars.sandbox import SandboxLimits, run_sandboxed_async

    if spec.kind == "training":
        result = await run_sandboxed_async(
            argv,
            workdir,
            SandboxLimits(wall_s=timeout_s),
            env={"OMP_NUM_THREADS": "1", "PYTHONPATH": template_runtime()[1]},
            readable=[*template_runtime()[0], str(spec.folder)],
            log_path=log_path,
        )
        if result.timed_out:
            return [f"ran past {timeout_s:g} s and was killed (see {log_path})"]
        if not result.ok:
            tail = (result.stderr_tail or result.stdout_tail)[-800:]
            return [f"the entry point failed in the sandbox: {result.summary()}\n{tail}"]
        return []
    client = LLMClient(LLMConfig(model="scripted/template-check", cache=False))
    gateway = SubjectGateway(client)
    gateway.start()
    try:
        _, env = gateway.grant("check", "experiment", workdir.name)
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=workdir,
            env={**_plain_env(), **env},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            output, _ = await asyncio.wait_for(proc.communicate(), timeout_s)
        except asyncio.TimeoutError:
            proc.kill()
            return [f"ran past {timeout_s:g} s and was killed"]
        log_path.write_bytes(output or b"")
        if proc.returncode != 0:
            return [f"the entry point exited {proc.returncode}:\n{(output or b'').decode(errors='replace')[-800:]}"]
        if gateway.calls == 0:
            return ["an inference template made no call to its subject model (FARS_SUBJECT_URL)"]
        return []
    finally:
        gateway.close()
        client.close()


def _plain_env() -> dict[str, str]:
    from fars.executor.launch import job_env

    return job_env(1)
