"""Hostile template folders (from ``experiment.template_dirs``) are refused by name, cheaply, and alone.

A YAML bomb, a 300 MB spec, a FIFO, a spec linked (or hard-linked) to a secret file, a deeply nested spec,
an entry point or editable file outside the folder, a link to a template folder: each is refused with a
message naming the file and what to do, never the file's content, in well under a second and a few
megabytes (the bomb once took 3 GB, the big spec over 120 s, the FIFO forever). `fars template list`
lists the good templates beside them and names each bad one; the run's preflight names them too.
"""

from __future__ import annotations

import os
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from experiments.spec import SPEC_MAX_BYTES, TemplateError, load_spec, scan_templates
from fars.pipeline.preflight import run_config_problems
from tests.conftest import compose, run_fars
from tests.experiments.test_template_contract import SPEC, user_template

SECRET = "API_KEY=sk-hostile-template-test-0123456789"
SECONDS = 30.0  # the brief's ceiling for every attack; each takes well under a second here
MEMORY_MB = 64.0  # in process (tracemalloc); the brief's ceiling is 1 GB


def _bomb() -> str:
    """A 'billion laughs' spec of under 2 KB: nine levels of nine aliases, 9^9 strings once expanded."""
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [{','.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    body = SPEC.format(name="bomb").replace("description: A noisy", "description: *a8\ntitle2: A noisy")
    return "\n".join(lines) + "\n" + body


def _secret(tmp_path: Path) -> Path:
    path = tmp_path / "secret.env"
    path.write_text("\n".join([SECRET, "name: leaked", "PASSWORD=hunter2-hostile"]) + "\n")
    return path


def _spec_linked(folder: Path, tmp_path: Path) -> None:
    (folder / "template.yaml").unlink()
    (folder / "template.yaml").symlink_to(_secret(tmp_path))


def _spec_hard_linked(folder: Path, tmp_path: Path) -> None:
    (folder / "template.yaml").unlink()
    os.link(_secret(tmp_path), folder / "template.yaml")


def _spec_fifo(folder: Path, tmp_path: Path) -> None:
    (folder / "template.yaml").unlink()
    os.mkfifo(folder / "template.yaml")


def _spec_huge(folder: Path, tmp_path: Path) -> None:
    with (folder / "template.yaml").open("r+b") as spec:
        spec.truncate(300 * 1024 * 1024)  # sparse: 300 MB by its size, written in no time


def _spec_bomb(folder: Path, tmp_path: Path) -> None:
    (folder / "template.yaml").write_text(_bomb())


def _spec_deep(folder: Path, tmp_path: Path) -> None:
    (folder / "template.yaml").write_text("name: deep\ndescription: " + "[" * 20_000 + "]" * 20_000 + "\n")


def _entry(value: str) -> Callable[[Path, Path], None]:
    def plant(folder: Path, tmp_path: Path) -> None:
        spec = folder / "template.yaml"
        spec.write_text(spec.read_text() + f"entry: {value}\n")

    return plant


def _entry_link(folder: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.py"
    outside.write_text("print('run from outside the template')\n")
    (folder / "train.py").unlink()
    (folder / "train.py").symlink_to(outside)


def _editable_link(folder: Path, tmp_path: Path) -> None:
    spec = folder / "template.yaml"
    spec.write_text(spec.read_text() + "editable: [model.py]\n")
    (folder / "model.py").symlink_to(_secret(tmp_path))


def _editable_up(folder: Path, tmp_path: Path) -> None:
    spec = folder / "template.yaml"
    spec.write_text(spec.read_text() + "editable: [../secret.env]\n")


ATTACKS: dict[str, tuple[Callable[[Path, Path], None], str]] = {
    "yaml bomb": (_spec_bomb, "YAML bomb"),
    "300 MB spec": (_spec_huge, f"314,572,800 bytes, over the {SPEC_MAX_BYTES:,} allowed"),
    "fifo spec": (_spec_fifo, "is a FIFO"),
    "spec linked to a secret": (_spec_linked, "symbolic link"),
    "spec hard-linked to a secret": (_spec_hard_linked, "hard links"),
    "deeply nested spec": (_spec_deep, "nests deeper than"),
    "entry up and out": (_entry("../outside.py"), "entry '../outside.py' must be a path inside the template folder"),
    "absolute entry": (_entry("/etc/passwd"), "entry '/etc/passwd' must be a path inside the template folder"),
    "entry linked out": (_entry_link, "entry 'train.py' passes through a link"),
    "editable linked out": (_editable_link, "editable file 'model.py' passes through a link"),
    "editable up and out": (_editable_up, "editable file '../secret.env' must be a path inside"),
}


@pytest.fixture
def measured() -> Iterator[Callable[[], tuple[float, float]]]:
    """Start measuring; calling the result gives (seconds, peak MB of Python allocations) since then."""
    tracemalloc.start()
    started = time.perf_counter()
    yield lambda: (time.perf_counter() - started, tracemalloc.get_traced_memory()[1] / 2**20)
    tracemalloc.stop()


def _hostile(tmp_path: Path, attack: str) -> Path:
    folder = user_template(tmp_path / "dirs", name="hostile")
    ATTACKS[attack][0](folder, tmp_path)
    return folder


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_a_hostile_template_is_refused_by_name_quickly_and_without_its_content(
    tmp_path: Path, attack: str, measured: Callable[[], tuple[float, float]]
) -> None:
    folder = _hostile(tmp_path, attack)
    with pytest.raises(TemplateError) as err:
        load_spec(folder)
    seconds, peak_mb = measured()
    message = str(err.value)
    assert ATTACKS[attack][1] in message, message
    assert str(folder) in message  # the file (or its folder) is named
    assert SECRET not in message and "hunter2" not in message and "lol" not in message
    assert seconds < SECONDS and peak_mb < MEMORY_MB, (seconds, peak_mb)


@pytest.mark.parametrize("attack", ["yaml bomb", "300 MB spec", "fifo spec", "spec linked to a secret"])
def test_a_refused_spec_says_what_to_do(tmp_path: Path, attack: str) -> None:
    with pytest.raises(
        TemplateError, match=r"A template\.yaml must be a plain file of its own.*experiment\.template_dirs"
    ):
        load_spec(_hostile(tmp_path, attack))


def test_the_scan_lists_the_good_templates_and_names_each_bad_one(
    tmp_path: Path, measured: Callable[[], tuple[float, float]]
) -> None:
    dirs = tmp_path / "dirs"
    for i, attack in enumerate(sorted(ATTACKS)):
        folder = user_template(dirs, name=f"bad{i}")
        ATTACKS[attack][0](folder, tmp_path)
    user_template(dirs, name="quadratic")
    elsewhere = user_template(tmp_path / "elsewhere", name="linked")
    (dirs / "zz_link").symlink_to(elsewhere)  # a link to a template folder: named, never entered
    os.mkfifo(dirs / "zz_fifo")  # a FIFO beside the templates: never opened

    found, problems = scan_templates([str(dirs)])
    seconds, peak_mb = measured()
    assert "quadratic" in found and "linked" not in found and "modadd" in found
    text = "\n".join(problems)
    assert str(dirs / "zz_link") in text and "not followed" in text
    for attack in ("yaml bomb", "300 MB spec", "fifo spec", "spec linked to a secret", "deeply nested spec"):
        assert ATTACKS[attack][1] in text, attack
    assert SECRET not in text and "hunter2" not in text
    assert seconds < SECONDS and peak_mb < MEMORY_MB, (seconds, peak_mb)


def test_preflight_names_the_hostile_templates_and_goes_on(tmp_path: Path) -> None:
    dirs = tmp_path / "dirs"
    for name, attack in [
        ("bomb", "yaml bomb"),
        ("fifo", "fifo spec"),
        ("link", "spec linked to a secret"),
        ("outside", "entry linked out"),  # found by its name; refused when loaded whole
    ]:
        ATTACKS[attack][0](user_template(dirs, name=name), tmp_path)
    user_template(dirs, name="quadratic")
    cfg = compose("llm=scripted", "pipeline.stages=[ideation]", f"experiment.template_dirs=[{dirs}]")
    tracemalloc.start()
    started = time.perf_counter()
    try:
        problems = run_config_problems(cfg)
        seconds, peak_mb = time.perf_counter() - started, tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()
    text = "\n".join(problems)
    assert "YAML bomb" in text and "is a FIFO" in text and "symbolic link" in text, text
    assert "entry 'train.py' passes through a link" in text  # [auto] may pick any template: each is loaded
    assert "quadratic" not in text and SECRET not in text
    assert seconds < SECONDS and peak_mb < MEMORY_MB, (seconds, peak_mb)


def _run_measured(args: list[str], cwd: Path, timeout: float = 120) -> tuple[int, str, str, float, float]:
    """`fars ARGS` run to its end: exit status, stdout, stderr, seconds and peak resident MB (its own, the
    imports it started with included; a hang on a FIFO ends in ``subprocess.TimeoutExpired``)."""
    started = time.perf_counter()
    done = run_fars(args, cwd, timeout=timeout)
    assert done.peak_mb is not None
    return done.returncode, done.stdout, done.stderr, time.perf_counter() - started, done.peak_mb


def test_template_list_lists_the_good_and_names_the_bad_in_seconds(tmp_path: Path) -> None:
    dirs = tmp_path / "dirs"
    for name, attack in [
        ("bomb", "yaml bomb"),
        ("huge", "300 MB spec"),
        ("fifo", "fifo spec"),
        ("link", "spec linked to a secret"),
        ("outside", "entry up and out"),
    ]:
        ATTACKS[attack][0](user_template(dirs, name=name), tmp_path)
    user_template(dirs, name="quadratic")
    code, out, err, seconds, rss_mb = _run_measured(["template", "list", str(dirs)], tmp_path)
    assert code == 2 and "Traceback" not in err, err[-3000:]
    assert "quadratic: Noisy quadratic" in out and "modadd:" in out  # the good ones are listed
    for name in ("bomb", "huge", "fifo", "link", "outside"):
        assert f"refused: {dirs / name / 'template.yaml'}" in err or str(dirs / name) in err, (name, err)
    assert SECRET not in out + err and "hunter2" not in out + err
    assert seconds < SECONDS and rss_mb < 1024, (seconds, rss_mb)


def test_fars_run_refuses_a_hostile_template_dir_in_preflight(tmp_path: Path) -> None:
    dirs = tmp_path / "dirs"
    ATTACKS["yaml bomb"][0](user_template(dirs, name="bomb"), tmp_path)
    ATTACKS["fifo spec"][0](user_template(dirs, name="fifo"), tmp_path)
    args = ["run", "llm=scripted", "tracker=disabled", "pipeline.stages=[ideation]"]
    args += [f"experiment.template_dirs=[{dirs}]", f"hydra.run.dir={tmp_path / 'run'}"]
    code, _out, err, seconds, rss_mb = _run_measured(args, tmp_path)
    assert code == 2 and "Traceback" not in err, err[-3000:]
    assert "YAML bomb" in err and "is a FIFO" in err and str(dirs / "bomb" / "template.yaml") in err
    assert not (tmp_path / "run" / "ledger.sqlite").exists()  # nothing ran
    # most of those seconds import FARS and litellm (2-18 s on a busy machine); the preflight's own time on these
    # templates is measured in process above, and a FIFO read would have run into the timeout
    assert seconds < 4 * SECONDS and rss_mb < 1024, (seconds, rss_mb)


def test_a_good_user_template_still_loads_and_names_its_paths_inside(tmp_path: Path) -> None:
    folder = user_template(tmp_path / "dirs")
    spec_file = folder / "template.yaml"
    spec_file.write_text(spec_file.read_text() + "entry: ./train.py\neditable: [train.py, not_yet.py]\n")
    spec = load_spec(folder)
    assert spec.entry_path == folder / "train.py" and spec.editable == ["train.py", "not_yet.py"]
