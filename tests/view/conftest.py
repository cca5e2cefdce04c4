"""Fixtures of the view's tests: a real `fars view` process on a free port, stopped afterwards."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO, fars_command

ViewStarter = Callable[..., tuple[subprocess.Popen[str], str]]


def start_view(*args: str, cwd: Path = REPO, timeout: float = 60.0) -> tuple[subprocess.Popen[str], str]:
    """Start `fars view ARGS --port 0`; return the process and the URL it printed."""
    proc = subprocess.Popen(
        fars_command(["view", *args, "--port", "0"]), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=dict(os.environ),
    )  # fmt: skip
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    line = proc.stdout.readline()
    while line and "http://" not in line and time.monotonic() < deadline:
        line = proc.stdout.readline()
    found = re.search(r"http://[^\s]+/", line)
    if found is None:
        proc.kill()
        raise AssertionError(f"fars view did not start: {line!r} {proc.stderr.read() if proc.stderr else ''}")
    return proc, found.group(0).rstrip("/")


def stop(proc: subprocess.Popen[str], timeout: float = 20.0) -> int:
    """SIGTERM, then wait; the exit status."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AssertionError(f"fars view ignored SIGTERM for {timeout:.0f}s") from None
    return int(proc.returncode)


@pytest.fixture
def view_server() -> Iterator[ViewStarter]:
    """``view_server(*args)`` starts `fars view` (stopped at the end of the test)."""
    started: list[subprocess.Popen[str]] = []

    def start(*args: str, **kwargs: object) -> tuple[subprocess.Popen[str], str]:
        proc, url = start_view(*args, **kwargs)  # type: ignore[arg-type]
        started.append(proc)
        return proc, url

    yield start
    for proc in started:
        stop(proc)
