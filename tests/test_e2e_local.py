"""End to end on the real embedded model (SmolLM2-135M through llama.cpp): the README's main job."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from fars.run.ledger import Ledger
from fars.run.summary import read_run_record
from review.forms import ICLR2025Review
from tests.conftest import FIRST_GROUP, run_fars
from tests.pipeline.test_queue import assert_record_matches_ledger


def paper_parts(markdown: str) -> dict[str, str]:
    """The title, abstract and discussion of a paper.md, as the reader gets them."""
    title = next((line[2:] for line in markdown.splitlines() if line.startswith("# ")), "")
    sections = dict(re.findall(r"^## (.+?)\n(.*?)(?=^## |\Z)", markdown, flags=re.S | re.M))
    return {"title": title, "abstract": sections.get("Abstract", ""), "discussion": sections.get("Discussion", "")}


def degenerate_parts(project_dir: Path) -> dict[str, list[str]]:
    """What is degenerate in a written paper's title, abstract and discussion (by the rules writing applies
    to the model's draft: echoes of the schema, boilerplate, loops, no word of the study)."""
    from experiments.spec import load_template
    from fars.paper.degenerate import degenerate_reasons
    from fars.run.contracts import Plan, Results
    from fars.stages.ideation import SCHEMA_TEXTS
    from fars.stages.methods import study_terms
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
    from fars.paper.grounding import Numbers
    from fars.paper.prose import harness_abstract, harness_discussion, harness_title
    from fars.run.contracts import Condition, Plan
    from tests.paper.test_document import RESULTS

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
    from fars.run.contracts import HypothesisRecord

    spec, numbers = load_template("modadd"), Numbers()
    hypothesis = HypothesisRecord(title="SGD and cosine", statement="SGD with a cosine schedule raises val_accuracy.")
    abstract = numbers.plain(harness_abstract(spec, plan, RESULTS, hypothesis, numbers))
    discussion = numbers.plain(harness_discussion(spec, plan, RESULTS, numbers))
    (tmp_path / "paper.md").write_text(
        f"# {harness_title(spec, plan, RESULTS)}\n\n## Abstract\n\n{abstract}\n\n## Discussion\n\n{discussion}\n"
    )
    assert degenerate_parts(tmp_path) == {}


# The default run at a test's size: every stage and every kind of call on the real model (2 papers on 2
# templates, code search, an ensemble of two and an area chair), with 2 hypotheses a project, smoke-scale
# training and 2 related works a review. The default size itself is timed by benchmarks/embedded_throughput.py.
# The two templates are those with the shortest code: the code search shows the model its template's code, and
# one thread reads chargpt's or digits' prompt (4,600 tokens) in about two minutes beside the other worker.
TEST_SIZE = [
    "pipeline.hypotheses_per_project=2",
    "experiment.templates=[modadd,abstracts_lm]",
    "experiment.scale=smoke",
    "reviewer.related_works=2",
    "reviewer.echo_retries=0",  # an echoed reply is counted, not asked for again (test_degenerate.py asks)
    # two points a list: the 135M model fills each to its 200-character cap, and when it loops ("1.1.1.1") that is
    # a token a character, so its forms ran past 1,300 tokens and were asked again with twice the room
    "reviewer.max_points=2",
    "llm.local.n_threads=1",  # beside the other test worker, one thread is faster than two
]


def on_the_run(test: Callable[..., None]) -> Callable[..., None]:
    """A test that reads the embedded run: slow, and on the worker that made it (one run per suite)."""
    return pytest.mark.slow(pytest.mark.xdist_group(FIRST_GROUP)(test))


