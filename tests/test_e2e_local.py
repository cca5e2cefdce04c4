"""End to end on the real embedded model (SmolLM2-135M through llama.cpp): the README's main job."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest

from fars.config import LLMConfig
from fars.ledger import Ledger
from fars.llm.client import LLMClient
from fars.summary import read_run_record
from review.forms import ICLR2025Review
from tests.conftest import run_fars
from tests.test_pipeline import assert_record_matches_ledger


def paper_parts(markdown: str) -> dict[str, str]:
    """The title, abstract and discussion of a paper.md, as the reader gets them."""
    title = next((line[2:] for line in markdown.splitlines() if line.startswith("# ")), "")
    sections = dict(re.findall(r"^## (.+?)\n(.*?)(?=^## |\Z)", markdown, flags=re.S | re.M))
    return {"title": title, "abstract": sections.get("Abstract", ""), "discussion": sections.get("Discussion", "")}


def degenerate_parts(project_dir: Path) -> dict[str, list[str]]:
    """What is degenerate in a written paper's title, abstract and discussion (by the rules writing applies
    to the model's draft: echoes of the schema, boilerplate, loops, no word of the study)."""
    from experiments.spec import load_template
    from fars.contracts import Plan, Results
    from fars.degenerate import degenerate_reasons
    from fars.methods import study_terms
    from fars.stages.ideation import SCHEMA_TEXTS
    from fars.stages.writing import DRAFT_TEXTS, Draft

    results = Results.model_validate_json((project_dir / "results.json").read_text())
    stored = json.loads((project_dir / "plan.json").read_text())
    plan = Plan.model_validate(stored.get("plan", stored))
    expected = [*study_terms(load_template(results.template), plan.conditions[1].components), *results.conditions]
    found = {}
    for part, text in paper_parts((project_dir / "paper.md").read_text()).items():
        reasons = degenerate_reasons(
            text, echoes=[*DRAFT_TEXTS, *SCHEMA_TEXTS], field_names=[*Draft.model_fields], expected=expected
        )
        if reasons or not text.strip():
            found[part] = reasons or ["missing"]
    return found


def test_the_paper_check_fails_on_what_the_embedded_model_used_to_write(tmp_path: Path) -> None:
    """The check the default run's papers must pass names the title, abstract and discussion the 135M model
    wrote before the harness replaced them, and passes the harness's own text for the same study."""
    from fars.contracts import Condition, Plan
    from fars.grounding import Numbers
    from fars.paper_text import harness_abstract, harness_discussion, harness_title
    from tests.test_paper import RESULTS

    plan = Plan(
        template="modadd", design="components", seeds=[0, 1], steps=30,
        conditions=[Condition(name="baseline", role="baseline"),
                    Condition(name="method", role="method", components={"optimizer": "sgd", "schedule": "cosine"}),
                    Condition(name="method-without-schedule", role="ablation", components={"optimizer": "sgd"},
                              of="method", removed="schedule")],
    )  # fmt: skip
    (tmp_path / "results.json").write_text(RESULTS.model_dump_json())
    (tmp_path / "plan.json").write_text(json.dumps({"plan": plan.model_dump(mode="json")}))
    (tmp_path / "paper.md").write_text(
        "# Hypothesis: A testable hypothesis.\n\n## Abstract\n\nTheoretical Framework: A Testable Hypothesis.\n\n"
        "## Introduction\n\nWe study it.\n\n## Discussion\n\nThe Proposal: A New Approach to the Proposal\n"
    )
    assert set(degenerate_parts(tmp_path)) == {"title", "abstract", "discussion"}
    from experiments.spec import load_template
    from fars.contracts import HypothesisRecord

    spec, numbers = load_template("modadd"), Numbers()
    hypothesis = HypothesisRecord(title="SGD and cosine", statement="SGD with a cosine schedule raises val_accuracy.")
    abstract = numbers.plain(harness_abstract(spec, plan, RESULTS, hypothesis, numbers))
    discussion = numbers.plain(harness_discussion(spec, plan, RESULTS, numbers))
    (tmp_path / "paper.md").write_text(
        f"# {harness_title(spec, plan, RESULTS)}\n\n## Abstract\n\n{abstract}\n\n## Discussion\n\n{discussion}\n"
    )
    assert degenerate_parts(tmp_path) == {}


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
        # what a reader gets is never the weak model's degenerate text: the harness wrote those parts instead
        assert degenerate_parts(run_dir / "projects" / project.id) == {}, project.id
        if results.code is not None and results.code.reason and "no code search" not in results.code.reason:
            assert Ledger(run_dir / "ledger.sqlite").code_nodes(project.id), "a code attempt went unrecorded"
    assert len(templates) >= 2, templates
    assert record.degenerate_rate is not None  # the weak model's degenerate rate before replacement, recorded
    assert record.totals.overall.output_tokens > 500
    assert record.totals.by_model["local/smollm2-135m"].calls == record.totals.overall.calls
    assert_record_matches_ledger(run_dir)
    assert list((run_dir / "wandb").glob("offline-run-*/run-*.wandb")), "no W&B offline run to sync"
