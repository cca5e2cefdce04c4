"""FARS against a real model server: llama-cpp-python's OpenAI-compatible server with the embedded GGUF.

Over litellm's HTTP path (``openai/`` with ``llm.api_base``, and ``hosted_vllm/``): ``fars run`` makes a
reviewed paper though its server is killed and restarted mid-run (nothing is paid twice), and the
ledger shows the structured-output mode the server took (it rejects ``json_schema`` with a 500);
``fars review`` and ``fars calibrate`` review papers. Kept small: one paper, ensemble of one, short
replies. CI starts the shared server with ``.ci/llama_server.sh``; the run test starts its own.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import fars_command, run_fars
from tests.llm.conftest import server_available
from tests.llm.llama_server import MODEL_ALIAS, LlamaServer

pytestmark = pytest.mark.slow
DEV = Path(__file__).resolve().parents[3] / "shared" / "data" / "iclr2022" / "dev.jsonl"
# a review's form takes the embedded model about 300 tokens: a lower limit cuts it and costs repairs
SMALL_REVIEW = [
    "reviewer.ensemble=1",
    "reviewer.meta_review=false",
    "reviewer.max_tokens=400",
    "reviewer.max_paper_chars=1500",
    "reviewer.related_works=0",  # the literature step is not the subject here (tests/review covers it)
    "reviewer.echo_retries=0",  # an echoed form is counted, not asked for again (tests/review/test_degenerate.py asks)
    "llm.max_tokens=256",
    "llm.timeout_s=600",  # the server answers one call at a time; its queue counts against an HTTP call's limit
]


def answered_calls(ledger: Path) -> list[tuple[str, str, str, int, int, str | None]]:
    """(project, stage, request hash, ordinal, input tokens, mode) of every answered call."""
    with sqlite3.connect(ledger) as db:
        return db.execute(
            "SELECT project_id, stage, request_hash, ordinal, input_tokens, structured_mode FROM calls "
            "WHERE response IS NOT NULL AND cache_hit = 0"
        ).fetchall()


def test_fars_run_over_http_survives_a_server_restart_and_shows_the_mode(tmp_path: Path) -> None:
    server_available()
    server = LlamaServer(tmp_path / "server.log")
    server.start()
    run_dir = tmp_path / "run"
    # no code search (not the subject: the embedded e2e run asks the model for code) and one review call
    args = [
        "run", "llm=openai", f"llm.model=openai/{MODEL_ALIAS}", f"llm.api_base={server.base_url}",
        "llm.concurrency=2", "pipeline.papers=1", "pipeline.projects=1", "pipeline.hypotheses_per_project=1",
        "tracker=disabled", "experiment.templates=[simulated]", "experiment.seeds=2", "experiment.max_variants=1",
        "paper.compile=never", "literature.top_k=2", "experiment.code.enabled=false", *SMALL_REVIEW,
        f"hydra.run.dir={run_dir}",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("OPENAI_API_KEY", None)  # a local server needs no key
    log = (tmp_path / "fars.log").open("w")
    run = subprocess.Popen(fars_command(args), cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, env=env)
    killed = False
    try:
        deadline = time.monotonic() + 900
        while run.poll() is None and time.monotonic() < deadline:
            ledger = run_dir / "ledger.sqlite"
            if not killed and ledger.is_file() and len(answered_calls(ledger)) >= 3:
                server.kill()  # mid-run, with calls still to make
                killed = True
                time.sleep(3)
                server.start()
            time.sleep(0.5)
        assert run.wait(timeout=max(1, deadline - time.monotonic())) == 0, (tmp_path / "fars.log").read_text()[-3000:]
    finally:
        if run.poll() is None:
            run.kill()
        server.stop()
        log.close()
    assert killed, "the run finished before the server could be killed"
    record = json.loads((run_dir / "run_record.json").read_text())
    assert record["papers"] == 1 and record["projects"][0]["rating"] is not None
    output = (tmp_path / "fars.log").read_text()
    assert "connection refused by" in output  # the outage, named as such, then ridden out
    calls = answered_calls(run_dir / "ledger.sqlite")
    places = [c[:4] for c in calls]
    assert len(places) == len(set(places))  # no call answered (and paid) twice
    modes = {c[5] for c in calls if c[5] is not None}
    assert modes == {"json_object"}  # the server refused json_schema once; json_object was used from then on
    with sqlite3.connect(run_dir / "ledger.sqlite") as db:
        refused = db.execute("SELECT COUNT(*) FROM calls WHERE structured_mode='json_schema'").fetchone()[0]
    assert refused == 1
    assert record["totals"]["overall"]["input_tokens"] == sum(c[4] for c in calls)


@pytest.mark.xdist_group("llama_server")  # the shared server answers one call at a time
def test_fars_review_over_hosted_vllm(tmp_path: Path, llama_server_url: str) -> None:
    paper = tmp_path / "paper.md"
    paper.write_text(
        "# Weight decay in tiny networks\n\n## Abstract\n\nWe study weight decay on modular addition with a "
        "two-layer MLP over three seeds.\n\n## Results\n\nAccuracy rose from 0.61 to 0.74 with decay 0.5.\n",
        encoding="utf-8",
    )
    done = run_fars(
        ["review", str(paper), "llm=vllm", f"llm.model=hosted_vllm/{MODEL_ALIAS}", f"llm.api_base={llama_server_url}",
         "literature=none", *SMALL_REVIEW],
        tmp_path,
        timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    review = json.loads((tmp_path / "paper.review" / "review.json").read_text())
    assert len(review["reviews"]) == 1 and 1 <= review["raw_rating"] <= 10
    with sqlite3.connect(tmp_path / "paper.review" / "ledger.sqlite") as db:
        modes = {r[0] for r in db.execute("SELECT structured_mode FROM calls WHERE response IS NOT NULL")}
    assert modes == {"json_object"}


@pytest.mark.xdist_group("llama_server")
def test_fars_calibrate_over_openai_compatible_http(tmp_path: Path, llama_server_url: str) -> None:
    if not DEV.is_file():
        pytest.skip(f"no dev data at {DEV}")
    out = tmp_path / "calibration"
    done = run_fars(
        ["calibrate", "limit=3", f"data={DEV}", "llm=openai", f"llm.model=openai/{MODEL_ALIAS}",
         f"llm.api_base={llama_server_url}", "tracker=disabled", "bootstrap=50", f"out={out}", *SMALL_REVIEW],
        tmp_path,
        timeout=1500,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((out / "calibration.json").read_text())
    assert report["reviewed"] == 3 and report["failed"] == 0
