"""The search over programs at scale on CPU slots: nodes per hour and pool utilisation against the slot bound.

    python benchmarks/code_search.py [--projects 4] [--slots 2] [--nodes 6] [--parallel 2] [--steps 1000]
                                     [--seeds 2] [--latency 0.5]

Each project runs one ``fars.code.search.CodeSearch`` over the simulated template (``experiments/simulated``:
its job sleeps ``steps`` milliseconds), all projects sharing one job runner with ``--slots`` CPU slots, every
job in the sandbox exactly as the Experiment stage runs it (``fars.stages.experiment.code_runner``). The
model is a stand-in that answers after ``--latency`` seconds with a real edit of ``train.py``: most edits
work (a node then holds its slots for a smoke run and one run per seed); one in four misquotes the file
(refused, no job) and one in five raises at run time (its smoke run fails). Printed: nodes finished and
nodes per hour; the slot-seconds the jobs held (from lease to release) over ``slots x wall``; and the slot
bound, the nodes per hour if every slot were busy with this mix's jobs at their measured length.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("OMP_NUM_THREADS", "1")

from experiments.spec import load_template
from fars.code.search import CodeSearch
from fars.config import CodeSearchConfig, validate_config
from fars.executor.runner import Runner
from fars.run.contracts import Condition
from fars.stages.experiment import base_config, code_runner, condition_args

LINE = '    accuracy += 0.02 * (args.optimizer == "adam") + 0.01 * (args.regularizer == "dropout")'


@dataclass
class Reply:
    text: str


class StandIn:
    """Answers each prompt after ``latency`` seconds with an edit that works, misquotes, or fails at run time."""

    def __init__(self, latency: float, project: int) -> None:
        self.latency = latency
        self.project = project
        self.calls = 0

    async def complete(self, messages: list[dict[str, str]], *, max_tokens: int | None = None) -> Reply:
        await asyncio.sleep(self.latency)
        self.calls += 1
        node = int(re.search(r"version n(\d+)", messages[-1]["content"]).group(1))  # type: ignore[union-attr]
        k = node + 7 * self.project
        if k % 4 == 3:
            search, added = LINE.replace("0.02", "0.2"), "    accuracy += 0.01"  # misquoted: refused
        elif k % 5 == 4:
            search, added = LINE, "    accuracy += 0.01 * args.no_such_flag"  # AttributeError at run time
        else:
            search, added = LINE, f"    accuracy += {0.001 * (k % 7 + 1):.3f}  # variant {k}"
        return Reply(f"train.py\n<<<<<<< SEARCH\n{search}\n=======\n{LINE}\n{added}\n>>>>>>> REPLACE\n")


async def main(args: argparse.Namespace) -> None:
    cfg = validate_config({"executor": {"slots": args.slots}, "experiment": {"seeds": args.seeds}})
    runner = Runner(cfg.experiment, cfg.executor)
    assert runner.pool is not None
    pool = runner.pool
    held: list[float] = []
    lease = pool.lease

    @contextlib.asynccontextmanager
    async def timed(n: int, name: str = "") -> AsyncIterator[Any]:
        async with lease(n, name) as got:
            started = time.perf_counter()
            try:
                yield got
            finally:
                held.append(n * (time.perf_counter() - started))

    pool.lease = timed  # type: ignore[method-assign]
    spec = load_template("simulated")
    base = base_config(spec, {}, "ci")
    defaults = condition_args(spec, base, Condition(name="baseline", role="baseline"))
    root = Path(tempfile.mkdtemp(prefix="fars-code-search-"))
    seeds = list(range(args.seeds))
    settings = CodeSearchConfig(
        drafts=2, debug_depth=1, improve_steps=max(1, args.nodes), max_nodes=args.nodes, parallel=args.parallel,
        ablations=False,
    )  # fmt: skip
    models = [StandIn(args.latency, p) for p in range(args.projects)]

    async def project(p: int) -> list[Any]:
        folder = root / f"p{p:03d}"
        folder.mkdir(mode=0o755)
        (folder / "ds_config.json").write_text("{}")
        run_code = code_runner(runner, spec, defaults, folder / "ds_config.json", cfg.sandbox, "cpu")
        baseline = [0.88] * len(seeds)  # the plan's baseline is not part of the search: not rerun here
        search = CodeSearch(
            llm=models[p], spec=spec, hypothesis=f"variant family {p}", method="the plan's method",
            baseline=baseline, seeds=seeds, steps=args.steps, settings=settings, folder=folder / "code",
            run_dir=root, run_code=run_code, remember=lambda node, reply: None, known={},
        )  # fmt: skip
        return (await search.search()).summary.nodes

    started = time.perf_counter()
    done = await asyncio.gather(*(project(p) for p in range(args.projects)))
    wall = time.perf_counter() - started
    nodes = [n for ns in done for n in ns]
    working = sum(1 for n in nodes if n.verdict != "buggy")
    jobs = len(held)
    slot_s = sum(held)
    per_node = slot_s / max(1, len(nodes))  # this mix's slot-seconds per node, measured
    bound = args.slots * 3600 / per_node if per_node else float("inf")
    print(f"machine: {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; {args.projects} projects x {args.nodes} nodes, "
          f"{args.slots} slots, {args.parallel} nodes at once a project, jobs of {args.steps} ms x {args.seeds} seeds + smoke")  # fmt: skip
    print(
        f"nodes: {len(nodes)} ({working} working, {len(nodes) - working} buggy), {jobs} sandboxed jobs, "
        f"{sum(m.calls for m in models)} model calls of {args.latency:.2f} s"
    )
    print(f"wall: {wall:.1f} s; nodes per hour: {len(nodes) * 3600 / wall:,.0f}")
    print(
        f"pool: {slot_s:.1f} slot-seconds held of {args.slots * wall:.1f} -> utilisation {slot_s / (args.slots * wall):.0%}"
    )
    print(
        f"slot bound: {bound:,.0f} nodes per hour ({per_node:.2f} slot-seconds a node); reached {len(nodes) * 3600 / wall / bound:.0%}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--projects", type=int, default=4)
    parser.add_argument("--slots", type=int, default=2)
    parser.add_argument("--nodes", type=int, default=6)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--latency", type=float, default=0.5)
    asyncio.run(main(parser.parse_args()))
