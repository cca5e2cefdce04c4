"""`fars view` against hostile run folders: every file it reads planted as a link to a secret outside, to
``/dev/zero``, to a FIFO, as a FIFO, as a hard link; another run's ledger linked in; a YAML bomb; an oversized
RunRecord; folder trees with links, FIFOs and thousands of levels.

Each attack must be refused or bounded with a message naming the file and why, on the page (escaped) and in
``/api/runs``, never shown as content; each costs under 30 s and under 1 GB of memory (the process's peak
resident size, reset before the attack), and the view still answers for the other runs. The app is driven
in-process through Starlette's test client; one real `fars view` process takes every attack at once.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from fars.safe_files import remove_tree
from fars.view.folders import MAX_DEPTH, RefusedFile, ServedFolders, folder_key, open_plain, open_served, served_file
from fars.view.reader import RECORD_MAX_BYTES, RunReader
from fars.view.server import create_app
from tests.view.conftest import ViewStarter
from tests.view.synthetic import synthetic_run

FIRST, LAST = "TOP-SECRET-9f1c", "END-OF-SECRET-4d2e"
# valid JSON and YAML: followed, it would be drawn as a curve, named as a stage, or quoted in an error
SECRET = (
    f'{{"pipeline": {{"stages": ["{FIRST}"]}},\n "curves": {{"{FIRST}": [1, 2, 3]}},\n "metric": "{FIRST}",\n'
    f' "final": {{"{LAST}": 1}}}}\n'
)
LIMIT_S = 30.0
LIMIT_BYTES = 1 << 30
METRICS = "projects/p000/runs/baseline-seed0/metrics.json"
YAML_BOMB = "\n".join(
    [
        'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]',
        *(f"{n}: &{n} [{','.join([f'*{p}'] * 9)}]" for p, n in zip("abcdefgh", "bcdefghi", strict=True)),
    ]
)


# -- measuring ---------------------------------------------------------------------------------


def _status_kb(pid: int | str, field_name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field_name} in /proc/{pid}/status")


@dataclass
class Cost:
    """Time and peak memory growth of a block (peak resident size, reset before it where Linux allows)."""

    seconds: float = 0.0
    peak_growth: int = 0  # bytes

    def check(self, what: str) -> None:
        assert self.seconds < LIMIT_S, f"{what} took {self.seconds:.1f}s"
        assert self.peak_growth < LIMIT_BYTES, f"{what} grew the process by {self.peak_growth / 2**20:.0f} MB"


@contextlib.contextmanager
def bounded(what: str) -> Iterator[Cost]:
    """Measure the block; fail when it took 30 s or grew the process by 1 GB at its peak."""
    cost = Cost()
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current size
    before = _status_kb("self", "VmRSS")
    began = time.monotonic()
    yield cost
    cost.seconds = time.monotonic() - began
    cost.peak_growth = (_status_kb("self", "VmHWM") - before) * 1024
    print(f"{what}: {cost.seconds:.2f}s, peak +{cost.peak_growth / 2**20:.0f} MB")
    cost.check(what)


def release(fifos: list[Path]) -> None:
    """Open each FIFO for writing, so a reader blocked on it returns (what a regression would need)."""
    for fifo in fifos:
        with contextlib.suppress(OSError):
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))


def fetch_all(client: TestClient, urls: list[str], fifos: list[Path]) -> dict[str, Any]:
    """GET every URL in a worker thread; fail (after unblocking the FIFOs) if they are not all answered in time."""
    got: dict[str, Any] = {}  # responses of the test client (httpx's or httpx2's, by Starlette's version)
    done = threading.Event()

    def work() -> None:
        try:
            for url in urls:
                got[url] = client.get(url)
        finally:
            done.set()

    threading.Thread(target=work, name="hostile-requests", daemon=True).start()
    if not done.wait(LIMIT_S):
        unanswered = [u for u in urls if u not in got]
        release(fifos)
        done.wait(5)
        pytest.fail(f"the view hung: {unanswered} not answered in {LIMIT_S:.0f}s")
    return got


# -- planting ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def templates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A finished run (RunRecord, ledger, training curves) and a running one (ledger and Hydra config only)."""
    base = tmp_path_factory.mktemp("templates")
    return {
        "finished": synthetic_run(base / "finished", 2),
        "live": synthetic_run(base / "live", 2, finished=1, record=None, seed=1),
    }


