"""`fars view` in a real browser (headless Chromium driven by Playwright) beside a real `fars run`.

The run uses the scripted model with simulated latency, so stages take seconds; the page must show a
project move on to another stage without a reload, then the project page and its paper, with no
console error and no request to any host but the view's own.
"""

from __future__ import annotations

import time
from contextlib import closing
from pathlib import Path
from typing import Any

from tests.chromium import watch
from tests.conftest import FAST, start_fars
from tests.view.conftest import ViewStarter
from tests.view.synthetic import synthetic_run


def _wait_for(path: Path, proc: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not path.is_file():
        assert proc.poll() is None, f"fars run ended before {path.name} appeared"
        assert time.monotonic() < deadline, f"no {path} after {timeout:.0f}s"
        time.sleep(0.2)


def test_a_running_run_updates_live_and_its_paper_opens(tmp_path: Path, view_server: ViewStarter, browser: Any) -> None:
    run_dir = tmp_path / "outputs" / "run"
    args = [
        "run", *FAST, "llm.scripted.latency_s=0.4", "pipeline.papers=1", "pipeline.projects=1",
        "pipeline.record_interval_s=1", f"hydra.run.dir={run_dir}",
    ]  # fmt: skip
    run = start_fars(args, tmp_path, stderr=tmp_path / "run.log")
    try:
        _wait_for(run_dir / "ledger.sqlite", run, 300)
        _, url = view_server(str(run_dir), "--poll", "0.2")
        with closing(browser.new_page(viewport={"width": 1300, "height": 900})) as page:
            seen = watch(page)
            page.goto(url + "/")
            page.get_by_role("link", name="run", exact=True).click()  # from the Runs page to the run
            page.wait_for_selector("#row-p000")
            first = page.get_attribute("#row-p000", "data-stage")
            assert first not in (None, "done"), f"the project was already {first!r} when the page opened"
            page.evaluate("window.__same_page = true")  # gone if the page reloads
            page.wait_for_function(
                "s => document.querySelector('#row-p000') && document.querySelector('#row-p000').dataset.stage !== s",
                arg=first, timeout=240_000,
            )  # fmt: skip
            later = page.get_attribute("#row-p000", "data-stage")
            assert later != first and page.evaluate("window.__same_page === true")
            assert int(page.get_attribute("body", "data-updates") or "0") >= 1
            assert run.wait(600) == 0, (tmp_path / "run.log").read_text()[-3000:]
            page.wait_for_function(
                "() => document.querySelector('#run-status').textContent === 'completed'", timeout=60_000
            )
            assert page.evaluate("window.__same_page === true")  # the whole run was followed without a reload
            page.click("#row-p000 a")
            page.wait_for_selector("#project-title")
            assert page.text_content("#project-status") == "done"
            title = page.text_content("#project-title") or ""
            markdown = page.locator("#paper-markdown")
            if page.locator("#paper-pdf").count():  # compiled: the PDF inline, and its Markdown one click away
                pdf = page.get_attribute("#paper-pdf", "src") or ""
                answer = page.request.get(url + pdf)
                assert answer.status == 200 and answer.headers["content-type"] == "application/pdf"
                assert answer.body()[:5] == b"%PDF-"
                page.click("#paper-markdown-box summary")
            assert markdown.is_visible()
            assert title.split(": ", 1)[1][:20] in (markdown.text_content() or "")
            assert page.locator("#calls-table tbody tr").count() > 5
            assert page.locator("svg.curves").count() >= 2  # the training curves
            page.wait_for_timeout(1500)  # the PDF viewer and the live stream settle
            page.screenshot(path=str(tmp_path / "project.png"), full_page=True)
            assert seen.console_errors == []
            assert seen.foreign_requests(url) == []
            assert any(r.startswith(url + "/live/") for r in seen.requests)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()


def test_script_in_model_text_stays_text_in_the_browser(tmp_path: Path, view_server: ViewStarter, browser: Any) -> None:
    run = synthetic_run(tmp_path / "run", 3, hostile=(1,))
    _, url = view_server(str(run))
    with closing(browser.new_page()) as page:
        seen = watch(page)
        dialogs: list[str] = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto(url + "/")
        page.get_by_role("link", name="run", exact=True).click()
        page.click("#row-p001 a")
        page.wait_for_selector("#project-title")
        assert "<script>window.__injected = 1" in (page.text_content("#project-title") or "")
        page.click("#paper-markdown-box summary")
        assert "<img src=x onerror=alert(1)>" in (page.text_content("#paper-markdown") or "")
        assert page.evaluate("typeof window.__injected") == "undefined" and dialogs == []
        page.goto(page.url.split("/run/")[0] + page.get_attribute("a[href$='paper.md']", "href"))  # type: ignore[operator]
        assert "<script>" in (page.text_content("body") or "")  # the raw file: sandboxed text
        assert page.evaluate("typeof window.__injected") == "undefined" and dialogs == []
        assert seen.console_errors == [] and seen.foreign_requests(url) == []
