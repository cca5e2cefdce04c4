"""`fars COMMAND` in a child process that starts warm: forked from a server that imported FARS once.

A cold `python -m fars.cli` spends seconds importing litellm, Hydra, pydantic and SciPy before it does
anything; the suite starts `fars` about a hundred times. Python's forkserver imports those modules once
per test worker (``tests.fars_preload``), then forks a fresh process for each command: its own pid,
working folder, environment, standard output and error, exit status and exit handlers, as
``subprocess.run`` gives, without the imports. ``start_warm`` is the ``subprocess.Popen`` of it, for
tests that kill or race runs. Tests of what a terminal or a shell gives the console command (Ctrl-C,
tmux, output read line by line as it comes) start it cold with ``fars_command``.

``FARS_TEST_COLD=1`` runs every command cold, as a plain subprocess, to rule the warm start out.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import subprocess
import sys
import tempfile
from pathlib import Path

_CONTEXT = multiprocessing.get_context("forkserver")
_CONTEXT.set_forkserver_preload(["tests.fars_preload"])


def _child(argv: list[str], cwd: str, env: dict[str, str], out: str, err: str, code: str | None = None) -> None:
    """The forked command: the caller's folder, environment and output files, then ``fars.cli.main`` (or
    ``code``, a test's driver program, run as ``python -c CODE ARGV`` would run it)."""
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    # what PYTHONPATH would have put first on a cold start's path (a plug-in's dist-info, found by entry point)
    extra = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p not in sys.path]
    sys.path[:0] = extra
    for fd, path in ((1, out), (2, err)):
        opened = os.open(path, os.O_WRONLY | os.O_TRUNC)
        os.dup2(opened, fd)
        os.close(opened)
    sys.stdout = open(1, "w", encoding="utf-8", errors="replace", closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", encoding="utf-8", errors="replace", closefd=False, buffering=1)  # noqa: SIM115
    sys.argv = ["-c" if code else "fars", *argv]
    from fars.cli import main

    try:
        status = main(argv) if code is None else exec(compile(code, "<driver>", "exec"), {"__name__": "__main__"})
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
        status = 1
    atexit._run_exitfuncs()  # a forked child skips them otherwise (FARS kills leftover jobs in one)
    sys.stdout.flush()
    sys.stderr.flush()
    if err != os.devnull:  # its own peak memory, which a parent's wait4 cannot tell apart from the parent's own
        import resource

        Path(f"{err}.peak_mb").write_text(str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))
    os._exit(int(status or 0))


class Finished(subprocess.CompletedProcess[str]):
    """A finished command, and its peak resident memory in MB (None for a cold start). A forked child's peak
    counts the forkserver's imports (a few hundred MB) it started with: an upper bound, never an undercount.
    A parent's wait4 is no measure here: Linux carries the forking parent's peak into the child's."""

    peak_mb: float | None = None


class WarmProcess:
    """A started warm `fars` child, used as a ``subprocess.Popen`` is: pid, poll, wait, signals, returncode."""

    def __init__(
        self, args: list[str], cwd: Path, stdout: Path | None, stderr: Path | None, code: str | None = None
    ) -> None:
        self.args = ["fars", *args]
        outputs = [str(path or os.devnull) for path in (stdout, stderr)]
        for path in (stdout, stderr):
            if path is not None:
                Path(path).touch()
        self._process = _CONTEXT.Process(target=_child, args=(list(args), str(cwd), dict(os.environ), *outputs, code))
        self._process.start()
        self.pid = int(self._process.pid or 0)

    @property
    def returncode(self) -> int | None:
        """The exit status (negative: killed by that signal), or None while it runs."""
        return self._process.exitcode

    def poll(self) -> int | None:
        """The exit status if it has ended, else None."""
        return self._process.exitcode

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the end; ``subprocess.TimeoutExpired`` after ``timeout`` seconds."""
        self._process.join(timeout)
        if self._process.exitcode is None:
            raise subprocess.TimeoutExpired(self.args, timeout or 0)
        return int(self._process.exitcode)

    def send_signal(self, signum: int) -> None:
        """Send ``signum`` to the process (nothing once it has ended)."""
        if self._process.exitcode is None:
            os.kill(self.pid, signum)

    def kill(self) -> None:
        """SIGKILL."""
        self.send_signal(9)


def start_warm(args: list[str], cwd: Path, *, stdout: Path | None = None, stderr: Path | None = None) -> WarmProcess:
    """Start ``fars ARGS`` in ``cwd`` as a warm child process; its output goes to the given files (else nowhere)."""
    return WarmProcess(args, cwd, stdout, stderr)


def run_warm(args: list[str], cwd: Path, timeout: float, *, code: str | None = None) -> Finished:
    """``fars ARGS`` (or ``python -c CODE ARGS``) in ``cwd`` as a warm child process; the finished process
    with its output and peak memory."""
    if os.environ.get("FARS_TEST_COLD") == "1":
        command = [sys.executable, "-m", "fars.cli", *args] if code is None else [sys.executable, "-c", code, *args]
        cold = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=dict(os.environ))
        return Finished(cold.args, cold.returncode, cold.stdout, cold.stderr)
    with tempfile.TemporaryDirectory(prefix="fars-out-") as folder:
        out, err = Path(folder, "stdout"), Path(folder, "stderr")
        process = WarmProcess(args, cwd, out, err, code)
        try:
            code = process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise subprocess.TimeoutExpired(process.args, timeout, out.read_text(), err.read_text()) from None
        stdout = out.read_text(encoding="utf-8", errors="replace")
        stderr = err.read_text(encoding="utf-8", errors="replace")
        peak = Path(f"{err}.peak_mb")
        done = Finished(process.args, code, stdout, stderr)
        done.peak_mb = float(peak.read_text()) if peak.is_file() else None
    return done
