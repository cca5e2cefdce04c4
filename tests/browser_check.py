"""Open a page in headless Chromium and report what a user would see: errors, requests, a screenshot.

Talks the Chrome DevTools Protocol over ``--remote-debugging-pipe`` (NUL-separated JSON on file
descriptors 3 and 4), so it needs no Python package beyond the standard library, only a Chromium
binary (Debian: ``apt-get install chromium``). Used by the report test; usable to check any page.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import select
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "chrome")
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--remote-debugging-pipe", "--window-size=1280,1000",
)  # fmt: skip


class BrowserError(RuntimeError):
    """Chromium is missing, failed to start, or did not answer in time."""


@dataclass
class PageCheck:
    """What loading a page produced."""

    screenshot_png: bytes
    console_errors: list[str] = field(default_factory=list)
    external_requests: list[str] = field(default_factory=list)
    probe: Any = None  # the value of the JavaScript expression evaluated after load


def find_chromium() -> str | None:
    """Path of a Chromium binary on PATH, or None."""
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


class _Pipe:
    """A DevTools session over the two pipes."""

    def __init__(self, to_browser: int, from_browser: int, timeout_s: float) -> None:
        self.out, self.inp, self.timeout_s = to_browser, from_browser, timeout_s
        self.buffer = b""
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def _read(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.inp], [], [], left)[0]:
                raise BrowserError(f"Chromium gave no answer within {self.timeout_s:.0f}s")
            chunk = os.read(self.inp, 1 << 20)
            if not chunk:
                raise BrowserError("Chromium closed the DevTools pipe (did it crash? see its log)")
            self.buffer += chunk
        message, self.buffer = self.buffer.split(b"\0", 1)
        return dict(json.loads(message))

    def call(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        """Send one command and wait for its result (events that arrive meanwhile are kept)."""
        self.next_id += 1
        msg: dict[str, Any] = {"id": self.next_id, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        os.write(self.out, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + self.timeout_s
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise BrowserError(f"{method} failed: {reply['error']}")
                return dict(reply.get("result", {}))
            self.events.append(reply)

    def wait_for(self, method: str, seconds: float) -> bool:
        """Wait until an event of that name has arrived (True) or the time is up (False)."""
        deadline = time.monotonic() + seconds
        while not any(e.get("method") == method for e in self.events):
            try:
                self.events.append(self._read(deadline))
            except BrowserError:
                return False
        return True

    def drain(self, seconds: float) -> None:
        """Collect the events that arrive within ``seconds``."""
        deadline = time.monotonic() + seconds
        with contextlib.suppress(BrowserError):
            while True:
                self.events.append(self._read(deadline))


def _high_fd(fd: int) -> int:
    """Move an fd above 9 so dup2 onto 3 or 4 always makes a fresh, inheritable copy."""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return moved


def _errors(events: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    errors, external = [], []
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            errors.append(f"uncaught: {details.get('exception', {}).get('description') or details.get('text')}")
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            errors.append(
                "console: " + " ".join(str(a.get("value", a.get("description"))) for a in params.get("args", []))
            )
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            errors.append(f"log ({entry.get('source')}): {entry.get('text')} {entry.get('url', '')}".strip())
        elif method == "Network.requestWillBeSent":
            url = params.get("request", {}).get("url", "")
            if not url.startswith(("file:", "data:", "about:")):
                external.append(url)
    return errors, external


def check_page(
    page: Path, probe: str = "document.title", *, chromium: str | None = None, timeout_s: float = 60.0
) -> PageCheck:
    """Load ``page`` in headless Chromium; return its console errors, non-local requests, probe and screenshot."""
    binary = chromium or find_chromium()
    if binary is None:
        raise BrowserError("no Chromium found on PATH; install it (Debian: apt-get install -y chromium)")
    if not page.is_file():
        raise BrowserError(f"{page}: no such file")
    with tempfile.TemporaryDirectory(prefix="fars-chromium-") as profile:
        to_r, to_w = (_high_fd(fd) for fd in os.pipe())
        from_r, from_w = (_high_fd(fd) for fd in os.pipe())
        log_path = Path(profile) / "chromium.log"
        actions = [
            (os.POSIX_SPAWN_DUP2, to_r, 3),
            (os.POSIX_SPAWN_DUP2, from_w, 4),
            (os.POSIX_SPAWN_OPEN, 1, str(log_path), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600),
            (os.POSIX_SPAWN_DUP2, 1, 2),
        ]
        argv = [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}/data", "about:blank"]
        pid = os.posix_spawn(binary, argv, os.environ, file_actions=actions, setsid=True)
        os.close(to_r)
        os.close(from_w)
        pipe = _Pipe(to_w, from_r, timeout_s)
        try:
            target = pipe.call("Target.createTarget", url="about:blank")["targetId"]
            session = pipe.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
            for domain in ("Runtime", "Log", "Page", "Network"):
                pipe.call(f"{domain}.enable", session)
            pipe.call("Page.navigate", session, url=page.resolve().as_uri())
            if not pipe.wait_for("Page.loadEventFired", timeout_s):
                raise BrowserError(f"{page} did not finish loading within {timeout_s:.0f}s")
            pipe.drain(0.5)
            value = pipe.call("Runtime.evaluate", session, expression=f"JSON.stringify({probe})", returnByValue=True)
            png = base64.b64decode(
                pipe.call("Page.captureScreenshot", session, format="png", captureBeyondViewport=True)["data"]
            )
            pipe.drain(0.2)
            errors, external = _errors(pipe.events)
            raw = value.get("result", {}).get("value")
            with contextlib.suppress(BrowserError, OSError):
                pipe.call("Browser.close")
            return PageCheck(png, errors, external, json.loads(raw) if isinstance(raw, str) else raw)
        except BrowserError as exc:
            tail = log_path.read_text(errors="replace")[-1500:] if log_path.exists() else ""
            raise BrowserError(f"{exc}\nChromium log tail:\n{tail}") from None
        finally:
            for fd in (to_w, from_r):
                with contextlib.suppress(OSError):
                    os.close(fd)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
