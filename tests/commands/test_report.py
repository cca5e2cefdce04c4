"""`fars report`: a self-contained page that renders in real headless Chromium (Playwright) without errors."""

from __future__ import annotations

import struct
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from fars.commands.report import main as report
from fars.run.contracts import ReviewSummary
from fars.run.records import Artifact, ProjectStatus, RunRecord, Usage
from fars.run.summary import write_run_record
from tests.chromium import watch
from tests.commands.test_compare import baseline_scores, make_run

PROBE = """{title: document.title, svgs: document.querySelectorAll('svg').length,
 rows: document.querySelectorAll('#papers tbody tr').length,
 links: Array.from(document.querySelectorAll('#papers a')).map(a => a.getAttribute('href')),
 refs: Array.from(document.querySelectorAll('svg text')).map(t => t.textContent).filter(t => t.includes('ICLR') || t.includes('accepted')),
 height: document.body.scrollHeight}"""

# every pair of labels in one chart that overlap, and every label that leaves its chart
OVERLAPS = """Array.from(document.querySelectorAll('svg')).flatMap(svg => {
  const box = svg.getBoundingClientRect();
  const texts = Array.from(svg.querySelectorAll('text')).map(t => [t.textContent, t.getBoundingClientRect()]);
  const out = texts.filter(([_, r]) => r.left < box.left - 0.5 || r.right > box.right + 0.5 || r.top < box.top - 0.5 || r.bottom > box.bottom + 0.5).map(([t]) => 'outside: ' + t);
  texts.forEach(([a, r], i) => texts.slice(i + 1).forEach(([b, q]) => {
    const w = Math.min(r.right, q.right) - Math.max(r.left, q.left), h = Math.min(r.bottom, q.bottom) - Math.max(r.top, q.top);
    if (w > 1 && h > 1) out.push('overlap: ' + a + ' / ' + b);
  }));
  return out;
})"""


def run_with_artifacts(tmp_path: Path) -> Path:
    """A run folder whose papers have paper and review files, usage by stage and model, and end times."""
    run = make_run(tmp_path / "run", baseline_scores(8), wall_s=5400)
    record = RunRecord.model_validate_json((run / "run_record.json").read_text())
    for i, p in enumerate(record.projects):
        folder = run / "projects" / p.id
        folder.mkdir(parents=True)
        (folder / "paper.md").write_text(f"# Paper {i}\n")
        (folder / "review.json").write_text("{}")
        (folder / "review.md").write_text("# Review\n")
        p.artifacts = [
            Artifact(kind="paper", path=f"projects/{p.id}/paper.md", sha256="0", stage="writing"),
            Artifact(kind="review", path=f"projects/{p.id}/review.json", sha256="0", stage="review"),
            Artifact(kind="review_md", path=f"projects/{p.id}/review.md", sha256="0", stage="review"),
        ]
        p.finished_at = record.started_at + 600 * (i + 1)
        p.review = ReviewSummary(
            rating=p.rating or 0,
            raw_rating=p.rating or 0,
            calibrated_rating=(p.rating or 0) - 0.5,
            decision="reject",
            subscores={"soundness": 3, "presentation": 2, "contribution": 2},
        )
    record.projects[0].title = "<script>alert('x')</script> & escaped"
    record.projects[1].status, record.projects[1].stage = ProjectStatus.failed, "experiment"
    record.papers -= 1  # as the RunRecord's writer counts them (``is_paper``)
    record.projects[1].error = "experiment: every condition crashed"
    record.totals.by_stage = {
        s: Usage(calls=5, input_tokens=900, output_tokens=100, cost_usd=0.002)
        for s in ("ideation", "planning", "writing", "review")
    }
    record.totals.by_model = {"scripted/default": Usage(calls=20, input_tokens=3600, output_tokens=400)}
    write_run_record(record, run)
    return run


def test_report_is_self_contained_and_links_papers(tmp_path: Path) -> None:
    run = run_with_artifacts(tmp_path)
    assert report([str(run)]) == 0
    page = (run / "report.html").read_text()
    assert "<script>alert" not in page and "&lt;script&gt;" in page  # titles are escaped
    assert "http://" not in page and "https://" not in page  # nothing fetched from anywhere
    assert "ICLR 2026 submissions 4.21" in page and "accepted 5.39" in page
    assert 'href="projects/p000/paper.md"' in page and 'href="projects/p007/review.json"' in page
    # the review a person reads comes first; the funnel shows the novelty check; a failed project names its stage
    assert page.index('href="projects/p007/review.md"') < page.index('href="projects/p007/review.json"')
    assert ">novel<" in page
    assert "failed in experiment" in page
    out = tmp_path / "elsewhere" / "r.html"
    assert report([str(run / "run_record.json"), "--out", str(out)]) == 0
    assert 'href="../run/projects/p000/paper.md"' in out.read_text()


def test_report_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert report([str(tmp_path / "nothing")]) == 2
    make_run(tmp_path / "sweep" / "0", [5.0])
    make_run(tmp_path / "sweep" / "1", [5.0])
    assert report([str(tmp_path / "sweep")]) == 2
    assert "give one run folder" in capsys.readouterr().err


def test_report_renders_in_headless_chromium(tmp_path: Path, browser: Any) -> None:
    run = run_with_artifacts(tmp_path)
    assert report([str(run)]) == 0
    with closing(browser.new_page(viewport={"width": 1280, "height": 1000})) as page:
        seen = watch(page)
        page.goto((run / "report.html").as_uri())
        probe = page.evaluate(f"() => ({PROBE})")
        overlaps = page.evaluate(f"() => {OVERLAPS}")
        png = page.screenshot(full_page=True)
    assert seen.console_errors == []
    assert overlaps == [], overlaps  # chart labels neither overlap each other nor leave their chart
    assert seen.foreign_requests(None) == []  # a file page fetches nothing from any host
    assert probe["title"].startswith("FARS run")
    assert probe["svgs"] >= 5 and probe["rows"] == 8
    assert "projects/p000/paper.md" in probe["links"]
    assert any("4.21" in t for t in probe["refs"]) and any("5.39" in t for t in probe["refs"])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    assert width >= 1000 and height >= 1000 and len(png) > 20_000  # a full page, not a blank one
    (tmp_path / "report.png").write_bytes(png)


def test_the_browser_watch_catches_errors_and_requests(tmp_path: Path, browser: Any) -> None:
    bad = tmp_path / "bad.html"
    bad.write_text(
        "<html><body>x<img src='http://elsewhere.invalid/x.png'>"
        "<script>console.error('boom'); undefinedFunction();</script></body></html>"
    )
    with closing(browser.new_page()) as page:
        seen = watch(page)
        page.route("http://**/*", lambda route: route.abort())  # seen, then stopped before it leaves the browser
        page.goto(bad.as_uri())
    assert any("boom" in e for e in seen.console_errors)
    assert any("undefinedFunction" in e for e in seen.console_errors)
    assert seen.foreign_requests(None) == ["http://elsewhere.invalid/x.png"]
