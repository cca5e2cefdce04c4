"""The view's pages and routes, in-process (Starlette's test client): what each page shows, escaping,
no write methods, trusted hosts, errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from markupsafe import escape
from starlette.testclient import TestClient

from fars.evaluation.compare import CompareSettings, compare_runs, load_runs
from fars.view.folders import folder_key
from fars.view.server import create_app
from tests.view.synthetic import SCRIPT, STAGES, synthetic_run


@pytest.fixture
def outputs(tmp_path: Path) -> Path:
    root = tmp_path / "outputs"
    synthetic_run(root / "done", 6, hostile=(2,), curves=(0,))
    synthetic_run(root / "live", 5, finished=2, record=None, seed=1, code=(0, 2))  # p002: its search under way
    sweep = root / "sweep"
    for job in range(2):
        synthetic_run(sweep / str(job), 4, seed=job)
    (sweep / "multirun.yaml").write_text("{}")
    return root


@pytest.fixture
def client(outputs: Path) -> TestClient:
    with TestClient(create_app([outputs]), base_url="http://127.0.0.1") as test_client:
        return test_client


def key(outputs: Path, name: str) -> str:
    return folder_key((outputs / name).resolve())


def test_runs_page_lists_every_run_and_sweep(client: TestClient, outputs: Path) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for name in ("outputs/done", "outputs/live", "outputs/sweep/0", "outputs/sweep/1"):
        assert f'href="/run/{key(outputs, name.removeprefix("outputs/"))}"' in page.text and name in page.text
    assert f'href="/sweep/{key(outputs, "sweep")}"' in page.text
    assert "in flight" in page.text  # the live run
    runs = client.get("/api/runs").json()
    done = next(r for r in runs if r["label"] == "outputs/done")
    assert done["status"] == "completed" and done["papers"] == 6 and done["tokens"] > 0
    assert next(r for r in runs if r["label"] == "outputs/live")["status"] == "running"


def test_run_page_board_funnel_usage_and_scores(client: TestClient, outputs: Path) -> None:
    page = client.get(f"/run/{key(outputs, 'live')}").text
    rows = re.findall(r'<tr id="row-(p\d+)" data-stage="([^"]*)" data-status="([^"]*)"', page)
    assert [r[0] for r in rows] == [f"p{i:03d}" for i in range(5)]
    assert rows[0][1:] == ("done", "done") and rows[3][1:] == ("writing", "running")  # p003 is writing
    assert all(f"<th>{s}</th>" in page for s in STAGES)
    assert page.count('<td class="running"') == 3 and "data-since=" in page
    assert "hypotheses" in page and "novel" in page and "reviewed" in page  # the funnel
    assert "ICLR 2026 submissions 4.21" in page and "accepted 5.39" in page
    assert "Usage by model" in page and "scripted/default" in page
    done = client.get(f"/run/{key(outputs, 'done')}").text
    assert re.search(r"supported claims</span><b>100%", done) and "degenerate text" in done
    assert 'data-stream="/live/run/' in page


def test_project_page_shows_everything_about_a_project(client: TestClient, outputs: Path) -> None:
    page = client.get(f"/run/{key(outputs, 'done')}/project/p000").text
    assert "Weight decay changes grokking speed" in page and "below the similarity bar" in page  # evidence, verdict
    assert "Related work 0" in page and "similarity" in page
    assert "<th>design</th><td>components</td>" in page and "<td>method-without-schedule</td><td>ablation</td>" in page
    assert page.count('class="curves"') >= 2 and "train_loss" in page and "baseline-seed0" in page
    assert 'id="paper-markdown"' in page and "The baseline reached 0.41" in page
    assert "Meta-review" not in page and "Reviewer 1 (balanced)" in page  # the review, its members
    assert "Grounded numbers 100%" in page
    assert "Supported claims 100% (as the model wrote them 67%)" in page and "Repaired:" in page  # ClaimCheck
    assert "Method: schedule=warmup_cosine, normalization=layernorm" in page and "2 method candidate(s)" in page
    calls = re.findall(r'<tr(?: class="error")?><td class="n">\d+</td><td>(\w+)</td>', page)
    assert len(calls) == 4 * len(STAGES)


def test_project_page_shows_the_results_table_and_the_code_search(client: TestClient, outputs: Path) -> None:
    page = client.get(f"/run/{key(outputs, 'done')}/project/p000").text
    table = page.split('id="conditions"', 1)[1].split("</table>", 1)[0]  # the experiment's corrected tests
    rows = re.findall(r"<tr(?: class=\"best\")?><td>([\w-]+)", table)
    assert rows == ["baseline", "method", "method-without-schedule", "method-without-normalization", "code",
                    "code-without-change1", "code-without-change2"]  # fmt: skip
    assert '<td>code <span class="badge done">best</span></td>' in table and "no significant difference" in table
    assert re.search(r"<td class=\"n\">0\.[0-9]{4} to 0\.[0-9]{4}</td>", table)  # the baseline's Student-t interval
    code = page.split('id="code"', 1)[1].split('id="paper"', 1)[0]
    nodes = re.findall(r'<tr id="node-(n\d)"[^>]*><td>n\d.*?</td><td>([\w–]+)</td><td>(\w+)</td>', code)
    assert nodes == [("n0", "–", "draft"), ("n1", "–", "draft"), ("n2", "n1", "improve"), ("n3", "n0", "debug")]
    assert "Winner <b>n2</b>" in code and "code-without-change2: train.py lines 11-12" in code
    assert "SyntaxError: &#39;(&#39; was never closed" in code and "RuntimeError: mat1 and mat2 shapes" in code
    assert "experiment.code.enabled" not in code and "model_code" not in page
    winner = code.split('id="code-winner-diff"', 1)[1].split("</pre>", 1)[0]  # read from Results.code.diff
    assert '<span class="add">+            layers.append(nn.Dropout(0.1))</span>' in winner
    assert (
        '<span class="del">-    loss_fn = getattr(method, &#34;loss&#34;, nn.functional.cross_entropy)</span>' in winner
    )
    assert f'href="/files/{key(outputs, "done")}/projects/p000/code/n2/diff.patch"' in code
    sweep = client.get(f"/run/{key(outputs, 'done')}/project/p001").text  # a knob sweep, without a search
    assert "<td>lr=0.03</td><td>variant</td>" in sweep and "experiment.code.enabled</code> is true" in sweep
    live = client.get(f"/run/{key(outputs, 'live')}/project/p002").text  # the search under way: the ledger's nodes
    assert "the search is under way" in live and 'id="node-n0"' in live and 'id="node-n1"' in live
    assert 'id="node-n2"' not in live and "SyntaxError" in live and "Winner" not in live


def test_model_written_text_is_escaped_everywhere(client: TestClient, outputs: Path) -> None:
    urls = ["/", f"/run/{key(outputs, 'done')}", f"/run/{key(outputs, 'done')}/project/p002"]
    for url in urls:
        page = client.get(url).text
        assert SCRIPT not in page and "<img src=x" not in page, url
    project = client.get(urls[2]).text
    assert "&lt;script&gt;window.__injected = 1; alert(&#39;x&#39;)&lt;/script&gt;" in project
    assert "&lt;img src=x onerror=alert(1)&gt;" in project
    assert "(replaced by the harness: abstract: repeats one phrase)" in project
    # the paper's own file is served as sandboxed text, never as a page of this origin
    raw = client.get(f"/files/{key(outputs, 'done')}/projects/p002/paper.md")
    assert raw.status_code == 200 and raw.headers["content-type"].startswith("text/plain")
    assert "sandbox" in raw.headers["content-security-policy"] and raw.headers["x-content-type-options"] == "nosniff"


def test_pages_allow_no_other_host(client: TestClient, outputs: Path) -> None:
    page = client.get(f"/run/{key(outputs, 'done')}")
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy and "connect-src 'self'" in policy
    assert "http://" not in page.text.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in page.text


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_no_method_can_write(client: TestClient, outputs: Path, method: str) -> None:
    done = key(outputs, "done")
    for url in ("/", f"/run/{done}", f"/run/{done}/project/p000", f"/files/{done}/projects/p000/paper.md",
                f"/live/run/{done}", "/api/runs", "/static/view.js", "/compare", "/nowhere"):  # fmt: skip
        answer = client.request(method, url, content=b"x=1")
        assert answer.status_code == 405, (method, url)
        assert answer.headers["allow"] == "GET, HEAD"
    assert (outputs / "done" / "projects" / "p000" / "paper.md").read_text().startswith("# Paper 0")


def test_only_loopback_host_names_are_answered(client: TestClient) -> None:
    assert client.get("/", headers={"host": "localhost:8765"}).status_code == 200
    assert client.get("/", headers={"host": "evil.example:8765"}).status_code == 400  # DNS rebinding


def test_compare_and_sweep_pages_use_compares_numbers(client: TestClient, outputs: Path) -> None:
    sweep = client.get(f"/sweep/{key(outputs, 'sweep')}").text
    assert "outputs/sweep/0: seed=0" in sweep and "outputs/sweep/1: seed=1" in sweep
    jobs = load_runs(str(outputs / "sweep"))  # the verdict `fars compare` reaches on the same records
    verdict = compare_runs(jobs[0], jobs[1], CompareSettings())
    assert (
        f"<b>{verdict.verdict}</b>" in sweep and f"<b>1 vs 0:</b> {verdict.verdict}: {escape(verdict.reason)}" in sweep
    )
    pair = client.get(f"/compare?run={key(outputs, 'done')}&run={key(outputs, 'live')}&margin=0.5")
    assert pair.status_code == 200 and "margin 0.5" in pair.text and "outputs/live" in pair.text
    assert client.get(f"/compare?run={key(outputs, 'done')}").status_code == 400
    bad = client.get(f"/compare?run={key(outputs, 'done')}&run={key(outputs, 'live')}&margin=lots")
    assert bad.status_code == 400 and "margin=&#39;lots&#39; is not a float" in bad.text


def test_unknown_runs_projects_and_files_are_404(client: TestClient, outputs: Path) -> None:
    assert client.get("/run/0123456789ab").status_code == 404
    missing = client.get(f"/run/{key(outputs, 'done')}/project/p999")
    assert missing.status_code == 404 and "has no project" in missing.text
    assert client.get(f"/files/{key(outputs, 'done')}/projects/p000/nothing.md").status_code == 404
    assert (
        client.get(f"/files/{key(outputs, 'done')}/ledger.sqlite")
        .headers["content-disposition"]
        .startswith("attachment")
    )
