"""The start-up check of llm.api_base, and retry windows of the server presets that outlast a restart."""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from fars.config import LLMConfig
from fars.llm.endpoint import api_base_problems
from tests.conftest import compose, run_fars

CONF = Path(__file__).resolve().parents[2] / "conf" / "llm"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def answering_base() -> Iterator[str]:
    """A base URL where something answers HTTP (a 404 is an answer: a server is there)."""
    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/v1"
    server.shutdown()


def test_a_refused_api_base_is_named_with_what_to_do() -> None:
    base = f"http://127.0.0.1:{free_port()}/v1"
    (problem,) = api_base_problems(LLMConfig(model="openai/x", api_base=base))
    assert problem.startswith(f"llm.api_base={base}: connection refused") and "start the server" in problem


def test_a_base_that_answers_passes_and_none_is_not_checked(answering_base: str) -> None:
    assert api_base_problems(LLMConfig(model="openai/x", api_base=answering_base)) == []
    assert api_base_problems(LLMConfig()) == []
    (problem,) = api_base_problems(LLMConfig(model="openai/x", api_base="127.0.0.1:8000/v1"))
    assert "http://" in problem


def test_fars_commands_refuse_a_wrong_api_base_before_anything_runs(tmp_path: Path) -> None:
    base = f"http://127.0.0.1:{free_port()}/v1"
    run = run_fars(
        ["run", "llm=openai", "llm.model=openai/x", f"llm.api_base={base}", f"hydra.run.dir={tmp_path / 'r'}"], tmp_path
    )
    assert run.returncode == 2, run.stderr
    assert f"llm.api_base={base}: connection refused" in run.stderr
    assert not (tmp_path / "r").exists()  # no run folder, no ledger: nothing ran
    paper = tmp_path / "paper.md"
    paper.write_text("# A paper\n\nSome text.\n", encoding="utf-8")
    review = run_fars(["review", str(paper), "llm=openai", "llm.model=openai/x", f"llm.api_base={base}"], tmp_path)
    assert review.returncode == 2 and "connection refused" in review.stderr
    assert not (tmp_path / "paper.review").exists()


def retry_window(cfg: LLMConfig) -> float:
    """Seconds the client keeps retrying a failing call (the waits between its attempts)."""
    return sum(min(cfg.backoff_s * 2**i, cfg.max_backoff_s) for i in range(cfg.max_retries))


@pytest.mark.parametrize("preset", sorted(p.stem for p in CONF.glob("*.yaml") if p.stem not in ("local", "scripted")))
def test_server_and_hosted_presets_ride_out_a_15_second_restart(preset: str) -> None:
    assert retry_window(compose(f"llm={preset}").llm) >= 15
