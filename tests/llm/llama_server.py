"""llama-cpp-python's OpenAI-compatible server on 127.0.0.1 with the embedded GGUF, for the server tests.

``.ci/llama_server.sh`` starts one for a whole CI run (``FARS_LLAMA_SERVER`` then names its base URL);
tests that kill and restart a server start their own with ``LlamaServer``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from fars.llm.local import bundled_model_path

MODEL_ALIAS = "smollm2"


def free_port() -> int:
    """A TCP port on 127.0.0.1 nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LlamaServer:
    """One ``python -m llama_cpp.server`` process serving the embedded model as ``smollm2``."""

    def __init__(self, log: Path, port: int | None = None, n_ctx: int = 8192) -> None:
        self.port = port or free_port()
        self.log = log
        self.n_ctx = n_ctx
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible base URL (``llm.api_base``)."""
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, timeout_s: float = 180.0) -> None:
        """Start the server and wait until it lists its model."""
        command = [
            sys.executable, "-m", "llama_cpp.server", "--model", str(bundled_model_path("smollm2-135m")),
            "--model_alias", MODEL_ALIAS, "--host", "127.0.0.1", "--port", str(self.port),
            "--n_ctx", str(self.n_ctx), "--n_threads", "1",
        ]  # fmt: skip
        handle = self.log.open("ab")
        self.process = subprocess.Popen(
            command, stdout=handle, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"}
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"llama-cpp-python's server exited ({self.process.returncode}); see {self.log}")
            try:
                if httpx.get(f"{self.base_url}/models", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"llama-cpp-python's server did not answer within {timeout_s:.0f}s; see {self.log}")

    def kill(self) -> None:
        """Kill the server at once (SIGKILL), as a crash would."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.kill()
