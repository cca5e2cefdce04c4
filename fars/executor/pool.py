"""A local pool of slots (whole GPUs, or CPU ranks when there is no GPU) shared by every training job.

``SlotBook`` is the bookkeeping alone, synchronous and pure, so the scheduling benchmark simulates the
very policy the stage uses. ``SlotPool`` puts an asyncio queue in front of it: a job asks for ``n``
slots and waits until they are free; waiters are served in arrival order, and a later, smaller job may
fill slots the head of the queue cannot use yet (backfill) until the head has been passed over
``max_bypass`` times, so a large job is never starved. A lease is given back on every way out of its
``async with`` (success, crash, time-out, cancellation), and giving back a slot twice is an error.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Literal

SlotKind = Literal["gpu", "cpu"]


class PoolError(RuntimeError):
    """A request the pool can never meet, or a slot given back that was not leased."""


@dataclass(frozen=True)
class Lease:
    """Slots held by one job."""

    ids: tuple[int, ...]
    kind: SlotKind
    name: str = ""

    def env(self) -> dict[str, str]:
        """Environment for the job: ``CUDA_VISIBLE_DEVICES`` naming its GPUs (nothing for CPU slots)."""
        if self.kind == "gpu":
            return {"CUDA_VISIBLE_DEVICES": ",".join(str(i) for i in self.ids)}
        return {}


class SlotBook:
    """Which slots are free; takes the lowest free ids and refuses to free a slot that is not taken."""

    def __init__(self, ids: list[int]) -> None:
        if not ids:
            raise PoolError("a pool needs at least one slot")
        if len(set(ids)) != len(ids):
            raise PoolError(f"slot ids repeat: {ids}")
        self.capacity = len(ids)
        self._free = sorted(ids)
        self._taken: set[int] = set()

    @property
    def free(self) -> int:
        """Slots free now."""
        return len(self._free)

    @property
    def in_use(self) -> int:
        """Slots leased now."""
        return len(self._taken)

    def take(self, n: int) -> tuple[int, ...] | None:
        """``n`` free slots, or None when fewer are free."""
        if n < 1 or n > self.capacity:
            raise PoolError(f"a job asked for {n} slot(s) but the pool has {self.capacity}; ask for 1..{self.capacity}")
        if n > len(self._free):
            return None
        ids, self._free = tuple(self._free[:n]), self._free[n:]
        self._taken.update(ids)
        return ids

    def give_back(self, ids: tuple[int, ...]) -> None:
        """Return leased slots; a slot not leased (a double release) is an error and changes nothing."""
        stray = [i for i in ids if i not in self._taken]
        if stray:
            raise PoolError(f"slot(s) {stray} given back but not leased (double release?)")
        self._taken.difference_update(ids)
        self._free = sorted(self._free + list(ids))


@dataclass
class _Waiter:
    n: int
    future: asyncio.Future[tuple[int, ...]]
    bypassed: int = 0


@dataclass
class PoolStats:
    """Counters the tests and the status line read."""

    granted: int = 0
    released: int = 0
    peak_in_use: int = 0
    waits: int = 0
    history: list[tuple[str, tuple[int, ...]]] = field(default_factory=list)  # ("take"|"give", ids)


class SlotPool:
    """An asyncio pool of slots: ``async with pool.lease(n) as lease`` holds ``n`` of them."""

    def __init__(self, ids: list[int], kind: SlotKind, *, max_bypass: int = 8) -> None:
        self.book = SlotBook(ids)
        self.kind: SlotKind = kind
        self.max_bypass = max_bypass
        self.stats = PoolStats()
        self._waiters: list[_Waiter] = []

    @classmethod
    def for_config(cls, device: str, gpus: list[int] | None, cpu_slots: int) -> SlotPool:
        """A GPU pool over ``gpus`` (default: every visible GPU) when ``device`` is cuda, else CPU slots."""
        if device == "cuda":
            if gpus is None:
                import torch

                gpus = list(range(torch.cuda.device_count()))
            if not gpus:
                raise PoolError("experiment.device=cuda but no GPU is visible; set executor.gpus or device=cpu")
            return cls(list(gpus), "gpu")
        return cls(list(range(cpu_slots)), "cpu")

    @property
    def capacity(self) -> int:
        """Slots in the pool."""
        return self.book.capacity

    @contextlib.asynccontextmanager
    async def lease(self, n: int, name: str = "") -> AsyncIterator[Lease]:
        """Hold ``n`` slots for the body of the ``async with``; they come back however it ends."""
        ids = await self._acquire(n)
        try:
            yield Lease(ids, self.kind, name)
        finally:
            self._release(ids)

    async def _acquire(self, n: int) -> tuple[int, ...]:
        if n < 1 or n > self.capacity:
            self.book.take(n)  # raises the clear PoolError for a request that can never fit
        if not self._waiters:
            ids = self.book.take(n)
            if ids is not None:
                self._granted(ids)
                return ids
        loop = asyncio.get_running_loop()
        waiter = _Waiter(n, loop.create_future())
        self._waiters.append(waiter)
        self.stats.waits += 1
        self._dispatch()  # it may fit now, past a queue head that does not
        try:
            return await waiter.future
        except asyncio.CancelledError:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
            elif waiter.future.done() and not waiter.future.cancelled():
                self._release(waiter.future.result())  # granted while being cancelled: give it back
            raise

    def _granted(self, ids: tuple[int, ...]) -> None:
        self.stats.granted += 1
        self.stats.peak_in_use = max(self.stats.peak_in_use, self.book.in_use)
        self.stats.history.append(("take", ids))

    def _release(self, ids: tuple[int, ...]) -> None:
        self.book.give_back(ids)
        self.stats.released += 1
        self.stats.history.append(("give", ids))
        self._dispatch()

    def _dispatch(self) -> None:
        """Grant waiting requests in arrival order, backfilling past ones that do not fit yet."""
        blocked: list[_Waiter] = []
        for waiter in list(self._waiters):
            if waiter.future.done():  # cancelled while queued
                self._waiters.remove(waiter)
                continue
            if any(b.bypassed >= self.max_bypass for b in blocked):
                break  # an earlier request was passed over often enough: it is next
            ids = self.book.take(waiter.n)
            if ids is None:
                blocked.append(waiter)
                continue
            for b in blocked:
                b.bypassed += 1
            self._waiters.remove(waiter)
            self._granted(ids)
            waiter.future.set_result(ids)
