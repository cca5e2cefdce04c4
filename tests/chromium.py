"""Headless Chromium for the browser tests, driven by Playwright with Debian's Chromium binary.

Playwright's own browser downloads are never used (``playwright install`` is not run): the tests launch
``/usr/bin/chromium`` (``apt-get install chromium``, done by ``./install.sh --system``). ``watch(page)``
records what a user would not see but a test must: console errors, uncaught exceptions, failed loads
and every network request, so a test can assert that a page talks to no host but its own.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import ConsoleMessage, Page, Request

CHROMIUM_NAMES = ("chromium", "chromium-browser")
LAUNCH_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
]  # fmt: skip
NETWORK_SCHEMES = ("http", "https", "ws", "wss", "ftp")


def find_chromium() -> str | None:
    """Debian's Chromium (``$FARS_CHROMIUM`` names another binary), or None."""
    named = os.environ.get("FARS_CHROMIUM")
    if named:
        return named if os.access(named, os.X_OK) else None
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def require_browser() -> None:
    """Skip the calling test without Chromium or Playwright; with ``FARS_REQUIRE_BROWSER=1`` (CI) fail instead."""
    missing = None
    if find_chromium() is None:
        missing = "needs Chromium (apt-get install -y chromium, or ./install.sh --system)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            missing = "needs Playwright for Python (pip install playwright; its browsers are not needed)"
    if missing is None:
        return
    if os.environ.get("FARS_REQUIRE_BROWSER") == "1":
        pytest.fail(f"FARS_REQUIRE_BROWSER=1 but the browser test cannot run: {missing}")
    pytest.skip(missing)


@dataclass
class Watched:
    """What a page did besides rendering: errors and requests."""

    console_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def foreign_requests(self, origin: str | None) -> list[str]:
        """Network requests to any host but ``origin`` (scheme://host:port; None: every network request)."""
        foreign = []
        for url in self.requests:
            parts = urlsplit(url)
            if parts.scheme not in NETWORK_SCHEMES:
                continue  # data:, blob:, about:, file: and the browser's own PDF viewer are not the network
            if origin is None or f"{parts.scheme}://{parts.netloc}" != origin:
                foreign.append(url)
        return foreign


def watch(page: Page) -> Watched:
    """Start recording a Playwright page's console errors, uncaught errors, failed loads and requests.

    A live stream cut when the page navigates away or closes is not a failure (``/live/`` is ignored there).
    """
    seen = Watched()

    def console(message: ConsoleMessage) -> None:
        if message.type in ("error", "assert"):
            seen.console_errors.append(f"console: {message.text} {message.location.get('url', '')}".strip())

    def failed(request: Request) -> None:
        # the browser's own PDF viewer cancels its internal stream when done; a live stream ends on navigation
        if urlsplit(request.url).scheme in NETWORK_SCHEMES and "/live/" not in request.url:
            seen.console_errors.append(f"failed load: {request.url} ({request.failure})")

    page.on("console", console)
    page.on("pageerror", lambda error: seen.console_errors.append(f"uncaught: {error}"))
    page.on("requestfailed", failed)
    page.on("request", lambda request: seen.requests.append(request.url))
    return seen


@contextmanager
def start_chromium(timeout: float = 60.0) -> Iterator[str]:
    """A headless Chromium process with remote debugging on a free port; its DevTools WebSocket endpoint."""
    binary = find_chromium()
    assert binary is not None, "no Chromium (apt-get install -y chromium)"
    profile = tempfile.mkdtemp(prefix="fars-chromium-")
    process = subprocess.Popen(
        [binary, *LAUNCH_ARGS, "--remote-debugging-port=0", f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        endpoint, deadline = None, time.monotonic() + timeout
        assert process.stderr is not None
        while endpoint is None and time.monotonic() < deadline:
            line = process.stderr.readline()
            if not line and process.poll() is not None:
                break
            found = re.search(r"DevTools listening on (ws://\S+)", line)
            endpoint = found.group(1) if found else None
        assert endpoint is not None, f"Chromium did not start (exit {process.poll()})"
        threading.Thread(target=process.stderr.read, daemon=True).start()  # drain it, never block Chromium
        yield endpoint
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(profile, ignore_errors=True)
