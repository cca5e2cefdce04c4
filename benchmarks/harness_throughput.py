"""Harness throughput: papers per hour against the ideal bound, and the harness's CPU time per model call.

The model is the scripted provider with simulated latency (``--latency`` mean seconds drawn from
``--dist``), the experiments are ``experiments/simulated`` (a sleep of ``--experiment-ms``, varied
per seed). For each number of projects in flight P, P projects run at once through the real queue,
client, ledger and stages. The ideal bound is what a harness with zero overhead would achieve with
exactly the latencies and sleeps that were drawn: each project takes the sum of its model waits plus
its longest training job (jobs run in parallel), and projects are list-scheduled on P workers.

    python benchmarks/harness_throughput.py                       # P = 1 4 16 64 256 512
    python benchmarks/harness_throughput.py --projects 256 --latency 5 --dist exponential

Goals (issue 6): at least 0.95 of ideal at 256 projects, under 2 ms of harness CPU a model call.
The CPU figure is the whole process's CPU time (queue, client, litellm, ledger, status, and the
scripted model's reply generation) divided by the model calls: an upper bound on the overhead.
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from fars.cli import CONF_DIR
from fars.config import STAGE_NAMES, validate_config


def config_for(projects: int, ns: argparse.Namespace) -> dict[str, Any]:
    """The composed run config for P projects in flight."""
    stages = ns.stages.split(",")
    overrides = [
        "llm=scripted", "tracker=disabled", "llm.cache=false",
        f"llm.scripted.latency_s={ns.latency}", f"llm.scripted.latency_dist={ns.dist}",
        f"llm.scripted.latency_spread={ns.spread}", f"llm.scripted.output_tokens={ns.output_tokens}",
        f"llm.concurrency={max(1, projects * 4)}", f"pipeline.projects={projects}", f"pipeline.papers={projects}",
        f"pipeline.max_projects={projects}", f"pipeline.stages=[{','.join(stages)}]", "pipeline.status_interval_s=3600",
        "experiment.templates=[simulated]", f"experiment.steps={ns.experiment_ms}", "experiment.seeds=1",
        "experiment.max_variants=1", f"executor.slots={2 * projects}",
    ]  # fmt: skip
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        raw: dict[str, Any] = OmegaConf.to_container(compose("run", overrides=overrides), resolve=True)  # type: ignore[assignment]
    return raw


def ideal_makespan(durations: list[float], workers: int) -> float:
    """Makespan of list-scheduling the durations in order on ``workers`` workers with zero overhead."""
    free = [0.0] * workers
    end = 0.0
    for d in durations:
        start = heapq.heappop(free)
        heapq.heappush(free, start + d)
        end = max(end, start + d)
    return end


def scripted_waits() -> list[tuple[str | None, str | None, float]]:
    """The simulated latencies the scripted provider drew in the last run."""
    import litellm

    for entry in litellm.custom_provider_map or []:
        if entry.get("provider") == "scripted":
            return list(entry["custom_handler"].waits)
    raise RuntimeError("the scripted provider is not registered")


def run_once(projects: int, ns: argparse.Namespace) -> dict[str, Any]:
    """One run with P projects in flight; its achieved and ideal throughput and CPU per call."""
    from fars.pipeline import Pipeline

    raw = config_for(projects, ns)
    cfg = validate_config(raw)
    with tempfile.TemporaryDirectory(prefix="fars-bench-") as tmp:
        run_dir = Path(tmp)
        pipeline = Pipeline(cfg, raw, run_dir)
        cpu0, t0, children0 = time.process_time(), time.perf_counter(), os.times()
        record = asyncio.run(pipeline.run())
        wall = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
        children = os.times()
        child_cpu = (children.children_user - children0.children_user) + (
            children.children_system - children0.children_system
        )
        waits: dict[str, float] = {}
        for project, _stage, wait in scripted_waits():
            waits[project or "?"] = waits.get(project or "?", 0.0) + wait
        durations = []
        jobs = 0
        for p in record.projects:
            sleeps = [
                json.loads(m.read_text())["wall_s"] for m in (run_dir / "projects" / p.id).glob("runs/*/metrics.json")
            ]
            jobs += len(sleeps)
            durations.append(waits.get(p.id, 0.0) + max(sleeps, default=0.0))
    papers = sum(1 for p in record.projects if p.status.value == "done")
    calls = record.totals.overall.calls
    ideal = ideal_makespan(durations, projects)
    return {
        "projects": projects,
        "papers": papers,
        "failed": sum(1 for p in record.projects if p.status.value == "failed"),
        "calls": calls,
        "jobs": jobs,
        "wall_s": wall,
        "ideal_s": ideal,
        "papers_per_hour": papers / wall * 3600,
        "ideal_papers_per_hour": papers / ideal * 3600 if ideal else 0.0,
        "ratio": ideal / wall if wall else 0.0,
        "cpu_ms_per_call": cpu / max(calls, 1) * 1000,
        "cpu_s": cpu,
        "child_cpu_ms_per_job": child_cpu / max(jobs, 1) * 1000,
    }


def main() -> int:
    """Run the sweep over projects in flight and print one table."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--projects", default="1,4,16,64,256,512", help="projects in flight, comma-separated")
    p.add_argument("--latency", type=float, default=2.0, help="mean simulated seconds per model call")
    p.add_argument("--dist", default="lognormal", choices=["fixed", "exponential", "lognormal", "uniform"])
    p.add_argument("--spread", type=float, default=0.5, help="lognormal sigma / uniform half-width share")
    p.add_argument("--output-tokens", dest="output_tokens", type=int, default=200)
    p.add_argument("--experiment-ms", dest="experiment_ms", type=int, default=5000, help="simulated training ms")
    p.add_argument("--stages", default=",".join(STAGE_NAMES), help="stages to run (a leading part)")
    p.add_argument("--json", type=Path, help="also write the results here")
    ns = p.parse_args()
    logging.basicConfig(level=logging.ERROR)
    for noisy in ("LiteLLM", "fars", "httpx"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    print(
        f"harness throughput | {os.cpu_count()} CPUs | latency {ns.dist} mean {ns.latency}s spread {ns.spread} | "
        f"experiments sleep ~{ns.experiment_ms} ms | stages {ns.stages}",
        flush=True,
    )
    run_once(1, argparse.Namespace(**{**vars(ns), "latency": 0.01, "experiment_ms": 10}))  # warm-up: imports, caches
    rows = []
    header = f"{'P':>5} {'papers':>6} {'calls':>6} {'wall s':>8} {'ideal s':>8} {'papers/h':>9} {'ideal/h':>9} {'ratio':>6} {'cpu ms/call':>11} {'job cpu ms':>10}"
    print(header, flush=True)
    for projects in (int(x) for x in ns.projects.split(",")):
        r = run_once(projects, ns)
        rows.append(r)
        print(
            f"{r['projects']:>5} {r['papers']:>6} {r['calls']:>6} {r['wall_s']:>8.1f} {r['ideal_s']:>8.1f} "
            f"{r['papers_per_hour']:>9.0f} {r['ideal_papers_per_hour']:>9.0f} {r['ratio']:>6.3f} "
            f"{r['cpu_ms_per_call']:>11.2f} {r['child_cpu_ms_per_job']:>10.0f}",
            flush=True,
        )
    if ns.json:
        ns.json.write_text(json.dumps(rows, indent=1))
    at = [r for r in rows if r["projects"] == 256]
    if at:
        r = at[0]
        print(
            f"goal at 256 in flight: ratio {r['ratio']:.3f} (goal >= 0.95), "
            f"harness CPU {r['cpu_ms_per_call']:.2f} ms per call (goal < 2 ms)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
