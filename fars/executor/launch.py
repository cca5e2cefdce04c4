"""Turn a training job into a command (plain python, torchrun, or ``deepspeed --no_local_rank``) and run it.

A job runs in its own session with a scrubbed environment (no API keys or tokens), one thread per rank
unless configured, its output in a log file, and a wall-clock limit; when it ends, however it ends,
everything left in its process group (launcher, ranks, their children) is killed, so no rank outlives
its job and holds a GPU.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path

# environment variables a training job may see; everything else (API keys, tokens) is dropped
ENV_KEEP = (
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "TMPDIR",
    "VIRTUAL_ENV",
    "PYTHONPATH",
    "TORCH_EXTENSIONS_DIR",
    "CUDA_HOME",
    "LD_LIBRARY_PATH",
    "NCCL_DEBUG",
    "NCCL_SOCKET_IFNAME",
)
PYTHON_ENV_DEFAULTS = {"PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"}


class JobTimeout(TimeoutError):
    """A job ran past its time limit and was killed."""


class JobFailed(RuntimeError):
    """A job exited non-zero; the message carries the tail of its log."""


def torch_extensions_dir() -> str:
    """Where DeepSpeed caches the ops it compiles (shared by all jobs, so each compiles once)."""
    return os.environ.get("TORCH_EXTENSIONS_DIR") or str(Path.home() / ".cache" / "fars" / "torch_extensions")


def job_env(threads: int, extra: dict[str, str] | None = None) -> dict[str, str]:
    """A minimal environment for a job: kept variables only, ``threads`` threads per rank, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k in ENV_KEEP}
    env.update(PYTHON_ENV_DEFAULTS)
    env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), TORCH_EXTENSIONS_DIR=torch_extensions_dir())
    env.update(extra or {})
    return env


def build_command(
    module: str,
    args: list[str],
    *,
    ranks: int,
    launcher: str = "torchrun",
    device: str = "cpu",
    master_port: int | None = None,
) -> list[str]:
    """The argv that runs ``python -m module args`` on ``ranks`` ranks of this machine.

    One rank runs the module directly (the engine sets up a world of one). More ranks go through
    torchrun (``--standalone``) or the DeepSpeed launcher (``--no_local_rank``, so Hydra-style
    arguments stay intact); on GPU the launcher sees only the job's ``CUDA_VISIBLE_DEVICES``.
    """
    if ranks < 1:
        raise ValueError(f"ranks must be at least 1 (got {ranks})")
    if ranks == 1:
        return [sys.executable, "-m", module, *args]
    if launcher == "torchrun":
        return [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={ranks}",
            "-m",
            module,
            *args,
        ]
    if launcher == "deepspeed":
        cmd = [sys.executable, "-m", "deepspeed.launcher.runner", "--no_local_rank"]
        if master_port is not None:
            cmd += ["--master_port", str(master_port)]
        if device == "cpu":
            cmd += ["--num_gpus", str(ranks)]  # on GPU the runner reads CUDA_VISIBLE_DEVICES instead
        return [*cmd, "--module", module, *args]
    raise ValueError(f"unknown launcher {launcher!r}; use 'torchrun' or 'deepspeed'")


def kill_group(pid: int) -> None:
    """SIGKILL a job's whole process group (it leads its own session); a group already gone is fine."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


async def run_command(
    cmd: list[str], env: dict[str, str], log_path: Path, timeout_s: float, cwd: Path | None = None
) -> None:
    """Run ``cmd`` to the end within ``timeout_s``; JobTimeout or JobFailed (with the log's tail) otherwise.

    Cancellation (the stage or the run ending) kills the job too. Leftover processes of the group
    are killed after every exit, a clean one included.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log_file:
        proc = await asyncio.create_subprocess_exec(
            *cmd, stdout=log_file, stderr=asyncio.subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True
        )
        try:
            code = await asyncio.wait_for(proc.wait(), timeout=timeout_s)
        except asyncio.TimeoutError:
            kill_group(proc.pid)
            await proc.wait()
            raise JobTimeout(f"job ran past its limit of {timeout_s:g} s and was killed; log {log_path}") from None
        except asyncio.CancelledError:
            kill_group(proc.pid)
            await proc.wait()
            raise
        finally:
            kill_group(proc.pid)
    if code != 0:
        tail = log_path.read_text(errors="replace")[-1500:]
        raise JobFailed(f"job exited {code}; log {log_path}:\n{tail}")
