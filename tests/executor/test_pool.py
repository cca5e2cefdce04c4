"""The GPU pool with simulated GPUs: never over-allocates, never double-books, frees slots after crashes and time-outs."""

from __future__ import annotations

import asyncio
import os
import random
import sys
import time
from pathlib import Path

import pytest

from fars.executor.launch import JobFailed, JobTimeout, build_command, job_env, run_command
from fars.executor.pool import PoolError, SlotBook, SlotPool


def test_book_refuses_impossible_requests_and_double_release() -> None:
    book = SlotBook([0, 1, 2])
    with pytest.raises(PoolError, match="pool has 3"):
        book.take(4)
    ids = book.take(2)
    assert ids == (0, 1) and book.take(2) is None and book.free == 1
    book.give_back(ids)
    with pytest.raises(PoolError, match="double release"):
        book.give_back(ids)
    assert book.free == 3 and book.in_use == 0


def test_random_jobs_with_crashes_and_timeouts_never_overbook_simulated_gpus() -> None:
    gpus = [0, 1, 2, 3, 4, 5, 6, 7]
    pool = SlotPool(gpus, "gpu")
    holder: dict[int, str] = {}  # gpu -> the job holding it now
    peak = 0
    outcomes: dict[str, int] = {"ok": 0, "crash": 0, "timeout": 0}

    async def job(i: int, rng: random.Random) -> None:
        want = rng.choice([1, 1, 1, 2, 2, 4, 8])
        fate = rng.choice(["ok", "ok", "crash", "timeout"])

        async def held() -> None:
            nonlocal peak
            async with pool.lease(want, name=f"job{i}") as lease:
                assert len(lease.ids) == want and lease.kind == "gpu"
                visible = lease.env()["CUDA_VISIBLE_DEVICES"].split(",")
                assert [int(g) for g in visible] == list(lease.ids)
                for g in lease.ids:
                    assert g not in holder, f"gpu {g} double-booked: {holder[g]} and job{i}"
                    holder[g] = f"job{i}"
                peak = max(peak, len(holder))
                try:
                    await asyncio.sleep(rng.uniform(0.001, 0.01) if fate != "timeout" else 1.0)
                    if fate == "crash":
                        raise RuntimeError("simulated crash")
                finally:
                    for g in lease.ids:
                        del holder[g]

        try:
            await (asyncio.wait_for(held(), 0.02) if fate == "timeout" else held())
        except RuntimeError:
            outcomes["crash"] += 1
            return
        except asyncio.TimeoutError:
            outcomes["timeout"] += 1
            return
        outcomes["ok"] += 1

    async def main() -> None:
        rng = random.Random(7)
        await asyncio.gather(*(job(i, random.Random(rng.random())) for i in range(300)))

    asyncio.run(main())
    assert sum(outcomes.values()) == 300 and outcomes["crash"] > 20 and outcomes["timeout"] > 20
    assert peak <= len(gpus) and pool.stats.peak_in_use <= len(gpus)
    assert pool.book.free == len(gpus) and pool.book.in_use == 0 and not holder  # nothing leaked
    assert pool.stats.granted == pool.stats.released


def test_backfill_fills_idle_gpus_but_never_starves_a_large_job() -> None:
    pool = SlotPool([0, 1, 2, 3], "gpu", max_bypass=2)
    order: list[str] = []

    async def job(name: str, n: int, hold: float, delay: float) -> None:
        await asyncio.sleep(delay)
        async with pool.lease(n):
            order.append(name)
            await asyncio.sleep(hold)

    async def main() -> None:
        await asyncio.gather(
            job("a", 3, 0.05, 0),  # holds 3 of 4
            job("big", 4, 0.01, 0.005),  # must wait for everything
            *(job(f"s{i}", 1, 0.03, 0.01 + 0.001 * i) for i in range(6)),  # small jobs arriving later
        )

    asyncio.run(main())
    assert order[0] == "a" and order[1] == "s0"  # the idle GPU went to a small job (backfill)
    assert order.index("big") <= 4, order  # but after max_bypass passes the big job goes next


