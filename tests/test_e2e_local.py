"""End to end on the real embedded model (SmolLM2-135M through llama.cpp): the README's main job."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from fars.config import LLMConfig
from fars.ledger import Ledger
from fars.llm.client import LLMClient
from fars.summary import read_run_record
from review.forms import ICLR2025Review
from tests.conftest import run_fars
from tests.test_pipeline import assert_record_matches_ledger


def test_embedded_model_fills_a_review_form(tmp_path: Path) -> None:
    """Constrained decoding makes even a 135M model return a valid ICLR 2025 form."""
    ledger = Ledger(tmp_path / "ledger.sqlite")
    client = LLMClient(LLMConfig(cache=False, max_tokens=600), ledger)
    paper = "# Weight decay helps modular addition\n\nWe train an MLP with and without weight decay; it generalises better with it."
    try:
        review = asyncio.run(
            client.structured([{"role": "user", "content": f"Review this paper:\n{paper}"}], ICLR2025Review)
        )
    finally:
        client.close()
    assert review.rating in (1, 3, 5, 6, 8, 10)
    usage = ledger.total_usage()
    assert usage.calls >= 1 and usage.output_tokens > 10 and usage.cost_usd == 0.0


@pytest.mark.slow
@pytest.mark.timeout(1800)  # the README's main job on 2 cores: minutes unloaded, several times that under load
def test_default_run_on_the_embedded_model(tmp_path: Path) -> None:
    """`fars run` with the default config: two papers, each reviewed, W&B offline, ledger = record."""
    run_dir = tmp_path / "run"
    done = run_fars(["run", f"hydra.run.dir={run_dir}"], cwd=tmp_path, timeout=1700)
    assert done.returncode == 0, done.stderr[-4000:]
    record = read_run_record(run_dir)
    assert record.config["llm"]["model"] == "local/smollm2-135m"
    assert len(record.scores) >= 2, [(p.id, p.status, p.error) for p in record.projects]
    for project in record.projects:
        if project.rating is not None:
            assert (run_dir / "projects" / project.id / "paper.md").is_file()
            assert (run_dir / "projects" / project.id / "review.json").is_file()
    # the research: each paper's plan has a baseline, a method and an ablation, on a template of its own;
    # the weak model's attempt at code is recorded, and the plan's conditions stood without it
    from fars.contracts import Results

    templates = set()
    for project in record.projects:
        results_file = run_dir / "projects" / project.id / "results.json"
        if project.rating is None or not results_file.is_file():
            continue
        results = Results.model_validate_json(results_file.read_text())
        templates.add(results.template)
        roles = [c.role for c in results.conditions.values()]
        assert len(roles) >= 3 and "baseline" in roles and "ablation" in roles, roles
        if results.code is not None and results.code.reason and "no code search" not in results.code.reason:
            assert Ledger(run_dir / "ledger.sqlite").code_nodes(project.id), "a code attempt went unrecorded"
    assert len(templates) >= 2, templates
    assert record.totals.overall.output_tokens > 500
    assert record.totals.by_model["local/smollm2-135m"].calls == record.totals.overall.calls
    assert_record_matches_ledger(run_dir)
    assert list((run_dir / "wandb").glob("offline-run-*/run-*.wandb")), "no W&B offline run to sync"
