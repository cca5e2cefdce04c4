"""Work a stage leaves running (figures drawn while the paper is written): counted as there, waited for, retried."""

from __future__ import annotations

import asyncio

from fars.stages.background import Background


def test_listed_files_count_as_there_until_settled_and_settle_waits_for_the_work() -> None:
    async def scenario() -> tuple[frozenset[str], list[str], list[str], frozenset[str]]:
        work = Background()
        done: list[str] = []

        async def draw() -> None:
            await asyncio.sleep(0.05)
            done.append("drawn")

        work.start("p000", draw, ["figures/a.png", "figures/a.pdf"])
        pending = work.pending("p000")
        problems = await work.settle("p000")
        return pending, done, problems, work.pending("p000")

    pending, done, problems, after = asyncio.run(scenario())
    assert pending == {"figures/a.png", "figures/a.pdf"} and done == ["drawn"] and problems == [] and not after


def test_work_that_fails_is_tried_once_more_then_reported_not_raised() -> None:
    tries: list[int] = []

    async def flaky() -> None:  # a worker that died: the second try, on a fresh pool, draws it
        tries.append(1)
        if len(tries) == 1:
            raise RuntimeError("the worker process died")

    async def broken() -> None:
        raise RuntimeError("matplotlib is missing")

    async def scenario() -> list[str]:
        work = Background()
        work.start("p000", flaky, ["figures/a.png"])
        work.start("p000", broken, ["figures/b.png"])
        return await work.settle("p000")

    problems = asyncio.run(scenario())
    assert len(tries) == 2
    assert problems == ["figures/b.png not written: matplotlib is missing"]


def test_an_interrupted_project_has_its_work_cancelled() -> None:
    async def scenario() -> bool:
        work = Background()
        work.start("p000", lambda: asyncio.sleep(30), ["figures/a.png"])
        task = work._work["p000"][0].task
        work.cancel("p000")
        await asyncio.sleep(0)
        return task.cancelled() and not work.pending("p000")

    assert asyncio.run(scenario())
