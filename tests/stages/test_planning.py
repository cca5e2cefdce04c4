"""Planning turns the chosen method into baseline, method and ablations; a weak model's draft is repaired."""

from __future__ import annotations

import json
from pathlib import Path

from fars.run.contracts import HypothesisRecord, IdeationOutput, LiteratureInfo, Plan, PlanningOutput
from tests.conftest import compose, run_stage, services_for, stage_context


def idea(method: dict[str, str], template: str = "modadd") -> IdeationOutput:
    chosen = HypothesisRecord(title="sgd and cosine", statement="SGD with a cosine schedule helps.", method=method)
    return IdeationOutput(
        hypotheses=[chosen], scores=[], overall=[], screened=1, novel=1, literature=LiteratureInfo(backend="offline"),
        template=template, focus="weight_decay", chosen=chosen,
    )  # fmt: skip


def plan_with(
    draft: dict[str, object], tmp_path: Path, *overrides: str, method: dict[str, str] | None = None,
    template: str = "modadd",
) -> Plan:  # fmt: skip
    cfg = compose("llm=scripted", f"llm.scripted.outputs=[{json.dumps(json.dumps(draft))}]", *overrides)
    services = services_for(cfg, tmp_path)
    chosen = {"optimizer": "sgd", "schedule": "cosine"} if method is None else method
    output = run_stage("planning", cfg, stage_context(services, "planning", [idea(chosen, template)]), services)
    assert isinstance(output, PlanningOutput)
    assert (tmp_path / "projects" / "p000" / "plan.json").is_file()
    return output.plan


def test_a_method_becomes_baseline_method_and_one_ablation_per_component(tmp_path: Path) -> None:
    plan = plan_with({"knob": "lr", "values": ["0.03", "0.001"], "rationale": "because"}, tmp_path)
    assert plan.design == "components" and plan.repaired == []
    assert [c.name for c in plan.conditions] == [
        "baseline",
        "method",
        "method-without-optimizer",
        "method-without-schedule",
    ]
    assert [c.role for c in plan.conditions] == ["baseline", "method", "ablation", "ablation"]
    assert plan.condition("method-without-schedule").components == {"optimizer": "sgd"}
    assert plan.seeds == [0, 1] and plan.steps == 300  # the template's ci scale


def test_a_sensitivity_sweep_on_the_method_when_asked(tmp_path: Path) -> None:
    plan = plan_with(
        {"knob": "lr", "values": ["0.03", "lots"], "rationale": "because"}, tmp_path, "experiment.sensitivity=true"
    )
    sweep = [c for c in plan.conditions if c.role == "sensitivity"]
    assert [(c.knobs, c.components) for c in sweep] == [({"lr": 0.03}, {"optimizer": "sgd", "schedule": "cosine"})]


def test_unknown_knob_and_useless_values_are_repaired(tmp_path: Path) -> None:
    plan = plan_with({"knob": "learning speed", "values": ["1.0", "lots"], "rationale": "because"}, tmp_path, method={})
    assert plan.design == "knob" and plan.knob == "weight_decay"  # the project's focus
    variants = [c for c in plan.conditions if c.role == "variant"]
    assert variants and all(c.knobs["weight_decay"] != 1.0 for c in variants)
    assert len(plan.repaired) == 2


def test_a_component_changed_in_name_only_is_left_out_of_the_method(tmp_path: Path) -> None:
    """digits: Adam without weight decay is AdamW. Kept in, its ablation would equal the method and the
    paper would credit Adam for what the schedule did."""
    draft = {"knob": "lr", "values": ["0.003"], "rationale": "because"}
    plan = plan_with(draft, tmp_path, method={"optimizer": "adam", "schedule": "cosine"}, template="digits")
    assert plan.condition("method").components == {"schedule": "cosine"}
    assert [c.name for c in plan.conditions] == ["baseline", "method"]
    assert any(
        "optimizer=adam acts as the baseline's adamw unless regularizer is weight_decay" in r for r in plan.repaired
    )
