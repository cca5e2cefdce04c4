"""The composition root and the run's contracts: built once, validated on resume, recorded when a run fails."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

import fars.stages.services
from fars.context import call_context
from fars.literature import LiteratureError, SearchHit
from fars.literature.chain import FallbackChain
from fars.literature.offline import OfflineCorpus
from fars.llm.client import LLMClient
from fars.pipeline.queue import Pipeline
from fars.run.contracts import ContractError, IdeationOutput, StageOutput, register_contract
from fars.run.ledger import Ledger
from fars.run.summary import read_run_record
from fars.stages.base import StageContext, StageFn, register_stage
from tests.conftest import FAST, compose, run_fars
from tests.evaluation.wandb_inspect import inspect_offline_run
from tests.llm.test_client import scripted


def test_the_run_builds_one_literature_backend_and_every_stage_uses_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[Any] = []
    real = fars.stages.services.make_backend

    def counting(cfg: Any) -> Any:
        built.append(real(cfg))
        return built[-1]

    monkeypatch.setattr(fars.stages.services, "make_backend", counting)
    cfg = compose(*FAST, "pipeline.papers=2", "pipeline.projects=2", "paper.compile=never")
    pipeline = Pipeline(cfg, tmp_path)
    record = asyncio.run(pipeline.run())
    assert record.papers == 2
    assert len(built) == 1, "ideation, writing and review must share the run's one backend"
    assert pipeline.services is not None and pipeline.services.literature is built[0]
    assert {p.status.value for p in record.projects} == {"done"}


class _Down:
    """A literature service that is always down (the chain moves on to the corpus)."""

    name = "semantic_scholar"

    async def search(self, query: str, k: int) -> list[SearchHit]:
        raise LiteratureError("service down")

    async def get(self, record_id: str) -> None:
        raise LiteratureError("service down")


def test_a_shared_chain_tells_each_project_only_its_own_answers() -> None:
    chain = FallbackChain([_Down(), OfflineCorpus.load()])

    async def project(pid: str, query: str) -> list[str]:
        with call_context(pid, "ideation"):
            await chain.search(query, 3)
            await asyncio.sleep(0)
        return chain.answered_for(pid, "ideation")

    async def both() -> tuple[list[str], list[str]]:
        a, b = await asyncio.gather(project("p000", "grokking"), project("p001", "learning rate"))
        return a, b

    a, b = asyncio.run(both())
    assert a == b == ["offline"]
    assert chain.answered_for("p002") == []  # a project that asked nothing was answered by nobody
    assert {e.project_id for e in chain.events} == {"p000", "p001"}


def test_a_second_client_does_not_swap_the_first_ones_scripted_model(tmp_path: Path) -> None:
    first = LLMClient(scripted(["from the first client"]))
    second = LLMClient(scripted(["from the second client"]))

    async def ask() -> tuple[str, str]:
        a = await first.complete([{"role": "user", "content": "hello"}])
        b = await second.complete([{"role": "user", "content": "hello"}])
        return a.text, b.text

    try:
        assert asyncio.run(ask()) == ("from the first client", "from the second client")
    finally:
        first.close()
        second.close()


def test_a_hand_edited_stage_output_makes_resume_fail_naming_stage_and_field(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    args = ["run", *FAST, "pipeline.papers=1", "pipeline.projects=1", "pipeline.stages=[ideation,planning]"]
    done = run_fars([*args, f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    db = sqlite3.connect(run_dir / "ledger.sqlite")
    row_id, output = db.execute(
        "SELECT id, output FROM stage_events WHERE stage='planning' AND event='finish'"
    ).fetchone()
    data = json.loads(output)
    del data["plan"]["template"]  # as a careless hand edit would leave it
    data["plan"]["steps"] = "many"
    db.execute("UPDATE stage_events SET output=? WHERE id=?", (json.dumps(data), row_id))
    db.commit()
    db.close()
    resumed = run_fars(["run", f"resume={run_dir}", "pipeline.papers=2"], cwd=tmp_path)
    assert resumed.returncode == 2, resumed.stderr[-3000:]
    assert "stage planning" in resumed.stderr and "field plan.template" in resumed.stderr
    assert "field plan.steps" in resumed.stderr and "p000" in resumed.stderr
    assert "Traceback" not in resumed.stderr


def test_a_stored_output_of_a_newer_contract_version_is_refused(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite")
    ledger.add_project("p000", 0, "a")
    ledger.stage_finished("p000", "ideation", StageOutput())
    ledger._db.execute("UPDATE stage_events SET contract='ideation', contract_version=99")
    stored = ledger.stage_output("p000", "ideation")
    assert stored is not None
    from fars.run.ledger import load_stored

    with pytest.raises(ContractError, match="newer FARS"):
        load_stored(stored, IdeationOutput)


@register_contract("test-explodes")
class _Never(StageOutput):
    """Never produced: its stage's factory fails."""


@register_stage("test-explodes", produces=_Never, consumes=(IdeationOutput,))
def _explodes(settings: dict[str, Any], services: Any) -> StageFn:
    raise RuntimeError("the stage factory could not start")

    async def run(ctx: StageContext) -> _Never:  # pragma: no cover - never built
        return _Never()

    return run


def test_a_run_that_fails_after_start_still_writes_its_record_and_closes_the_tracker(tmp_path: Path) -> None:
    cfg = compose("llm=scripted", "tracker=wandb_offline", "pipeline.stages=[ideation,test-explodes]")
    with pytest.raises(RuntimeError, match="could not start"):
        asyncio.run(Pipeline(cfg, tmp_path).run())
    record = read_run_record(tmp_path)
    assert record.status == "failed" and "could not start" in (record.error or "")
    seen = inspect_offline_run(tmp_path)  # the W&B run was finished, with the failure in its summary
    assert seen["summary"]["status"] == "failed" and "could not start" in seen["summary"]["error"]
