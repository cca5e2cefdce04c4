"""The `fars` command as a shell sees it: sweeps (glob, range, joblib), flag order, Ctrl-C."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from fars.cli import expand_jobs, split_args
from tests.conftest import FAST, fars_command, run_fars


def test_glob_and_range_sweeps_expand() -> None:
    jobs = expand_jobs(["reviewer=glob(iclr*)", "pipeline.projects=range(1,3)", "llm=scripted"], multirun=True)
    assert sorted(tuple(j[:2]) for j in jobs) == [
        ("reviewer=iclr2022", "pipeline.projects=1"),
        ("reviewer=iclr2022", "pipeline.projects=2"),
        ("reviewer=iclr2025", "pipeline.projects=1"),
        ("reviewer=iclr2025", "pipeline.projects=2"),
    ]


def test_a_glob_sweep_is_checked_job_by_job(tmp_path: Path) -> None:
    """`fars run -m 'reviewer=glob(iclr*)'` crashed in FARS's own preflight ("ConfigLoader is not set")."""
    done = run_fars(["run", "-m", "reviewer=glob(iclr*)", "pipeline.papers=0", *FAST], tmp_path, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert "reviewer=iclr2022" in done.stderr and "reviewer=iclr2025" in done.stderr
    assert done.stderr.count("pipeline.papers: Input should be greater than or equal to 1") == 2


def test_flags_keep_their_values_wherever_they_stand(tmp_path: Path) -> None:
    assert split_args(["-m", "--cfg", "job", "llm=scripted", "-p", "pipeline"]) == (
        ["-m", "--cfg", "job", "-p", "pipeline"],
        ["llm=scripted"],
    )
    assert split_args(["--info", "llm=scripted"]) == (["--info"], ["llm=scripted"])
    assert split_args(["-sc", "install=bash"]) == (["-sc", "install=bash"], [])
    done = run_fars(["run", "pipeline.papers=3", "--cfg", "job", "-p", "pipeline"], tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "papers: 3" in done.stdout


@pytest.mark.slow
def test_a_glob_sweep_under_the_joblib_launcher_makes_papers(tmp_path: Path) -> None:
    """hydra/launcher=joblib: every project failed (the figure pool could not start inside a loky worker)."""
    done = run_fars(
        [
            "run",
            "-m",
            "hydra/launcher=joblib",
            "hydra.launcher.n_jobs=2",
            "reviewer=glob(iclr202*)",
            "pipeline.papers=1",
            *FAST,
        ],
        tmp_path,
        timeout=500,
        cold=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    records = sorted((tmp_path / "multirun").glob("*/*/*/run_record.json"))
    assert len(records) == 2
    for path in records:
        record = json.loads(path.read_text())
        assert len(record["scores"]) == 1, [p.get("error") for p in record["projects"]]


def _kill_jobs_under(folder: Path) -> list[int]:
    """SIGKILL every process whose command line names ``folder`` (a run's jobs); returns their pids."""
    import os

    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if str(folder) in argv:
            found.append(int(entry.name))
            with contextlib.suppress(OSError):
                os.kill(int(entry.name), signal.SIGKILL)
    return found


def test_ctrl_c_ends_the_run_with_its_record_and_no_traceback(tmp_path: Path) -> None:
    args = ["run", "pipeline.papers=1", *FAST, "experiment.steps=5000000", f"hydra.run.dir={tmp_path / 'run'}"]
    proc = subprocess.Popen(
        fars_command(args),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # a shell's background job (`pytest &`) ignores SIGINT, and children inherit that; a terminal's
        # Ctrl-C reaches a foreground run, which is what this test stands for
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 150
        while not list((tmp_path / "run").glob("projects/*/runs/*/train.log")) and proc.poll() is None:
            assert time.monotonic() < deadline, "training never started"
            time.sleep(0.3)
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        _kill_jobs_under(tmp_path)  # a failed run must not leave its jobs training through the rest of the suite
    assert proc.returncode == 130 and "Traceback" not in output, output[-3000:]
    assert not _kill_jobs_under(tmp_path), "jobs of the interrupted run were still running"
    assert json.loads((tmp_path / "run" / "run_record.json").read_text())["status"] == "interrupted"


def test_printing_the_resolved_config_with_a_missing_variable_exits_2(tmp_path: Path) -> None:
    done = run_fars(["run", "--cfg", "job", "--resolve", "area=${oc.env:FARS_NO_SUCH_VARIABLE}"], tmp_path, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert "FARS_NO_SUCH_VARIABLE" in done.stderr and "not found" in done.stderr


@pytest.mark.parametrize("saved", ["[unclosed", "just: a mapping", "- 3\n- [nested]\n"])
def test_a_broken_saved_overrides_file_exits_2_on_resume(tmp_path: Path, saved: str) -> None:
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "overrides.yaml").write_text(saved)
    done = run_fars(["run", f"resume={tmp_path}"], tmp_path, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert "overrides.yaml" in done.stderr


def test_run_help_says_what_each_group_and_the_common_keys_mean(tmp_path: Path) -> None:
    """`fars run --help` dumped 163 lines of config and no word of what a key means."""
    import re

    import yaml

    done = run_fars(["run", "--help"], tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    text = done.stdout
    assert len(text.splitlines()) < 80, "the help is a page, not the whole config (`--cfg job` prints that)"
    conf = Path(__file__).parents[1] / "conf"
    groups = {p.name for p in conf.iterdir() if p.is_dir() and p.name != "hydra"}
    section = text.split("What each group sets:")[1].split("==")[0]
    described = set(re.findall(r"^  ([a-z_]+) {2,}\S", section, flags=re.M))
    assert groups <= described, f"groups without a word in conf/hydra/help/fars.yaml: {groups - described}"
    keys = re.findall(r"^  ([a-z_.]+)=", text.split("== Keys set most often ==")[1], flags=re.M)
    assert {"pipeline.papers", "llm.model", "experiment.templates", "resume"} <= set(keys)
    full = run_fars(["run", "--cfg", "job"], tmp_path, timeout=120)
    config = yaml.safe_load(full.stdout)
    for key in keys:  # every key the help names is a key of the config (or a group)
        node = config
        for part in key.split("."):
            assert isinstance(node, dict) and (part in node or part in groups), f"--help names {key}: no such key"
            node = node.get(part)