@dataclass
class Scene:
    """An outputs folder with a victim run and a healthy run beside it, and a secret outside."""

    outputs: Path
    victim: Path
    healthy: Path
    secret: Path
    fifos: list[Path] = field(default_factory=list)

    @property
    def victim_key(self) -> str:
        return folder_key(self.victim.resolve())

    @property
    def healthy_key(self) -> str:
        return folder_key(self.healthy.resolve())

    def fifo(self, path: Path) -> Path:
        os.mkfifo(path)
        self.fifos.append(path)
        return path


def scene(tmp_path: Path, templates: dict[str, Path], victim: str = "finished") -> Scene:
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    secret = tmp_path / "outside" / "secret.json"
    secret.parent.mkdir()
    secret.write_text(SECRET)
    return Scene(
        outputs=outputs,
        victim=Path(shutil.copytree(templates[victim], outputs / "victim", symlinks=True)),
        healthy=Path(shutil.copytree(templates["finished"], outputs / "healthy", symlinks=True)),
        secret=secret,
    )


def plant(s: Scene, target: str, how: str) -> None:
    """Put the attack ``how`` at ``target`` in the victim run (whatever stood there removed first)."""
    path = s.victim / target
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    if how == "secret":
        path.symlink_to(s.secret)
    elif how == "zero":
        path.symlink_to("/dev/zero")
    elif how == "fifo":
        path.symlink_to(s.fifo(s.secret.parent / f"pipe{len(s.fifos)}"))
    elif how == "fifo-here":
        s.fifo(path)
    elif how == "hardlink":
        os.link(s.secret, path)
    else:
        raise AssertionError(how)


def assert_no_secret(answers: dict[str, Any]) -> None:
    for url, answer in answers.items():
        for marker in (FIRST, LAST):
            assert marker not in answer.text, f"{url} shows the secret"


def assert_alive(client: TestClient, s: Scene) -> None:
    """The view still answers, and shows the healthy run in full."""
    page = client.get(f"/run/{s.healthy_key}")
    assert page.status_code == 200 and 'id="row-p000"' in page.text and 'id="row-p001"' in page.text
    assert client.get(f"/run/{s.healthy_key}/project/p000").status_code == 200


@contextlib.contextmanager
def app_client(s: Scene) -> Iterator[TestClient]:
    with TestClient(create_app([s.outputs]), base_url="http://127.0.0.1") as client:
        yield client


# -- every file the view reads, planted ---------------------------------------------------------

WHY = {
    "secret": "is a symbolic link",
    "zero": "is a symbolic link",
    "fifo": "is a symbolic link",
    "fifo-here": "is a FIFO",
    "hardlink": "has 2 hard links",
}
RUN_FILES = [
    ("run_record.json", "finished"),
    ("ledger.sqlite", "finished"),
    ("ledger.sqlite", "live"),
    ("ledger.sqlite-wal", "live"),
    ("ledger.sqlite-shm", "live"),
    (".hydra/config.yaml", "live"),
]


@pytest.mark.parametrize("how", list(WHY))
@pytest.mark.parametrize(("target", "victim"), RUN_FILES, ids=[f"{t}-{v}" for t, v in RUN_FILES])
def test_a_planted_run_file_is_refused_and_named(
    tmp_path: Path, templates: dict[str, Path], target: str, victim: str, how: str
) -> None:
    s = scene(tmp_path, templates, victim)
    plant(s, target, how)
    k = s.victim_key
    urls = ["/", "/api/runs", f"/run/{k}", f"/api/run/{k}", f"/run/{k}/project/p000", f"/files/{k}/{target}"]
    with app_client(s) as client, bounded(f"{target} ({victim} run) planted as {how}"):
        answers = fetch_all(client, urls, s.fifos)
        assert_alive(client, s)
    assert_no_secret(answers)
    message = f"{target} {WHY[how]}"
    assert message in answers[f"/run/{k}"].text, answers[f"/run/{k}"].text[:3000]
    row = next(r for r in answers["/api/runs"].json() if r["key"] == k)
    assert row["error"] is not None and message in row["error"]
    assert answers[f"/files/{k}/{target}"].status_code == 404
    assert all(answers[u].status_code in (200, 404) for u in urls)
    release(s.fifos)


