"""Turn a training job into a command (plain python, torchrun, or ``deepspeed --no_local_rank``) and run it.

A job runs in its own session with a scrubbed environment (no API keys or tokens), one thread per rank
unless configured, its output in a log file, and a wall-clock limit; when it ends, however it ends,
everything left in its process group (launcher, ranks, their children) is killed, so no rank outlives
its job and holds a GPU.

Jobs that run at once on one machine each get their own rendezvous port: the DeepSpeed launcher is
given a free ``--master_port`` that no other job of this process holds (its default, 29500, is what two
jobs at once would otherwise both bind), and torchrun's ``--standalone`` picks a free port itself. A job
whose rendezvous still loses its port to another process (EADDRINUSE) is started again on a new one.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import os
import random
import signal
import socket
import sys
import threading
from collections import deque
from pathlib import Path

log = logging.getLogger(__name__)

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


def tool_path(path: str | None = None) -> str:
    """``path`` (default: this process's PATH) with this Python's own bin folder first, as an activated venv has it.

    DeepSpeed compiles its CPU op with whichever ``ninja`` PATH finds. ``install.sh`` prebuilds it in the activated
    venv (pip's ninja 1.13), but ``.venv/bin/fars run`` leaves PATH alone, so jobs found Debian's ninja 1.11,
    whose build log hashes commands another way: each switch recompiled the op (85 s inside a CI test's job)."""
    here = str(Path(sys.executable).parent)
    parts = [p for p in (path if path is not None else os.environ.get("PATH", "")).split(os.pathsep) if p]
    return os.pathsep.join([here, *(p for p in parts if p != here)])


def job_env(threads: int, extra: dict[str, str] | None = None) -> dict[str, str]:
    """A minimal environment for a job: kept variables only (PATH with this venv's tools first), ``threads``
    threads per rank, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k in ENV_KEEP}
    env["PATH"] = tool_path(env.get("PATH"))
    env.update(PYTHON_ENV_DEFAULTS)
    env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), TORCH_EXTENSIONS_DIR=torch_extensions_dir())
    env.update(extra or {})
    return env


PORT_RANGE = (20000, 32000)  # below Linux's ephemeral ports (32768+), so no outgoing connection holds one
_ports_lock = threading.Lock()
_ports_given: deque[int] = deque(maxlen=2048)  # handed out lately: never handed out again while they are here
PORT_CLASH = ("EADDRINUSE", "Address already in use", "address already in use")
PORT_RETRIES = 2


def port_is_free(port: int) -> bool:
    """Whether nothing listens on ``port`` (TCP, any address) right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A rendezvous port for one job: free now, and not handed to another job of this process lately."""
    with _ports_lock:
        for _ in range(200):
            port = random.randrange(*PORT_RANGE)
            if port not in _ports_given and port_is_free(port):
                _ports_given.append(port)
                return port
    raise OSError(f"no free TCP port found in {PORT_RANGE[0]}-{PORT_RANGE[1]} for a job's rendezvous")


def build_command(
    target: str,
    args: list[str],
    *,
    ranks: int,
    launcher: str = "torchrun",
    device: str = "cpu",
    master_port: int | None = None,
) -> list[str]:
    """The argv that runs a template's entry point with ``args`` on ``ranks`` ranks of this machine.

    ``target`` is a script (``.../train.py``: how templates run, wherever their folder is) or a module
    name (``python -m``). One rank runs it directly (the engine sets up a world of one). More ranks go
    through torchrun (``--standalone``, which finds a free port itself) or the DeepSpeed launcher
    (``--no_local_rank``, so Hydra-style arguments stay intact; ``--master_port`` is ``master_port`` or a
    :func:`free_port`); on GPU the launcher sees only the job's ``CUDA_VISIBLE_DEVICES``.
    """
    if ranks < 1:
        raise ValueError(f"ranks must be at least 1 (got {ranks})")
    script = target.endswith(".py")
    entry = [target] if script else ["-m", target]
    if ranks == 1:
        return [sys.executable, *entry, *args]
    if launcher == "torchrun":
        return [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={ranks}",
            *entry,
            *args,
        ]
    if launcher == "deepspeed":
        cmd = [sys.executable, "-m", "deepspeed.launcher.runner", "--no_local_rank"]
        cmd += ["--master_port", str(master_port if master_port is not None else free_port())]
        if device == "cpu":
            cmd += ["--num_gpus", str(ranks)]  # on GPU the runner reads CUDA_VISIBLE_DEVICES instead
        return [*cmd, *([target] if script else ["--module", target]), *args]
    raise ValueError(f"unknown launcher {launcher!r}; use 'torchrun' or 'deepspeed'")


def kill_group(pid: int) -> None:
    """SIGKILL a job's whole process group (it leads its own session); a group already gone is fine."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


# the process groups of jobs running now; whatever is left when the interpreter exits is killed, so no
# job outlives the run that started it, however the run ended
_LIVE_GROUPS: set[int] = set()


@atexit.register
def kill_live_jobs() -> None:
    """SIGKILL every job group this process started and still holds (run at interpreter exit)."""
    for pid in list(_LIVE_GROUPS):
        kill_group(pid)
        _LIVE_GROUPS.discard(pid)


async def run_command(
    cmd: list[str], env: dict[str, str], log_path: Path, timeout_s: float, cwd: Path | None = None
) -> None:
    """Run ``cmd`` to the end within ``timeout_s``; JobTimeout or JobFailed (with the log's tail) otherwise.

    Cancellation (the stage or the run ending) kills the job too. Leftover processes of the group
    are killed after every exit, a clean one included. A job given ``--master_port`` that fails because
    another process took that port is run again on a fresh port, up to ``PORT_RETRIES`` times.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(PORT_RETRIES + 1):
        start = log_path.stat().st_size if log_path.exists() else 0
        code = await _run_once(cmd, env, log_path, timeout_s, cwd)
        if code == 0:
            return
        with log_path.open("rb") as f:
            f.seek(start)
            output = f.read().decode(errors="replace")
        if attempt < PORT_RETRIES and "--master_port" in cmd and any(m in output for m in PORT_CLASH):
            cmd, port = with_new_port(cmd)
            log.warning("job lost its rendezvous port to another process; again on port %d (%s)", port, log_path)
            continue
        raise JobFailed(f"job exited {code}; log {log_path}:\n{output[-1500:]}")


def with_new_port(cmd: list[str]) -> tuple[list[str], int]:
    """``cmd`` with a fresh ``--master_port``, and that port."""
    i = cmd.index("--master_port")
    port = free_port()
    return [*cmd[: i + 1], str(port), *cmd[i + 2 :]], port


async def _run_once(cmd: list[str], env: dict[str, str], log_path: Path, timeout_s: float, cwd: Path | None) -> int:
    with log_path.open("ab") as log_file:
        # shielded: a cancellation that lands while the process is being made (Ctrl-C just as a job starts)
        # must still find the process and kill it, or it trains on, orphaned, after the run has ended
        spawn = asyncio.ensure_future(
            asyncio.create_subprocess_exec(
                *cmd, stdout=log_file, stderr=asyncio.subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True
            )
        )
        try:
            proc = await asyncio.shield(spawn)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                made = await spawn
                kill_group(made.pid)
                await made.wait()
            raise
        _LIVE_GROUPS.add(proc.pid)
        try:
            return await asyncio.wait_for(proc.wait(), timeout=timeout_s)
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
            _LIVE_GROUPS.discard(proc.pid)
