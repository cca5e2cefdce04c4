"""The subject-model gateway: an OpenAI-compatible endpoint on 127.0.0.1 for templates whose subject is a model.

An inference template (``kind: inference`` in its template.yaml: position bias of an LLM judge,
prompt-format sensitivity, ...) studies a language model rather than training one. Its jobs still
run as ordinary subprocesses, but their model calls must go through FARS's one door, so they are
counted, budgeted, cached, retried and replayed on resume like every other call. The gateway is that
door seen from a job: ``POST {FARS_SUBJECT_URL}/chat/completions`` with an OpenAI chat request;
the reply is an OpenAI chat completion. Each job gets its own URL (a random token in the path),
which names the project and stage its calls are attributed to; a token is revoked when its job ends.

The server is the standard library's threaded HTTP server on a free loopback port; each request is
handed to the run's event loop, where the LLM client answers it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import secrets
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from fars.context import call_context
from fars.llm.budget import BudgetExceeded
from fars.llm.client import LLMClient, LLMError

log = logging.getLogger(__name__)
MAX_BODY = 1_000_000  # bytes of one request
MAX_TOKENS = 4096  # the most a job may ask for in one reply


@dataclass(frozen=True)
class Grant:
    """Whose calls a token stands for."""

    project_id: str
    stage: str
    job: str


class SubjectGateway:
    """Serves the subject model to jobs (see the module docstring); start once per run, close at its end."""

    def __init__(self, client: LLMClient, *, request_timeout_s: float = 900.0) -> None:
        self.client = client
        self.model = client.cfg.model
        self.request_timeout_s = request_timeout_s
        self._grants: dict[str, Grant] = {}
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.calls = 0

    @property
    def port(self) -> int:
        """The loopback port it listens on (after ``start``)."""
        if self._server is None:
            raise RuntimeError("the subject gateway is not started")
        return int(self._server.server_address[1])

    def start(self) -> None:
        """Listen on a free port of 127.0.0.1; requests are answered on the calling event loop."""
        if self._server is not None:
            return
        self._loop = asyncio.get_running_loop()
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                log.debug("gateway: " + format, *args)

            def do_POST(self) -> None:
                gateway._handle(self)

            def do_GET(self) -> None:
                gateway._reply(self, 405, {"error": {"message": "POST {url}/chat/completions only"}})

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="subject-gateway", daemon=True)
        self._thread.start()
        log.info("subject model %s served to inference templates on 127.0.0.1:%d", self.model, self.port)

    def close(self) -> None:
        """Stop listening; outstanding tokens are revoked."""
        with self._lock:
            self._grants.clear()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def grant(self, project_id: str, stage: str, job: str) -> tuple[str, dict[str, str]]:
        """A token for one job and the environment that tells the job where its subject model is."""
        token = secrets.token_urlsafe(18)
        with self._lock:
            self._grants[token] = Grant(project_id, stage, job)
        env = {"FARS_SUBJECT_URL": f"http://127.0.0.1:{self.port}/v1/{token}", "FARS_SUBJECT_MODEL": self.model}
        return token, env

    def revoke(self, token: str) -> None:
        """End a job's access."""
        with self._lock:
            self._grants.pop(token, None)

    # -- request handling (server threads) --------------------------------------------------------
    def _reply(self, handler: BaseHTTPRequestHandler, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        parts = handler.path.strip("/").split("/")
        if len(parts) != 4 or parts[0] != "v1" or parts[2:] != ["chat", "completions"]:
            self._reply(handler, 404, {"error": {"message": "use POST /v1/<token>/chat/completions"}})
            return
        with self._lock:
            grant = self._grants.get(parts[1])
        if grant is None:
            self._reply(handler, 403, {"error": {"message": "unknown or revoked token"}})
            return
        length = int(handler.headers.get("Content-Length") or 0)
        if length <= 0 or length > MAX_BODY:
            self._reply(handler, 413 if length > MAX_BODY else 400, {"error": {"message": "bad request body size"}})
            return
        try:
            request = json.loads(handler.rfile.read(length))
            messages = [{"role": str(m["role"]), "content": str(m["content"])} for m in request["messages"]]
        except (ValueError, KeyError, TypeError) as exc:
            self._reply(handler, 400, {"error": {"message": f"not a chat request: {exc}"}})
            return
        fmt = request.get("response_format")
        max_tokens = request.get("max_tokens")
        max_tokens = min(int(max_tokens), MAX_TOKENS) if isinstance(max_tokens, int) and max_tokens > 0 else None
        assert self._loop is not None
        future = asyncio.run_coroutine_threadsafe(self._answer(grant, messages, fmt, max_tokens), self._loop)
        try:
            status, body = future.result(timeout=self.request_timeout_s)
        except concurrent.futures.TimeoutError:
            future.cancel()
            status, body = 504, {"error": {"message": "the subject model did not answer in time"}}
        self._reply(handler, status, body)

    async def _answer(
        self, grant: Grant, messages: list[dict[str, str]], fmt: Any, max_tokens: int | None
    ) -> tuple[int, dict[str, Any]]:
        self.calls += 1
        try:
            with call_context(grant.project_id, grant.stage):
                done = await self.client.complete(
                    messages, response_format=fmt if isinstance(fmt, dict) else None, max_tokens=max_tokens
                )
        except BudgetExceeded as exc:
            return 429, {"error": {"message": f"budget exhausted: {exc}", "type": "budget_exhausted"}}
        except LLMError as exc:
            return 502, {"error": {"message": f"the subject model failed: {str(exc)[:500]}"}}
        return 200, {
            "id": f"fars-{secrets.token_hex(6)}",
            "object": "chat.completion",
            "model": done.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": done.text},
                    "finish_reason": done.finish_reason or "stop",
                }
            ],
            "usage": {
                "prompt_tokens": done.input_tokens,
                "completion_tokens": done.output_tokens,
                "total_tokens": done.input_tokens + done.output_tokens,
            },
        }