@pytest.mark.parametrize("how", list(WHY))
@pytest.mark.parametrize("target", [METRICS, "projects/p000/paper.md", "projects/p000/error.log"])
def test_a_planted_project_file_is_refused_and_named(
    tmp_path: Path, templates: dict[str, Path], target: str, how: str
) -> None:
    s = scene(tmp_path, templates)
    plant(s, target, how)
    k = s.victim_key
    project = f"/run/{k}/project/p000"
    urls = ["/", f"/run/{k}", project, f"/files/{k}/{target}"]
    with app_client(s) as client, bounded(f"{target} planted as {how}"):
        answers = fetch_all(client, urls, s.fifos)
        assert_alive(client, s)
    assert_no_secret(answers)
    page = answers[project]
    assert page.status_code == 200 and "refused" in page.text
    if target == METRICS or how in ("fifo-here", "hardlink"):
        assert f"{target} {WHY[how]}" in page.text
    else:  # the served text files: a link is fine while it stays inside the run folder, not past it
        assert f"{target}: a link that leads outside the run folder; refused" in page.text
    if target == METRICS:
        assert 'class="curves"' in page.text  # the other training runs are still drawn
    assert answers[f"/files/{k}/{target}"].status_code == 404
    release(s.fifos)


def test_another_runs_ledger_linked_in_is_refused(tmp_path: Path, templates: dict[str, Path]) -> None:
    s = scene(tmp_path, templates)
    thief = s.outputs / "thief"
    thief.mkdir()
    (thief / "ledger.sqlite").symlink_to(Path("..") / "healthy" / "ledger.sqlite")  # stays inside the served tree
    copier = s.outputs / "copier"
    copier.mkdir()
    os.link(s.victim / "ledger.sqlite", copier / "ledger.sqlite")  # the victim's ledger now has two names
    keys = {name: folder_key((s.outputs / name).resolve()) for name in ("thief", "copier")}
    urls = ["/", "/api/runs"] + [f"/{kind}/{k}" for k in keys.values() for kind in ("run", "api/run")]
    with app_client(s) as client, bounded("another run's ledger linked in"):
        answers = fetch_all(client, urls, [])
        assert_alive(client, s)
        victim = client.get(f"/run/{s.victim_key}")  # its record is still shown; its ledger is refused
    rows = {r["key"]: r for r in answers["/api/runs"].json()}
    for name, k in keys.items():
        assert answers[f"/api/run/{k}"].status_code == 404, name
        assert 'id="row-p000"' not in answers[f"/run/{k}"].text, f"{name} shows another run's projects"
        assert rows[k]["status"] is None and rows[k]["projects"] == 0
    assert "ledger.sqlite is a symbolic link" in answers[f"/run/{keys['thief']}"].text
    assert "ledger.sqlite is a symbolic link" in rows[keys["thief"]]["error"]
    assert "ledger.sqlite has 2 hard links" in answers[f"/run/{keys['copier']}"].text
    assert victim.status_code == 200 and 'id="row-p001"' in victim.text
    assert "ledger.sqlite has 2 hard links" in rows[s.victim_key]["error"]


def test_a_yaml_bomb_in_the_hydra_config_is_refused(tmp_path: Path, templates: dict[str, Path]) -> None:
    s = scene(tmp_path, templates, "live")
    (s.victim / ".hydra" / "config.yaml").write_text(YAML_BOMB)
    (s.victim / ".hydra" / "overrides.yaml").write_text(YAML_BOMB)
    (s.healthy / ".hydra" / "overrides.yaml").write_text(YAML_BOMB)
    assert len(YAML_BOMB) < 2000  # 9**9 values once expanded
    k = s.victim_key
    urls = ["/", "/api/runs", f"/run/{k}", f"/api/run/{k}", f"/run/{k}/project/p000"]
    urls.append(f"/compare?run={s.healthy_key}&run={k}")  # the compare page reads overrides.yaml
    with app_client(s) as client, bounded("a YAML bomb in .hydra/config.yaml and overrides.yaml"):
        answers = fetch_all(client, urls, [])
        assert_alive(client, s)
    page = answers[f"/run/{k}"].text
    assert ".hydra/config.yaml expands to over 100,000 values" in page and "YAML bomb" in page
    assert "<th>ideation</th>" in page  # the default stages, not the config's
    row = next(r for r in answers["/api/runs"].json() if r["key"] == k)
    assert row["status"] == "running" and "YAML bomb" in row["error"]
    assert answers[urls[-1]].status_code == 200 and "lol" not in answers[urls[-1]].text


def test_an_oversized_run_record_is_refused_unread(tmp_path: Path, templates: dict[str, Path]) -> None:
    s = scene(tmp_path, templates)
    record = s.victim / "run_record.json"
    with record.open("r+b") as handle:  # sparse: 3 GB on paper, nothing on disk
        handle.truncate(3 << 30)
    k = s.victim_key
    urls = ["/", "/api/runs", f"/run/{k}", f"/api/run/{k}"]
    with app_client(s) as client, bounded("a 3 GB run_record.json"):
        answers = fetch_all(client, urls, [])
        assert_alive(client, s)
    message = f"run_record.json is {3 << 30:,} bytes, over the {RECORD_MAX_BYTES:,} allowed"
    assert message in answers[f"/run/{k}"].text
    row = next(r for r in answers["/api/runs"].json() if r["key"] == k)
    assert message in row["error"]
    assert answers[f"/api/run/{k}"].status_code == 200  # the run is shown from its ledger instead


