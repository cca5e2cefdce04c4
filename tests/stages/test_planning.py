"""Planning turns even a weak model's draft into a runnable plan, and says what it repaired."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from fars.config import FarsConfig, LLMConfig, ScriptedModelConfig
from fars.ledger import Ledger
from fars.llm.client import LLMClient
from fars.stages import StageContext, get_stage
from fars.stages.planning import Plan


def plan_with(draft: dict[str, object], tmp_path: Path) -> Plan:
    cfg = FarsConfig(
        llm=LLMConfig(model="scripted/t", cache=False, scripted=ScriptedModelConfig(outputs=[json.dumps(draft)]))
    )
    ledger = Ledger(tmp_path / "ledger.sqlite")
    ctx = StageContext(
        cfg=cfg, project_id="p000", index=0, area="a", run_dir=tmp_path, llm=LLMClient(cfg.llm, ledger), ledger=ledger,
        outputs={"ideation": {"template": "modadd", "focus": "weight_decay", "chosen": {"statement": "wd helps"}}},
        stage="planning",
    )  # fmt: skip
    output = asyncio.run(get_stage("planning")(cfg)(ctx))
    assert (tmp_path / "projects" / "p000" / "plan.json").is_file()
    return Plan.model_validate(output["plan"])


def test_a_good_draft_is_kept(tmp_path: Path) -> None:
    plan = plan_with({"knob": "lr", "values": ["0.03", "0.001"], "rationale": "because"}, tmp_path)
    assert (plan.knob, plan.baseline, plan.variants, plan.repaired) == ("lr", 0.01, [0.03, 0.001], [])
    assert list(plan.conditions()) == ["baseline", "lr=0.03", "lr=0.001"]
    assert plan.seeds == [0, 1]


def test_unknown_knob_and_useless_values_are_repaired(tmp_path: Path) -> None:
    plan = plan_with({"knob": "learning speed", "values": ["1.0", "lots"], "rationale": "because"}, tmp_path)
    assert plan.knob == "weight_decay"  # the project's focus
    assert plan.variants and all(v != plan.baseline for v in plan.variants)
    assert len(plan.repaired) == 2
