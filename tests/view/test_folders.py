"""What the view serves: runs and sweeps found under the given folders, and only files inside them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fars.view.folders import NotServed, ServedFolders, folder_key, served_file


def _run(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "run_record.json").write_text("{}")
    return folder


def test_runs_and_sweeps_are_found_in_an_outputs_tree(tmp_path: Path) -> None:
    outputs = tmp_path / "outputs"
    a = _run(outputs / "2026-01-01" / "12-00-00")
    b = _run(outputs / "2026-01-01" / "13-00-00")
    sweep = tmp_path / "multirun" / "2026-01-02" / "09-00-00"
    jobs = [_run(sweep / str(i)) for i in (0, 1, 10, 2)]
    (sweep / "multirun.yaml").write_text("{}")
    _run(a / "projects" / "p000" / "nested")  # inside a run: not another run
    served = ServedFolders([outputs, tmp_path / "multirun"])
    served.scan()
    assert {f.path for f in served.runs.values()} == {a.resolve(), b.resolve(), *(j.resolve() for j in jobs)}
    assert served.runs[folder_key(a.resolve())].label == "outputs/2026-01-01/12-00-00"
    assert list(served.sweeps) == [folder_key(sweep.resolve())]
    found = served.sweeps[folder_key(sweep.resolve())]
    assert [served.runs[k].path.name for k in found.jobs] == ["0", "1", "2", "10"]  # job order, not text order
    assert all(served.runs[k].sweep == found.key for k in found.jobs)
    assert served.runs[folder_key(a.resolve())].sweep is None  # a date folder of runs is not a sweep


def test_a_run_folder_itself_and_new_runs_appear(tmp_path: Path) -> None:
    run = _run(tmp_path / "run")
    served = ServedFolders([run], rescan_s=0)
    served.scan()
    assert [f.label for f in served.runs.values()] == ["run"]
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    served = ServedFolders([outputs], rescan_s=0)
    served.scan()
    assert served.runs == {}
    later = _run(outputs / "later")
    assert served.run(folder_key(later.resolve())).path == later.resolve()  # an unknown key rescans once
    with pytest.raises(NotServed):
        served.run("0123456789ab")


def test_links_to_folders_outside_are_not_walked(tmp_path: Path) -> None:
    outside = _run(tmp_path / "elsewhere" / "secret-run")
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    (outputs / "link").symlink_to(outside.parent, target_is_directory=True)
    served = ServedFolders([outputs])
    served.scan()
    assert served.runs == {}


@pytest.fixture
def served_run(tmp_path: Path) -> tuple[ServedFolders, Path, Path]:
    run = _run(tmp_path / "outputs" / "run")
    (run / "projects" / "p000").mkdir(parents=True)
    (run / "projects" / "p000" / "paper.md").write_text("# paper")
    secret = tmp_path / "secret.txt"
    secret.write_text("do not serve")
    served = ServedFolders([tmp_path / "outputs"])
    served.scan()
    return served, run, secret


def test_files_inside_the_run_are_served(served_run: tuple[ServedFolders, Path, Path]) -> None:
    served, run, _ = served_run
    folder = served.run(folder_key(run.resolve()))
    assert served_file(folder, "projects/p000/paper.md", served).read_text() == "# paper"
    (run / "projects" / "p000" / "alias.md").symlink_to("paper.md")  # a link that stays inside is fine
    assert served_file(folder, "projects/p000/alias.md", served).name == "paper.md"


@pytest.mark.parametrize(
    "path",
    [
        "../secret.txt",
        "../../secret.txt",
        "projects/../../secret.txt",
        "projects/p000/../../../secret.txt",
        "/etc/passwd",
        "//etc/passwd",
        "projects/p000",  # a folder
        "projects/p000/missing.md",
        "projects/p000/paper.md\0.png",
        "",
    ],
)
def test_paths_out_of_the_run_are_refused(served_run: tuple[ServedFolders, Path, Path], path: str) -> None:
    served, run, _ = served_run
    with pytest.raises(NotServed):
        served_file(served.run(folder_key(run.resolve())), path, served)


def test_links_and_special_files_leading_outside_are_refused(served_run: tuple[ServedFolders, Path, Path]) -> None:
    served, run, secret = served_run
    folder = served.run(folder_key(run.resolve()))
    (run / "projects" / "p000" / "leak.md").symlink_to(secret)
    (run / "projects" / "escape").symlink_to(secret.parent, target_is_directory=True)
    (run / "projects" / "loop").symlink_to(run / "projects" / "loop")
    os.mkfifo(run / "projects" / "p000" / "pipe.log")  # reading it would hang the server
    for path in ("projects/p000/leak.md", "projects/escape/secret.txt", "projects/loop", "projects/p000/pipe.log"):
        with pytest.raises(NotServed):
            served_file(folder, path, served)