def test_huge_and_deep_metrics_are_bounded(tmp_path: Path, templates: dict[str, Path]) -> None:
    s = scene(tmp_path, templates)
    runs = s.victim / "projects" / "p000" / "runs"
    values = ",".join(["0.5"] * 550_000)  # under the 5 MB cap: drawn thinned to 1,000 points
    (runs / "baseline-seed0" / "metrics.json").write_text(f'{{"curves": {{"step": [{values}], "loss": [{values}]}}}}')
    (runs / "baseline-seed1" / "metrics.json").write_text("[" * 400_000 + "]" * 400_000)  # nesting, not a curve
    wide = ", ".join(f'"s{i}": [1, 2]' for i in range(50_000))
    (runs / "baseline-seed2" / "metrics.json").write_text(f'{{"curves": {{{wide}}}, "final": {{"x": {"9" * 4000}}}}}')
    with (runs / "method-seed0" / "metrics.json").open("r+b") as handle:
        handle.truncate(1 << 30)
    served = ServedFolders([s.outputs])
    reader = RunReader(served.run(s.victim_key), served)
    with bounded("metrics.json of 550,000 points, 400,000 levels, 50,000 series, 1 GB"):
        problems: list[str] = []
        curves = {r.name: r for r in reader.training_runs("p000", problems)}
    assert len(curves["baseline-seed0"].steps) <= 1001 and len(curves["baseline-seed0"].curves["loss"]) <= 1001
    assert "baseline-seed1" not in curves and len(curves["baseline-seed2"].curves) == 16
    assert any("method-seed0/metrics.json is 1,073,741,824 bytes" in p for p in problems)
    reader.close()


# -- the folder scan -----------------------------------------------------------------------------


def _deep_tree(top: Path, levels: int) -> None:
    """A chain of ``levels`` nested folders (made by descriptor: its path is far past PATH_MAX)."""
    top.mkdir()
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(levels):
            os.mkdir("d", dir_fd=fd)
            nxt = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = nxt
        os.mkfifo("run_record.json", dir_fd=fd)
    finally:
        os.close(fd)


def test_the_folder_scan_follows_no_link_waits_on_no_fifo_and_stops_deep(
    tmp_path: Path, templates: dict[str, Path]
) -> None:
    s = scene(tmp_path, templates)
    elsewhere = Path(shutil.copytree(templates["finished"], tmp_path / "outside" / "other-run", symlinks=True))
    (s.outputs / "linked-run").symlink_to(elsewhere, target_is_directory=True)
    (s.outputs / "linked-parent").symlink_to(elsewhere.parent, target_is_directory=True)
    (s.outputs / "loop").symlink_to(s.outputs, target_is_directory=True)
    s.fifo(s.outputs / "pipe")
    (s.outputs / "fifo-run").mkdir()
    s.fifo(s.outputs / "fifo-run" / "run_record.json")  # a run folder, whose record is refused
    (s.outputs / "zero-run").mkdir()
    (s.outputs / "zero-run" / "ledger.sqlite").symlink_to("/dev/zero")
    _deep_tree(s.outputs / "deep", 3000)
    try:
        served = ServedFolders([s.outputs])
        with bounded("scanning links, FIFOs and a 3,000-level tree"):
            served.scan()
        assert {f.path.name for f in served.runs.values()} == {"victim", "healthy", "fifo-run", "zero-run"}
        assert all(len(f.path.relative_to(s.outputs).parts) <= MAX_DEPTH for f in served.runs.values())
        urls = ["/", "/api/runs"] + [f"/run/{folder_key((s.outputs / n).resolve())}" for n in ("fifo-run", "zero-run")]
        with app_client(s) as client, bounded("the runs page over them"):
            answers = fetch_all(client, urls, s.fifos)
            assert_alive(client, s)
        assert "run_record.json is a FIFO" in answers[urls[2]].text
        assert "ledger.sqlite is a symbolic link" in answers[urls[3]].text
        assert_no_secret(answers)
    finally:
        release(s.fifos)
        remove_tree(s.outputs / "deep")


# -- a link swapped in after the check --------------------------------------------------------------


