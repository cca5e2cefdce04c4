"""`fars view` as a real server: path traversal over raw HTTP, live updates as server-sent events, shutdown."""

from __future__ import annotations

import http.client
import json
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from fars.run.ledger import Ledger
from fars.run.records import ProjectStatus
from fars.view.folders import folder_key
from tests.view.conftest import ViewStarter, stop
from tests.view.synthetic import synthetic_run


def raw_get(url: str, path: str) -> tuple[int, bytes]:
    """GET with the path sent exactly as given (no client-side normalisation of ``..`` or ``%2e``)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=20)
    conn.putrequest("GET", path, skip_accept_encoding=True)
    conn.endheaders()
    answer = conn.getresponse()
    body = answer.read()
    conn.close()
    return answer.status, body


def test_path_traversal_is_refused_over_http(tmp_path: Path, view_server: ViewStarter) -> None:
    outputs = tmp_path / "outputs"
    run = synthetic_run(outputs / "run", 1)
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    (run / "projects" / "p000" / "leak.txt").symlink_to(secret)
    (run / "projects" / "up").symlink_to(tmp_path, target_is_directory=True)
    _, url = view_server(str(outputs))
    k = folder_key(run.resolve())
    status, body = raw_get(url, f"/files/{k}/projects/p000/paper.md")
    assert status == 200 and body.startswith(b"# Paper 0")
    attempts = [
        f"/files/{k}/../../secret.txt",
        f"/files/{k}/projects/../../../secret.txt",
        f"/files/{k}/..%2f..%2fsecret.txt",
        f"/files/{k}/%2e%2e/%2e%2e/secret.txt",
        f"/files/{k}/%2e%2e%2f%2e%2e%2fsecret.txt",
        f"/files/{k}/..%5c..%5csecret.txt",
        f"/files/{k}//{secret}",
        f"/files/{k}/{secret}",
        f"/files/{k}/projects/p000/leak.txt",
        f"/files/{k}/projects/up/secret.txt",
        f"/files/{k}/projects/p000/paper.md%00.png",
        "/files/../../../../etc/passwd",
        f"/static/../../../../{secret}",
        "/static/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        f"/files/{k}/../../../../../../etc/passwd",
    ]
    for path in attempts:
        status, body = raw_get(url, path)
        assert status in (400, 404), (path, status)
        assert b"TOP-SECRET" not in body and b"root:" not in body, path


def _events(url: str, path: str, until: float, stop_when: object) -> list[dict[str, object]]:
    """Read a server-sent event stream until ``stop_when(events)`` holds or time is up."""
    got: list[dict[str, object]] = []
    with httpx.Client(timeout=httpx.Timeout(30, read=until)) as client, client.stream("GET", url + path) as stream:
        assert stream.status_code == 200 and stream.headers["content-type"].startswith("text/event-stream")
        event = ""
        deadline = time.monotonic() + until
        for line in stream.iter_lines():
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and event == "sections":
                got.append(json.loads(line.split(":", 1)[1]))
                if stop_when(got):  # type: ignore[operator]
                    break
            if time.monotonic() > deadline:
                break
    return got


def test_a_change_in_the_ledger_reaches_the_page_as_an_event(tmp_path: Path, view_server: ViewStarter) -> None:
    run = synthetic_run(tmp_path / "run", 2, finished=1, record=None)
    _, url = view_server(str(run), "--poll", "0.2")
    k = folder_key(run.resolve())
    page = httpx.get(f"{url}/run/{k}").text
    gen = page.split('data-gen="', 1)[1].split('"', 1)[0]
    assert 'id="row-p001" data-stage="planning" data-status="running"' in page

    writer = Ledger(run / "ledger.sqlite")  # the run goes on: p001 finishes planning and starts its experiment

    def advance() -> None:
        writer.stage_started("p001", "experiment")
        writer.update_project("p001", stage="experiment")
        writer.add_project("p002", 2, "area")

    import threading

    threading.Timer(1.0, advance).start()
    events = _events(url, f"/live/run/{k}?gen={gen}", 30, lambda got: bool(got))
    writer.close()
    assert events, "no update arrived"
    board = str(events[0]["sections"]["board"])  # type: ignore[index]
    assert 'id="row-p001" data-stage="experiment" data-status="running"' in board
    assert 'id="row-p002"' in board and int(str(events[0]["gen"])) > int(gen)


def test_a_stale_page_gets_every_section_at_once(tmp_path: Path, view_server: ViewStarter) -> None:
    run = synthetic_run(tmp_path / "run", 2)
    _, url = view_server(str(run))
    events = _events(url, f"/live/run/{folder_key(run.resolve())}?gen=0", 30, lambda got: bool(got))
    assert set(events[0]["sections"]) == {"cards", "board", "funnel", "charts", "usage"}  # type: ignore[arg-type]
    runs = _events(url, "/live/runs?gen=0", 30, lambda got: bool(got))
    assert "outputs" not in str(runs[0]) and "run" in str(runs[0]["sections"])


def test_sigterm_stops_the_view_with_a_stream_open(tmp_path: Path, view_server: ViewStarter) -> None:
    run = synthetic_run(tmp_path / "run", 1, record="running")
    proc, url = view_server(str(run))
    with httpx.Client(timeout=30) as client, client.stream("GET", f"{url}/live/run/{folder_key(run.resolve())}"):
        began = time.monotonic()
        assert stop(proc, timeout=20) == 0
        assert time.monotonic() - began < 15
    with pytest.raises(httpx.ConnectError):
        httpx.get(url)
    ledger = Ledger(run / "ledger.sqlite", read_only=True)
    assert ledger.project("p000").status == ProjectStatus.done
