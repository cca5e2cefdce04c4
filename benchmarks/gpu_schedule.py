"""Simulate the GPU pool at the reference system's scale: 160 GPUs, 244 projects; utilisation and makespan.

    python benchmarks/gpu_schedule.py [--gpus 160] [--projects 244] [--in-flight 32] [--seed 0]

Stated workload (chosen so the total lands near the reference run's 160 GPUs x 228 h):
  * the pipeline keeps ``--in-flight`` projects going; a project first spends ideation + planning
    off the GPUs (lognormal, median 20 min, sigma 0.5), then submits its experiment jobs at once, and
    after the last one ends spends writing + review off the GPUs (median 30 min), then the next starts;
  * jobs per project: baseline + 2 variants (+ a model-written method with probability 0.5) x 3 seeds;
  * GPUs per job, one draw per project: 1 (50%), 2 (30%), 4 (15%), 8 (5%);
  * job length: lognormal, median 4 h, sigma 0.7, times a per-project factor (lognormal, sigma 0.3),
    capped at 24 h (the executor's time limit).
Jobs are placed by the pool's own bookkeeping (``fars.executor.pool.SlotBook``) with the pool's policy:
arrival order, backfill past a request that does not fit, until it has been passed over ``max_bypass``
times. Lower bound of the makespan: the larger of total GPU-time / GPUs and the longest single project
(its off-GPU phases plus its longest job); no schedule can beat either.
"""

from __future__ import annotations

import argparse
import heapq
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fars.executor.pool import SlotBook


@dataclass
class Job:
    """One training job: its project, GPUs, length and how often it was passed over."""

    project: int
    gpus: int
    hours: float
    bypassed: int = 0


@dataclass
class Project:
    """A project's off-GPU phases and its jobs."""

    pre_h: float
    post_h: float
    jobs: list[Job] = field(default_factory=list)
    left: int = 0


def make_projects(n: int, rng: random.Random) -> list[Project]:
    """The stated workload."""
    projects = []
    for i in range(n):
        p = Project(pre_h=rng.lognormvariate(0, 0.5) * 20 / 60, post_h=rng.lognormvariate(0, 0.5) * 30 / 60)
        gpus = rng.choices([1, 2, 4, 8], weights=[50, 30, 15, 5])[0]
        scale = rng.lognormvariate(0, 0.3)
        conditions = 3 + (rng.random() < 0.5)
        for _ in range(conditions * 3):
            p.jobs.append(Job(i, gpus, min(24.0, 4.0 * scale * rng.lognormvariate(0, 0.7))))
        p.left = len(p.jobs)
        projects.append(p)
    return projects


def simulate(gpus: int, projects: list[Project], in_flight: int, max_bypass: int = 8) -> tuple[float, float]:
    """Run the schedule; returns (makespan in hours, busy GPU-hours)."""
    book = SlotBook(list(range(gpus)))
    events: list[tuple[float, int, str, int, tuple[int, ...]]] = []  # (time, seq, kind, index, slots)
    seq = 0
    queue: list[Job] = []
    running: dict[int, Job] = {}
    busy = 0.0
    now = 0.0
    next_project = 0

    def push(t: float, kind: str, index: int, slots: tuple[int, ...] = ()) -> None:
        nonlocal seq
        heapq.heappush(events, (t, seq, kind, index, slots))
        seq += 1

    def start_project() -> None:
        nonlocal next_project
        if next_project < len(projects):
            push(now + projects[next_project].pre_h, "submit", next_project)
            next_project += 1

    def dispatch() -> None:
        nonlocal busy
        blocked: list[Job] = []
        for job in list(queue):
            if any(b.bypassed >= max_bypass for b in blocked):
                break
            slots = book.take(job.gpus)
            if slots is None:
                blocked.append(job)
                continue
            for b in blocked:
                b.bypassed += 1
            queue.remove(job)
            busy += job.gpus * job.hours
            running[id(job)] = job
            push(now + job.hours, "end", id(job), slots)

    for _ in range(in_flight):
        start_project()
    while events:
        now, _, kind, index, slots = heapq.heappop(events)
        if kind == "submit":
            queue.extend(projects[index].jobs)
        elif kind == "end":
            job = running.pop(index)
            book.give_back(slots)
            project = projects[job.project]
            project.left -= 1
            if project.left == 0:
                push(now + project.post_h, "done", job.project)
        elif kind == "done":
            start_project()
        dispatch()
    assert book.in_use == 0 and not queue and not running
    return now, busy


def main() -> None:
    """Simulate and print utilisation and makespan against its lower bound."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gpus", type=int, default=160)
    p.add_argument("--projects", type=int, default=244)
    p.add_argument("--in-flight", type=int, nargs="+", default=[16, 32, 64])
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    print(f"{a.gpus} GPUs, {a.projects} projects (workload in this file's docstring), seed {a.seed}")
    print(
        f"{'in flight':>9s} {'jobs':>6s} {'GPU-h':>9s} {'makespan h':>11s} {'lower bound h':>14s} {'ratio':>6s} {'util':>6s}"
    )
    for in_flight in a.in_flight:
        projects = make_projects(a.projects, random.Random(a.seed))
        work = sum(j.gpus * j.hours for pr in projects for j in pr.jobs)
        longest = max(pr.pre_h + max(j.hours for j in pr.jobs) + pr.post_h for pr in projects)
        bound = max(work / a.gpus, longest)
        makespan, busy = simulate(a.gpus, projects, in_flight)
        jobs = sum(len(pr.jobs) for pr in projects)
        util = busy / (a.gpus * makespan)
        print(
            f"{in_flight:9d} {jobs:6d} {work:9,.0f} {makespan:11.1f} {bound:14.1f} {makespan / bound:6.3f} {util:6.1%}"
        )


if __name__ == "__main__":
    main()
