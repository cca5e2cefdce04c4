"""CPU-heavy stage work (figure rendering) in worker processes, off the event loop.

Every project in flight shares one event loop. A matplotlib figure costs 0.1-0.3 s of CPU while
holding the GIL, so rendering in the loop (or a thread) stalls every other project's model calls
for that long; at hundreds of projects in flight that adds up to the loop doing little else. A
small pool of spawned worker processes renders instead: the loop only waits on a future.

Workers are spawned, not forked (the parent holds threads: the llama.cpp worker, W&B), start on
first use (``pipeline.render_workers`` of them), ignore Ctrl-C (the parent decides what an interrupt means) and run single-threaded BLAS.
Inside a worker of joblib's loky backend (``hydra/launcher=joblib``) the process's start method is loky's
own, which a spawned child cannot set up; the pool then makes its children with plain spawn.
A worker that dies (killed, out of memory) breaks the pool: the call fails with ``OffloadError``
naming what happened and the next call starts a fresh pool. A worker whose parent is gone (a SIGKILLed run)
ends itself within ``PARENT_POLL_S``.
"""

from __future__ import annotations

import asyncio
import functools
import multiprocessing
import multiprocessing.util
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, TypeVar

R = TypeVar("R")

_lock = threading.Lock()
_pool: ProcessPoolExecutor | None = None
_workers: int | None = None


class OffloadError(RuntimeError):
    """A worker process died before it finished the job."""


def worker_count() -> int:
    """Workers the pool starts with: as configured, else half the CPUs (1 to 4)."""
    return _workers or max(1, min(4, (os.cpu_count() or 2) // 2))


def configure(workers: int | None) -> None:
    """Set the pool size (None: automatic); a running pool of another size is stopped first."""
    global _workers
    if workers is not None and workers < 1:
        raise ValueError(f"offload workers must be at least 1, got {workers}")
    if workers != _workers:
        shutdown()
        _workers = workers


PARENT_POLL_S = 1.0  # how often a worker checks that the process that started it is still there


def _init_worker(parent: int | None = None) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    if parent is not None:
        threading.Thread(target=_exit_with, args=(parent,), name="fars-parent-watch", daemon=True).start()


def _exit_with(parent: int) -> None:
    """End this worker once its parent is gone. A worker holds both ends of the pool's call queue, so a SIGKILLed
    run never closes it: its workers waited on it for ever (the suite's kill-and-resume tests left them by the
    dozen). Reparented, a worker's parent pid changes (to 1 or a subreaper)."""
    while os.getppid() == parent:
        time.sleep(PARENT_POLL_S)
    os._exit(0)


STDLIB_START_METHODS = ("fork", "spawn", "forkserver")


def _get_pool() -> ProcessPoolExecutor:
    global _pool
    with _lock:
        if _pool is None:
            if multiprocessing.get_start_method(allow_none=True) not in (None, *STDLIB_START_METHODS):
                # a spawned child sets the parent's start method first; "loky" is unknown to multiprocessing there
                multiprocessing.set_start_method("spawn", force=True)
            _pool = ProcessPoolExecutor(
                max_workers=worker_count(),
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker,
                initargs=(os.getpid(),),
            )
            _stop_at_exit()
        return _pool


@functools.cache
def _stop_at_exit() -> None:
    """Stop the pool before multiprocessing joins this process's children at its exit.

    A process that is itself a multiprocessing child (a joblib loky worker under ``hydra/launcher=joblib``)
    joins its children as soon as its work ends, before the executor's own exit hook has told the pool's
    workers to stop: it would wait for them for ever, and the sweep with it. The priority puts this ahead
    of the pool's queues closing (priority 10), so the workers still receive their stop message.
    """
    multiprocessing.util.Finalize(None, shutdown, exitpriority=100)  # before the queues close (10)


def shutdown() -> None:
    """Stop the workers (they restart on the next call); waits for running jobs."""
    global _pool
    with _lock:
        pool, _pool = _pool, None
    if pool is not None:
        pool.shutdown(wait=True, cancel_futures=True)


async def run_in_worker(fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
    """``fn(*args, **kwargs)`` in a worker process; its exceptions are raised here as they were there.

    ``fn`` must be importable by name and its arguments and result picklable.
    """
    pool = _get_pool()
    try:
        return await asyncio.get_running_loop().run_in_executor(pool, functools.partial(fn, *args, **kwargs))
    except BrokenProcessPool as exc:
        global _pool
        with _lock:
            if _pool is pool:
                _pool = None
        pool.shutdown(wait=False, cancel_futures=True)
        raise OffloadError(
            f"the worker process running {getattr(fn, '__name__', fn)} died ({exc}); "
            "the next call starts fresh workers. Check memory limits, or lower pipeline.render_workers."
        ) from exc


def worker_cpu_s() -> float:
    """CPU seconds the live workers have used so far (Linux ``/proc``; 0 elsewhere or with no pool)."""
    pool = _pool
    processes = getattr(pool, "_processes", None) or {}
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    total = 0.0
    for pid in list(processes):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    return total
