"""CPU-heavy work in worker processes: results and errors come back; a dead worker is reported and replaced."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from fars import offload
from tests.conftest import REPO


def square(x: int) -> int:
    return x * x


def fail(message: str) -> None:
    raise ValueError(message)


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def worker_pid() -> int:
    return os.getpid()


@pytest.fixture(autouse=True)
def one_worker() -> Iterator[None]:
    offload.configure(1)
    yield
    offload.configure(None)


def test_results_and_errors_come_back_from_the_worker() -> None:
    async def go() -> list[int]:
        return list(await asyncio.gather(*(offload.run_in_worker(square, i) for i in range(6))))

    assert asyncio.run(go()) == [0, 1, 4, 9, 16, 25]
    with pytest.raises(ValueError, match="bad figure data"):
        asyncio.run(offload.run_in_worker(fail, "bad figure data"))
    assert asyncio.run(offload.run_in_worker(worker_pid)) != os.getpid()  # really another process
    assert offload.worker_cpu_s() >= 0.0


def test_a_killed_worker_is_reported_and_the_next_call_gets_a_fresh_one() -> None:
    first = asyncio.run(offload.run_in_worker(worker_pid))
    with pytest.raises(offload.OffloadError, match=r"die.*died.*render_workers"):
        asyncio.run(offload.run_in_worker(die))
    second = asyncio.run(offload.run_in_worker(worker_pid))
    assert second != first
    assert asyncio.run(offload.run_in_worker(square, 7)) == 49


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has ended
    except FileNotFoundError:
        return False


def test_workers_end_when_their_run_is_sigkilled() -> None:
    """A SIGKILLed run's workers waited on their call queue for ever (they hold both its ends)."""
    code = (
        "import asyncio, os, time\n"
        "from fars import offload\n"
        "offload.configure(1)\n"
        "print(asyncio.run(offload.run_in_worker(os.getpid)), flush=True)\n"
        "time.sleep(120)\n"
    )
    run = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert run.stdout is not None
        worker = int(run.stdout.readline())
        assert _alive(worker)
    finally:
        run.kill()
        run.wait()
    deadline = time.monotonic() + 10 * offload.PARENT_POLL_S + 5
    while _alive(worker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(worker), "the worker outlived the run that started it"


def test_a_pool_size_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        offload.configure(0)


def offload_inside_a_worker() -> int:
    """What a run under ``hydra/launcher=joblib`` does: use the figure pool from inside a loky worker."""

    async def go() -> int:
        return await offload.run_in_worker(square, 7)

    return asyncio.run(go())  # and leaves the pool running, as a run does


SWEEP = """
from joblib import Parallel, delayed
from tests.test_offload import offload_inside_a_worker
print(Parallel(n_jobs=2, backend="loky")(delayed(offload_inside_a_worker)() for _ in range(2)))
"""


def test_the_pool_works_inside_joblib_loky_workers_and_lets_them_exit() -> None:
    """The pool could not start in a loky worker ("cannot find context for 'loky'"), then kept it from exiting."""
    done = subprocess.run([sys.executable, "-c", SWEEP], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[49, 49]"
