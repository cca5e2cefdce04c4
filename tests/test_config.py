"""Config: every group option composes and validates; bad values fail up front with exit 2."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from fars.cli import expand_jobs, preflight
from fars.commands.calibrate import CalibrateConfig
from fars.commands.configured import CONF_DIR, compose_raw
from fars.commands.probe import ProbeConfig
from fars.commands.review import ReviewCommandConfig
from fars.config import ConfigError, FarsConfig, schema_defaults, validate_as, validate_config
from fars.run.summary import read_run_record
from tests.conftest import FAST, compose, run_fars

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
    for option in options:  # the schema accepts every option
        raw, problems = compose_raw("run", [option], FarsConfig)
        assert problems == [] and raw is not None, (option, problems)
        validate_config(raw)
    # preflight also checks this machine and the registries: only these are refused, for these reasons
    # (executor=slurm's request is checked against `sinfo`: that check has its own tests in tests/executor;
    # the server presets' default llm.api_base is refused where no server listens, as here)
    local = {"executor=slurm": ["executor.slurm.cluster=local"]}
    refused = preflight([[option, *local.get(option, [])] for option in options])
    servers = [p for p in refused if "llm.api_base=" in p]
    assert all(p.startswith(("job [llm=vllm]", "job [llm=ollama]")) for p in servers), servers
    others = [p for p in refused if p not in servers]
    assert len(others) <= 2, refused
    assert all("reviewer=oracle" in p or "no GPU is visible" in p for p in others), refused


def flatten(node: Any, path: str = "") -> dict[str, Any]:
    """Every leaf of a nested dict by its dotted path."""
    if isinstance(node, dict) and node:
        return {k: v for key, sub in node.items() for k, v in flatten(sub, f"{path}{key}.").items()}
    return {path.rstrip("."): node}


def test_the_composed_default_config_is_the_schema_field_by_field() -> None:
    """Defaults live once (the schemas): what Hydra composes with no override is exactly FarsConfig()."""
    assert preflight([[]]) == []
    raw, problems = compose_raw("run", [], FarsConfig)
    assert problems == [] and raw is not None
    composed, schema = flatten(raw), flatten(schema_defaults(FarsConfig))
    assert composed.keys() == schema.keys()
    assert {k: v for k, v in composed.items() if schema[k] != v} == {}
    assert compose() == FarsConfig()  # the fixture's config is the CLI's config
    for name, command_schema in (
        ("review", ReviewCommandConfig),
        ("calibrate", CalibrateConfig),
        ("probe", ProbeConfig),
    ):
        raw, problems = compose_raw(name, [], command_schema)
        assert problems == [] and validate_as(command_schema, raw or {}) == validate_as(command_schema, {})


def test_no_group_option_restates_a_schema_default() -> None:
    """An option file says only what it changes: a key set to the schema's own default is a second copy of it."""
    defaults = schema_defaults(FarsConfig)
    restated = []
    for option in sorted(CONF_DIR.glob("*/*.yaml")):
        group = option.parent.name
        if group in ("hydra", "sweep"):
            continue
        data = yaml.safe_load(option.read_text()) or {}
        base = defaults[group]
        for key, value in flatten(data).items():
            if key != "defaults" and key in flatten(base) and flatten(base)[key] == value:
                restated.append(f"{option.relative_to(CONF_DIR)}: {key}: {value!r}")
    assert restated == [], "these repeat the schema's defaults (fars/config.py); drop them:\n" + "\n".join(restated)


def test_a_sweep_records_its_validated_config_with_the_tracker_group(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    args = ["run", *FAST, "pipeline.papers=1", "pipeline.stages=[ideation]", f"hydra.sweep.dir={sweep}"]
    done = run_fars([*args, "-m", "seed=0,1"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    for job in sorted(sweep.glob("*/run_record.json")):
        config = read_run_record(job.parent).config
        assert config["tracker"]["group"] == sweep.name  # what W&B was given, not the composed null
        assert validate_config(config) is not None and config["llm"]["max_retries"] == 2


def test_every_problem_is_listed_at_once() -> None:
    problems = preflight([["pipeline.projects=abc", "llm.temperature=-1", "pipeline.nope=1", "llm=missing"]])
    text = "\n".join(problems)
    assert len(problems) == 4, text
    assert "pipeline.projects" in text and "abc" in text
    assert "llm.temperature" in text
    assert "pipeline.nope" in text
    assert "llm/missing" in text and "scripted" in text  # names the options that exist


def test_a_misspelt_key_gets_the_nearest_real_keys_not_hydras_plus_advice() -> None:
    problems = preflight([["pipeline.paper=3", "lm.model=x", "experiment.cod.drafts=1"]])
    text = "\n".join(problems)
    assert "did you mean pipeline.papers" in text and "did you mean llm.model" in text
    assert "did you mean experiment.code.drafts" in text
    assert "+pipeline.paper" not in text and "To append to your config" not in text


def test_sweep_jobs_are_each_validated() -> None:
    jobs = expand_jobs(["llm=scripted", "pipeline.projects=1,x"], multirun=True)
    assert jobs == [["llm=scripted", "pipeline.projects=1"], ["llm=scripted", "pipeline.projects=x"]]
    problems = preflight(jobs)
    assert len(problems) == 1 and "pipeline.projects=x" in problems[0]


def test_validate_config_rejects_unknown_keys() -> None:
    with pytest.raises(ConfigError) as err:
        validate_config({"surprise": 1})
    assert "surprise: unknown key" in str(err.value)


def test_what_needs_a_registry_is_checked_before_anything_runs() -> None:
    """Template names, the calibration file, the oracle, ranks against the pool, stages: all in preflight."""
    problems = preflight(
        [
            [
                "llm=scripted",
                "experiment.templates=[modad]",
                "reviewer.calibration=/nonexistent/calibration.json",
                "experiment.engine=ddp",
                "experiment.ranks_per_job=4",
                "pipeline.stages=[ideation,planning,experiment,writing,review,polish]",
            ]
        ]
    )
    text = "\n".join(problems)
    assert "no template 'modad'; did you mean modadd" in text
    assert "reviewer.calibration" in text and "/nonexistent/calibration.json" in text
    assert "ranks_per_job=4 but the local pool has 2 cpu slot(s)" in text
    assert "no stage named 'polish'" in text
    assert len(problems) == 4, text
    oracle = preflight([["llm=scripted", "reviewer=oracle"]])
    assert len(oracle) == 1 and "reviewer=oracle" in oracle[0] and "fars calibrate" in oracle[0]
    assert preflight([["llm=scripted", "reviewer=oracle", "pipeline.stages=[ideation]"]]) == []  # no review stage


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


def test_a_template_named_without_the_runs_scale_is_refused_before_anything_runs() -> None:
    """modadd declares no research scale (it saturates at accuracy 1 long before a run takes minutes)."""
    text = "\n".join(preflight([["llm=scripted", "experiment=research_cpu", "experiment.templates=[modadd]"]]))
    assert "experiment.scale=research: template 'modadd' declares no such scale" in text
    assert "'smoke'" in text  # names the scales it has
    assert not preflight([["llm=scripted", "experiment=research_cpu", "experiment.templates=[chargpt,digits]"]])
    assert not preflight([["llm=scripted", "experiment=research_cpu"]])  # [auto]: those with the scale run
    text = "\n".join(preflight([["llm=scripted", "experiment.scale=huge"]]))
    assert "experiment.scale=huge: no template declares that scale" in text