def test_cpu_pool_sets_no_cuda_devices_and_refuses_cuda_without_gpus() -> None:
    pool = SlotPool.for_config("cpu", None, 2)
    assert pool.kind == "cpu" and pool.capacity == 2

    async def one() -> dict[str, str]:
        async with pool.lease(2) as lease:
            return lease.env()

    assert asyncio.run(one()) == {}
    with pytest.raises(PoolError, match="no GPU is visible"):
        SlotPool.for_config("cuda", [], 2)
    assert SlotPool.for_config("cuda", [3, 5], 1).capacity == 2  # simulated GPU ids


def test_commands_for_each_launcher() -> None:
    plain = build_command("experiments.modadd.train", ["--steps", "3"], ranks=1)
    assert plain == [sys.executable, "-m", "experiments.modadd.train", "--steps", "3"]
    torchrun = build_command("m", [], ranks=4, launcher="torchrun")
    assert "torch.distributed.run" in torchrun and "--nproc_per_node=4" in torchrun and torchrun[-1] == "m"
    ds_gpu = build_command("m", ["--x"], ranks=2, launcher="deepspeed", device="cuda", master_port=29600)
    assert "--no_local_rank" in ds_gpu and "--num_gpus" not in ds_gpu  # GPUs come from CUDA_VISIBLE_DEVICES
    assert ds_gpu[-3:] == ["--module", "m", "--x"]
    assert "--num_gpus" in build_command("m", [], ranks=2, launcher="deepspeed", device="cpu")
    with pytest.raises(ValueError, match="unknown launcher"):
        build_command("m", [], ranks=2, launcher="mpirun")


def test_job_env_drops_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    monkeypatch.setenv("WANDB_API_KEY", "secret")
    env = job_env(1, {"CUDA_VISIBLE_DEVICES": "2"})
    assert "OPENAI_API_KEY" not in env and "WANDB_API_KEY" not in env
    assert env["OMP_NUM_THREADS"] == "1" and env["CUDA_VISIBLE_DEVICES"] == "2" and "TORCH_EXTENSIONS_DIR" in env


def test_a_job_finds_this_venvs_tools_first_activated_or_not(monkeypatch: pytest.MonkeyPatch) -> None:
    """`.venv/bin/fars run` leaves PATH without the venv: jobs compiled DeepSpeed's op with Debian's ninja 1.11,
    install.sh's prebuild with the venv's 1.13, and their build logs disagree, so each switch recompiled it."""
    venv_bin = str(Path(sys.executable).parent)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert job_env(1)["PATH"].split(os.pathsep) == [venv_bin, "/usr/bin", "/bin"]
    monkeypatch.setenv("PATH", f"/usr/bin{os.pathsep}{venv_bin}")  # activated later in the list: moved first, once
    assert job_env(1)["PATH"].split(os.pathsep) == [venv_bin, "/usr/bin"]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_timeout_kills_the_whole_process_group_and_frees_the_slot(tmp_path: Path) -> None:
    """A job that spawns a grandchild and hangs: the time-out kills both and the GPU comes back."""
    pid_file = tmp_path / "child.pid"
    script = (
        "import subprocess, sys, time\n"
        f"c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(c.pid))\n"
        "time.sleep(60)\n"
    )
    pool = SlotPool([0, 1], "gpu")

    async def main() -> None:
        async with pool.lease(2) as lease:
            await run_command([sys.executable, "-c", script], job_env(1, lease.env()), tmp_path / "log", timeout_s=2.0)

    started = time.monotonic()
    with pytest.raises(JobTimeout, match="limit of 2 s"):
        asyncio.run(main())
    assert time.monotonic() - started < 20
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child), "a grandchild outlived its job"
    assert pool.book.free == 2


def test_a_crashing_job_reports_its_log_and_frees_the_slot(tmp_path: Path) -> None:
    pool = SlotPool([0], "gpu")

    async def main() -> None:
        async with pool.lease(1) as lease:
            cmd = [
                sys.executable,
                "-c",
                "import os; print('on', os.environ['CUDA_VISIBLE_DEVICES']); raise SystemExit(3)",
            ]
            await run_command(cmd, job_env(1, lease.env()), tmp_path / "log", timeout_s=30)

    with pytest.raises(JobFailed, match="exited 3") as err:
        asyncio.run(main())
    assert "on 0" in str(err.value)
    assert pool.book.free == 1
