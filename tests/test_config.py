"""Config: every group option composes and validates; bad values fail up front with exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from fars.cli import CONF_DIR, expand_jobs, preflight
from fars.config import ConfigError, FarsConfig, validate_config
from tests.conftest import run_fars

OPTIONAL_GROUPS = {"sweep"}  # not in run.yaml's defaults: chosen with +group=option


def all_group_options() -> list[str]:
    """One override per option of every config group, e.g. 'llm=openai' (presets are added: '+sweep=...')."""
    return sorted(
        f"{'+' if group.name in OPTIONAL_GROUPS else ''}{group.name}={option.stem}"
        for group in CONF_DIR.iterdir()
        if group.is_dir() and group.name != "hydra"  # hydra/launcher options are checked by Hydra itself
        for option in group.glob("*.yaml")
    )


def test_every_group_option_composes_and_validates() -> None:
    options = all_group_options()
    groups = {o.split("=")[0].lstrip("+") for o in options}
    assert groups >= {"llm", "pipeline", "experiment", "executor", "reviewer", "literature", "tracker", "budget"}
    # executor=slurm's request is checked against `sinfo`: that check has its own tests in tests/executor
    local = {"executor=slurm": ["executor.slurm.cluster=local"]}
    assert preflight([[option, *local.get(option, [])] for option in options]) == []


def test_defaults_match_the_schema_defaults() -> None:
    """The YAML defaults and the dataclass defaults describe the same run."""
    assert preflight([[]]) == []
    default = FarsConfig()
    assert default.llm.model == "local/smollm2-135m"
    assert default.tracker.mode == "offline"


def test_every_problem_is_listed_at_once() -> None:
    problems = preflight([["pipeline.projects=abc", "llm.temperature=-1", "pipeline.nope=1", "llm=missing"]])
    text = "\n".join(problems)
    assert len(problems) == 4, text
    assert "pipeline.projects" in text and "abc" in text
    assert "llm.temperature" in text
    assert "pipeline.nope" in text
    assert "llm/missing" in text and "scripted" in text  # names the options that exist


def test_sweep_jobs_are_each_validated() -> None:
    jobs = expand_jobs(["llm=scripted", "pipeline.projects=1,x"], multirun=True)
    assert jobs == [["llm=scripted", "pipeline.projects=1"], ["llm=scripted", "pipeline.projects=x"]]
    problems = preflight(jobs)
    assert len(problems) == 1 and "pipeline.projects=x" in problems[0]


def test_validate_config_rejects_unknown_keys_and_bad_stage_order() -> None:
    with pytest.raises(ConfigError) as err:
        validate_config({"pipeline": {"stages": ["planning", "ideation"]}, "surprise": 1})
    text = str(err.value)
    assert "surprise: unknown key" in text
    assert "leading part" in text


def test_cli_bad_value_exits_2_and_runs_nothing(tmp_path: Path) -> None:
    done = run_fars(["run", "pipeline.projects=abc"], cwd=tmp_path, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "pipeline.projects" in done.stderr and "abc" in done.stderr
    assert "nothing was run" in done.stderr
    assert not (tmp_path / "outputs").exists()


def test_cli_unknown_command_and_help(tmp_path: Path) -> None:
    assert run_fars(["frobnicate"], cwd=tmp_path, timeout=60).returncode == 2
    shown = run_fars(["--help"], cwd=tmp_path, timeout=60)
    assert shown.returncode == 0 and "fars run" in shown.stdout


def test_resume_of_a_folder_that_is_no_run_exits_2(tmp_path: Path) -> None:
    done = run_fars(["run", f"resume={tmp_path}"], cwd=tmp_path, timeout=60)
    assert done.returncode == 2
    assert "ledger.sqlite" in done.stderr
