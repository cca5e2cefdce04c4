"""Bad input answered with a clear error: invalid configs (all problems at once), path traversal in
artifact and sandbox file names, secrets offered to the sandbox, unknown injected faults.

(TeX injection is covered in tests/paper/test_document.py; unreadable, encrypted, huge and non-UTF-8 papers in
the reviewer's ingestion belong to tests of review/.)
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fars.cli import preflight
from fars.llm.client import LLMClient
from fars.run.ledger import Ledger
from fars.sandbox import SandboxError, read_sandbox_file, run_sandboxed, sandbox_env
from fars.stages.base import StageContext
from tests.faults.test_provider_faults import scripted


def test_every_problem_of_the_new_sections_is_listed_at_once() -> None:
    problems = preflight(
        [
            [
                "sandbox.backend=docker",
                "sandbox.memory_mb=1",
                "budget.project_max_dollars=-1",
                "llm.fallbacks=notalist",
                "budget.max_wall_s=0",
                "sandbox.nope=1",
            ]
        ]
    )
    text = "\n".join(problems)
    assert len(problems) == 6, text
    for key in ("sandbox.backend", "sandbox.memory_mb", "budget.project_max_dollars", "llm.fallbacks"):
        assert key in text
    assert "budget.max_wall_s" in text and "sandbox.nope" in text
    assert "docker" in text and "bwrap" in text  # names the value and what is allowed


@pytest.mark.parametrize("name", ["../escape.txt", "/etc/passwd", "a/../../b.txt", "runs/../../../x"])
def test_artifact_names_cannot_leave_the_project_folder(name: str, tmp_path: Path) -> None:
    ctx = StageContext(
        project_id="p000",
        index=0,
        area="x",
        run_dir=tmp_path,
        ledger=Ledger(tmp_path / "ledger.sqlite"),
        stage="writing",
    )
    with pytest.raises(ValueError, match="leaves the project folder"):
        ctx.save_artifact("paper", name, "content")
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path.parent / "b.txt").exists()
    assert ctx.save_artifact("paper", "sub/ok.md", "fine").path == "projects/p000/sub/ok.md"


@pytest.mark.parametrize("name", ["../x", "/etc/passwd", "", "a/../../x"])
def test_sandbox_file_names_cannot_leave_its_folder(name: str, tmp_path: Path) -> None:
    with pytest.raises(SandboxError, match="leaves its folder"):
        read_sandbox_file(tmp_path, name)


def test_a_missing_work_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SandboxError, match="does not exist; create it"):
        run_sandboxed(["true"], tmp_path / "missing")


def test_secrets_offered_to_the_sandbox_are_refused_by_name_and_value() -> None:
    env, refused = sandbox_env(
        "/w",
        "/w/.tmp",
        extra={"MY_API_KEY": "x", "DB_PASSWORD": "y", "LOOKS_HARMLESS": "sk-proj-abcdefgh12345", "SEED": "1"},
    )
    assert refused == ["DB_PASSWORD", "LOOKS_HARMLESS", "MY_API_KEY"]
    assert env["SEED"] == "1" and env["HOME"] == "/w" and not any(k in env for k in refused)


def test_an_unknown_injected_fault_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"unknown scripted fault 'teapot' in llm\.scripted\.outputs; known"):
        LLMClient(scripted(["ok", "!fault:teapot"]))


def test_a_list_for_a_budget_and_a_missing_variable_exit_2_naming_both(tmp_path: Path) -> None:
    from tests.conftest import run_fars

    args = ["run", "llm=scripted", "budget.max_dollars=[1,2]", "budget.max_tokens=${oc.env:FARS_NO_SUCH_VARIABLE}"]
    done = run_fars(args, tmp_path, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert "budget.max_dollars" in done.stderr and "FARS_NO_SUCH_VARIABLE" in done.stderr
    assert not (tmp_path / "outputs").exists()