def test_a_link_swapped_in_after_the_check_is_not_followed(tmp_path: Path, templates: dict[str, Path]) -> None:
    s = scene(tmp_path, templates)
    served = ServedFolders([s.outputs])
    folder = served.run(s.victim_key)
    paper = "projects/p000/paper.md"
    real = served_file(folder, paper, served)  # checked: a regular file inside the run
    real.unlink()
    real.symlink_to(s.secret)  # ... then swapped for a link before it is opened
    with pytest.raises(RefusedFile, match="is a symbolic link"):
        open_plain(folder.path, real.relative_to(folder.path))
    with pytest.raises(RefusedFile):
        open_served(folder, paper, served)
    (s.victim / "projects" / "p000" / "alias.md").symlink_to("review.json")  # a link inside: still served
    fd, info, real = open_served(folder, "projects/p000/alias.md", served)
    os.close(fd)
    assert real.name == "review.json" and info.st_size == real.stat().st_size
    with pytest.raises(RefusedFile) as refused:
        open_plain(folder.path, "projects/../../outside/secret.json")
    assert FIRST not in str(refused.value)
    (s.victim / "projects" / "p001").rename(s.victim / "projects" / "p001-real")
    (s.victim / "projects" / "p001").symlink_to(s.secret.parent, target_is_directory=True)
    with pytest.raises(RefusedFile, match=r"p001 is not a folder \(a link\?\)"):
        open_plain(folder.path, "projects/p001/secret.json")


# -- one real process, every attack at once --------------------------------------------------------


def _plant_everything(tmp_path: Path, templates: dict[str, Path]) -> tuple[Scene, list[str], list[str]]:
    """Every attack in its own run folder under one outputs folder: the keys of the runs attacked in their own
    files (each must say so in ``/api/runs``), and of those attacked in a project's training runs."""
    s = scene(tmp_path, templates)

    def copy(name: str, victim: str, target: str | None = None, how: str = "") -> str:
        run = Path(shutil.copytree(templates[victim], s.outputs / name, symlinks=True))
        if target is not None:
            plant(Scene(s.outputs, run, s.healthy, s.secret, s.fifos), target, how)
        return folder_key(run.resolve())

    run_keys = [
        copy(f"run{i:02d}", v, t, h) for i, (t, v, h) in enumerate((t, v, h) for t, v in RUN_FILES for h in WHY)
    ]
    project_keys = [copy(f"project-{how}", "finished", METRICS, how) for how in WHY]
    bomb = copy("bomb", "live")
    (s.outputs / "bomb" / ".hydra" / "config.yaml").write_text(YAML_BOMB)
    big = copy("big", "finished")
    with (s.outputs / "big" / "run_record.json").open("r+b") as handle:
        handle.truncate(3 << 30)
    thief = s.outputs / "thief"
    thief.mkdir()
    (thief / "ledger.sqlite").symlink_to(Path("..") / "healthy" / "ledger.sqlite")
    return s, [*run_keys, bomb, big, folder_key(thief.resolve())], project_keys


def test_one_fars_view_process_survives_every_attack(
    tmp_path: Path, templates: dict[str, Path], view_server: ViewStarter
) -> None:
    s, run_keys, project_keys = _plant_everything(tmp_path, templates)
    proc, url = view_server(str(s.outputs))
    try:
        paths = ["/", "/api/runs", *(f"/{kind}/{k}" for k in run_keys for kind in ("run", "api/run"))]
        paths += [f"/run/{k}/project/p000" for k in project_keys]
        slowest, answers = 0.0, {}
        with httpx.Client(base_url=url, timeout=LIMIT_S) as client:
            for path in paths:
                began = time.monotonic()
                answers[path] = client.get(path)
                slowest = max(slowest, time.monotonic() - began)
            rows = {r["key"]: r for r in client.get("/api/runs").json()}
            healthy = client.get(f"/run/{s.healthy_key}")
        peak = _status_kb(proc.pid, "VmHWM") * 1024
        print(f"{len(run_keys) + len(project_keys)} attacked runs, {len(paths)} requests: slowest {slowest:.2f}s, "
              f"peak {peak / 2**20:.0f} MB")  # fmt: skip
        assert proc.poll() is None, "fars view died"
        assert slowest < LIMIT_S and peak < LIMIT_BYTES
        for path, answer in answers.items():
            assert answer.status_code in (200, 404), (path, answer.status_code)
            assert FIRST not in answer.text and LAST not in answer.text, path
        assert [rows[k]["label"] for k in run_keys if not rows[k]["error"]] == []
        assert all("metrics.json" in answers[f"/run/{k}/project/p000"].text for k in project_keys)
        assert healthy.status_code == 200 and 'id="row-p001"' in healthy.text
    finally:
        release(s.fifos)
