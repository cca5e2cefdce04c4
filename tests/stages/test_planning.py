"""Planning turns even a weak model's draft into a runnable plan, and says what it repaired."""

from __future__ import annotations

import json
from pathlib import Path

from fars.contracts import IdeationOutput, LiteratureInfo, Plan, PlanningOutput
from tests.conftest import compose, run_stage, services_for, stage_context

IDEA = IdeationOutput(
    hypotheses=[],
    scores=[],
    overall=[],
    screened=1,
    novel=1,
    literature=LiteratureInfo(backend="offline"),
    template="modadd",
    focus="weight_decay",
    chosen={"title": "wd", "statement": "wd helps"},  # type: ignore[arg-type]
)


def plan_with(draft: dict[str, object], tmp_path: Path) -> Plan:
    cfg = compose("llm=scripted", f"llm.scripted.outputs=[{json.dumps(json.dumps(draft))}]")
    services = services_for(cfg, tmp_path)
    output = run_stage("planning", cfg, stage_context(services, "planning", [IDEA]), services)
    assert isinstance(output, PlanningOutput)
    assert (tmp_path / "projects" / "p000" / "plan.json").is_file()
    return output.plan


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