@pytest.fixture(scope="session")
def embedded_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`fars run` on the embedded model (W&B offline), finished; every test below reads its folder."""
    base = tmp_path_factory.mktemp("embedded")
    run_dir = base / "run"
    done = run_fars(["run", *TEST_SIZE, f"hydra.run.dir={run_dir}"], cwd=base, timeout=1700)
    assert done.returncode == 0, done.stderr[-4000:]
    return run_dir


def _written(run_dir: Path) -> list[tuple[str, Path]]:
    """(project id, folder) of every reviewed project with its results."""
    record = read_run_record(run_dir)
    found = []
    for project in record.projects:
        folder = run_dir / "projects" / project.id
        if project.rating is not None and (folder / "results.json").is_file():
            found.append((project.id, folder))
    return found


@pytest.mark.timeout(1800)  # the embedded run: minutes on a quiet 2-core machine, several times that under load
@on_the_run
def test_the_embedded_run_makes_two_reviewed_papers(embedded_run: Path) -> None:
    record = read_run_record(embedded_run)
    assert record.status == "completed" and record.config["llm"]["model"] == "local/smollm2-135m"
    assert len(record.scores) >= 2, [(p.id, p.status, p.error) for p in record.projects]
    # pipeline.research=auto: the 135M model fails the capability check, so its projects run the menu
    assert set(record.research) == {"menu"}, record.research
    checks = {p.capability for p in record.projects if p.capability}
    assert checks and all(c.startswith("local/smollm2-135m: failed") for c in checks), checks
    for project in record.projects:
        if project.rating is not None:
            assert (embedded_run / "projects" / project.id / "paper.md").is_file()
            assert (embedded_run / "projects" / project.id / "review.json").is_file()
            review = json.loads((embedded_run / "projects" / project.id / "review.json").read_text())
            assert review["reviews"], "no valid review form within the time-outs"


@on_the_run
def test_the_embedded_runs_plans_are_real_studies_on_two_templates(embedded_run: Path) -> None:
    """Each paper's plan has a baseline, a method and an ablation, on a template of its own; the weak model's
    attempt at code is recorded, and the plan's conditions stood without it."""
    from experiments.spec import load_template
    from fars.run.contracts import Plan, Results

    templates = set()
    for project_id, folder in _written(embedded_run):
        results = Results.model_validate_json((folder / "results.json").read_text())
        templates.add(results.template)
        roles = [c.role for c in results.conditions.values()]
        assert len(roles) >= 3 and "baseline" in roles and "ablation" in roles, roles
        # the plan shows its pilot and why it chose its seeds and steps; the paper's setup lists every setting
        plan = Plan.model_validate_json((folder / "plan.json").read_text())
        assert plan.pilot is not None and len(plan.pilot.values) >= 2 and plan.pilot.steps == plan.steps, plan.pilot
        assert plan.seed_design is not None and plan.seed_design.seeds == len(plan.seeds) and plan.seed_design.reason
        paper = (folder / "paper.md").read_text()
        assert f"runs for {plan.steps} steps with seeds" in paper and "Table 1" in paper
        for knob in load_template(results.template).knobs:
            assert f"| {knob.name} |" in paper or f"{knob.name}=" in paper, f"{project_id}: setup omits {knob.name}"
        if results.code is not None and results.code.reason and "no code search" not in results.code.reason:
            assert Ledger(embedded_run / "ledger.sqlite").code_nodes(project_id), "a code attempt went unrecorded"
    assert len(templates) >= 2, templates


@on_the_run
def test_what_a_reader_gets_of_the_embedded_run_is_never_degenerate(embedded_run: Path) -> None:
    """The weak model's degenerate text was replaced by the harness's, and its rate before replacement recorded."""
    written = _written(embedded_run)
    assert len(written) >= 2
    for project_id, folder in written:
        assert degenerate_parts(folder) == {}, project_id
    assert read_run_record(embedded_run).degenerate_rate is not None


@on_the_run
def test_constrained_decoding_gives_the_embedded_model_valid_forms_at_no_cost(embedded_run: Path) -> None:
    """Even the 135M model returns valid ICLR 2025 forms: each member's form validates and its rating is on the
    form's scale; a local model's calls cost nothing. (This had its own model load and form, 30 s in CI.)"""
    from review.forms import ICLR_RATINGS

    members = [
        member
        for _, folder in _written(embedded_run)
        for member in json.loads((folder / "review.json").read_text())["reviews"]
    ]
    assert members, "no review form in the run"
    for member in members:
        form = ICLR2025Review.model_validate(member["review"])
        assert form.rating in ICLR_RATINGS and member["rating"] in ICLR_RATINGS, member["rating"]
    usage = Ledger(embedded_run / "ledger.sqlite").total_usage()
    assert usage.calls >= len(members) and usage.output_tokens > 10 and usage.cost_usd == 0.0


@on_the_run
def test_the_embedded_runs_record_is_its_ledger(embedded_run: Path) -> None:
    record = read_run_record(embedded_run)
    assert record.totals.overall.output_tokens > 500
    assert record.totals.by_model["local/smollm2-135m"].calls == record.totals.overall.calls
    assert_record_matches_ledger(embedded_run)


@on_the_run
def test_the_embedded_run_leaves_a_wandb_run_and_a_report(embedded_run: Path) -> None:
    from fars.commands.report import main as report

    assert list((embedded_run / "wandb").glob("offline-run-*/run-*.wandb")), "no W&B offline run to sync"
    assert report([str(embedded_run)]) == 0
    page = (embedded_run / "report.html").read_text()
    for project_id, _ in _written(embedded_run):
        assert f"projects/{project_id}/paper.md" in page
