"""`fars review` on hostile papers: every attack of issue 25 planted, the command run as a subprocess
(the scripted model; each request it is sent recorded), and checked: refused or bounded with a
message naming the file, the command alive with a sensible exit status, under 1 GB and 30 s of CPU, and
nothing outside the paper's folder read (a fake secret never reaches the model) or written."""

from __future__ import annotations

import json
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from fars.safe_files import remove_tree
from tests.fars_process import run_warm
from tests.review.ingest.test_pdf import raw_pdf

SECRET = "FAKE-CREDENTIALS aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
MAX_RSS_MB = 1024
MAX_CPU_S = 30  # CPU seconds of the command and its readers: a busy machine stretches the wall clock, not these
MAX_WALL_S = 120  # against a hang
FAST = ["llm=scripted", "reviewer.related_works=0", "reviewer.ensemble=1", "reviewer.meta_review=false"]
# Runs `fars review` in this child: records every request the scripted model is sent, then the exit
# status, the wall time and the peak RSS of the command and of its own children (the PDF readers).
DRIVER = r"""
import json, resource, sys, time
resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))  # a regression fails this test, not the machine
from fars.llm import scripted
sent = []
reply = scripted.ScriptedProvider.reply
def recording(self, model, messages, optional_params, drawn):
    sent.append(json.dumps(messages, default=str))
    return reply(self, model, messages, optional_params, drawn)
scripted.ScriptedProvider.reply = recording
from fars.cli import main
started = time.monotonic()
cpu_at_start = sum(getattr(resource.getrusage(resource.RUSAGE_SELF), f) for f in ("ru_utime", "ru_stime"))
rc = main(sys.argv[2:])
wall = time.monotonic() - started
own, children = (resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
cpu = own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime - cpu_at_start
with open(sys.argv[1], "w") as out:
    json.dump({"rc": rc, "wall_s": wall, "cpu_s": cpu, "rss_mb": own.ru_maxrss / 1024,
               "children_rss_mb": children.ru_maxrss / 1024, "sent": sent}, out)
"""


@dataclass
class Run:
    """What one `fars review` run did."""

    rc: int
    err: str
    wall_s: float
    cpu_s: float
    rss_mb: float
    children_rss_mb: float
    sent: list[str]

    def check_bounded(self) -> None:
        """Alive, under the memory and time bounds, no traceback, and the secret never sent."""
        print(
            f"exit {self.rc}, {self.wall_s:.1f} s ({self.cpu_s:.1f} s CPU), {self.rss_mb:.0f} MB, "
            f"readers {self.children_rss_mb:.0f} MB"
        )
        assert "Traceback" not in self.err, self.err
        assert self.rss_mb < MAX_RSS_MB and self.children_rss_mb < MAX_RSS_MB, (self.rss_mb, self.children_rss_mb)
        assert self.cpu_s < MAX_CPU_S and self.wall_s < MAX_WALL_S, (self.cpu_s, self.wall_s)
        assert not any(SECRET in request for request in self.sent)


def review(paper: Path, *args: str, timeout: int = 120) -> Run:
    """`fars review PAPER` with the scripted model, run as a subprocess in the paper's folder's parent."""
    report = paper.parent.parent / f".run-{paper.name}-{os.getpid()}.json"
    done = run_warm([str(report), "review", str(paper), *FAST, *args], paper.parent.parent, timeout, code=DRIVER)
    assert report.is_file(), done.stderr[-3000:]
    data: dict[str, Any] = json.loads(report.read_text())
    report.unlink()
    return Run(
        data["rc"], done.stderr, data["wall_s"], data["cpu_s"], data["rss_mb"], data["children_rss_mb"], data["sent"]
    )


def paper_tex(body: str = "", *, inputs: str = "") -> str:
    """A small but real LaTeX paper (enough text to be reviewed), with ``inputs`` and ``body`` in it."""
    prose = "We train small networks on modular arithmetic and measure when they generalise. " * 40
    return (
        "\\documentclass{article}\\title{Grokking, measured}\\begin{document}\\maketitle\n"
        f"\\begin{{abstract}}{prose[:400]}\\end{{abstract}}\n\\section{{Introduction}}{prose}\n{inputs}\n{body}\n"
        "\\section{Results}Accuracy rises late.\\bibliography{refs}\n\\end{document}\n"
    )


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    """A fake credentials file outside every paper's folder (a .tex, so that LaTeX lookups would take it)."""
    path = tmp_path / "outside" / "credentials.tex"
    path.parent.mkdir()
    path.write_text(f"\\documentclass{{article}}\\begin{{document}}{SECRET}\\end{{document}}\n")
    return path


# -- reading outside the source folder ------------------------------------------------------------------


def test_linked_bbl_input_and_hard_link_are_refused_and_never_sent(tmp_path: Path, secret: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "main.tex").write_text(paper_tex(inputs="\\input{intro}\\input{extra}\\input{sections/more}"))
    (src / "main.bbl").symlink_to(secret)  # the attack that worked: the bibliography read through a link
    (src / "intro.tex").symlink_to(secret)
    os.link(secret, src / "extra.tex")  # a hard link is the same file outside the folder
    (src / "sections").symlink_to(secret.parent, target_is_directory=True)
    (secret.parent / "more.tex").write_text(SECRET)
    run = review(src)
    assert run.rc == 0 and run.sent, run.err
    run.check_bounded()
    for name, why in (
        ("main.bbl", "is a symbolic link; refused"), ("intro.tex", "is a symbolic link; refused"),
        ("extra.tex", "has 2 hard links"), ("sections", "is not a folder (a link?)"),
    ):  # fmt: skip
        assert f"{src / name} {why}" in run.err, (name, run.err)
    assert SECRET not in (src / "main.review" / "review.json").read_text()


def test_a_linked_main_tex_is_no_candidate(tmp_path: Path, secret: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "main.tex").symlink_to(secret)
    (src / "notes.md").write_text("# notes")
    run = review(src)
    assert run.rc == 2 and not run.sent
    run.check_bounded()
    assert f"{src}: a folder with no LaTeX document" in run.err


def test_fifos_never_block_the_command(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "main.tex").write_text(paper_tex(inputs="\\input{pipe}"))
    os.mkfifo(src / "pipe.tex")
    os.mkfifo(src / "main.bbl")
    run = review(src)
    assert run.rc == 0, run.err
    run.check_bounded()
    assert f"{src / 'pipe.tex'} is a FIFO, not a regular file; refused" in run.err
    assert f"{src / 'main.bbl'} is a FIFO, not a regular file; refused" in run.err
    os.mkfifo(tmp_path / "paper.md")
    named = review(tmp_path / "paper.md")
    assert named.rc == 2 and not named.sent and f"{tmp_path / 'paper.md'}: not a regular file" in named.err
    named.check_bounded()


# -- writing through links planted beside the paper -------------------------------------------------------


def test_links_planted_in_the_review_folder_are_replaced_never_written_through(tmp_path: Path) -> None:
    paper = tmp_path / "paper.md"
    paper.write_text("# A paper\n\n## Introduction\n\n" + "We study how small networks generalise. " * 80)
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "victim.txt"
    victim.write_text("ORIGINAL")
    planted = tmp_path / "paper.review"
    planted.mkdir()
    (planted / "review.md").symlink_to(victim)
    (planted / "review.json").symlink_to(outside / "created.json")  # dangling: writing would create it
    (planted / "ledger.sqlite").symlink_to(outside / "ledger.sqlite")
    first = review(paper)  # a review.json (even a link) marks the folder as taken: the next free one is used
    assert first.rc == 0, first.err
    first.check_bounded()
    assert (tmp_path / "paper.review-2" / "review.json").is_file()
    second = review(paper, "overwrite=true")  # asked to reuse it: the links are replaced by files
    assert second.rc == 0, second.err
    second.check_bounded()
    for name in ("review.md", "review.json", "ledger.sqlite"):
        assert not (planted / name).is_symlink() and (planted / name).is_file(), name
    assert json.loads((planted / "review.json").read_text())["title"] == "A paper"
    assert victim.read_text() == "ORIGINAL" and sorted(p.name for p in outside.iterdir()) == ["victim.txt"]


def test_a_review_folder_that_is_a_link_is_passed_over(tmp_path: Path) -> None:
    paper = tmp_path / "paper.md"
    paper.write_text("# A paper\n\n## Introduction\n\n" + "We study how small networks generalise. " * 80)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "paper.review").symlink_to(elsewhere, target_is_directory=True)
    run = review(paper, "overwrite=true")
    assert run.rc == 0, run.err
    run.check_bounded()
    assert f"{tmp_path / 'paper.review'} is not a folder (a link or a file someone left there)" in run.err
    assert list(elsewhere.iterdir()) == [] and (tmp_path / "paper.review-2" / "review.md").is_file()


# -- PDF bombs -------------------------------------------------------------------------------------------


def number_bomb_pdf(path: Path, mib: int) -> Path:
    """A text page whose second content stream inflates from about a thousandth of ``mib`` MiB to
    ``mib`` MiB of numbers and no operator: PDFium shrugs, pdfminer keeps every operand (gigabytes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    packer, chunk, data = zlib.compressobj(9), b"1 " * 2**19, bytearray()
    for _ in range(mib):
        data += packer.compress(chunk)
    data += packer.flush()
    lines = [f"Line {i} of a page about how small networks generalise, with enough words." for i in range(40)]
    text = b"".join(
        b"BT /F1 11 Tf 72 %d Td (%s) Tj ET\n" % (740 - 16 * k, line.encode()) for k, line in enumerate(lines)
    )
    return raw_pdf(
        path,
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents [4 0 R 5 0 R] "
            b"/Resources << /Font << /F1 6 0 R >> >> >>",
            b"<< /Length %d >>\nstream\n" % len(text) + text + b"\nendstream",
            b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(data) + bytes(data) + b"\nendstream",
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        ],
    )


def many_pages_pdf(path: Path, pages: int) -> Path:
    """A PDF of ``pages`` pages sharing one content stream of a few lines (about 70 bytes a page on disk)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = b"".join(
        b"BT /F1 11 Tf 72 %d Td (Line %d of a long document about networks that generalise late.) Tj ET\n"
        % (740 - 16 * k, k)
        for k in range(6)
    )
    kids = b" ".join(b"%d 0 R" % (5 + i) for i in range(pages))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [%s] /Count %d /MediaBox [0 0 612 792] /Resources << /Font << /F1 4 0 R >> >> >>"
        % (kids, pages),
        b"<< /Length %d >>\nstream\n" % len(text) + text + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    objects += [b"<< /Type /Page /Parent 2 0 R /Contents 3 0 R >>"] * pages
    return raw_pdf(path, objects)


def test_a_pdf_bomb_for_the_hidden_text_scan_is_bounded(tmp_path: Path) -> None:
    bomb = number_bomb_pdf(tmp_path / "papers" / "bomb.pdf", 64)  # 32 million operands: gigabytes to pdfminer
    assert bomb.stat().st_size < 100_000
    run = review(bomb)
    assert run.rc == 0, run.err  # the text reader copes; the scan skips the page and says so
    run.check_bounded()
    assert f"{bomb}: page 1 was not scanned: its content inflates past 16,777,216 bytes" in run.err
    result = json.loads((bomb.parent / "bomb.review" / "review.json").read_text())
    assert any(f["why"].startswith("page 1 was not scanned") for f in result["injection"]["findings"])


def test_a_20000_page_pdf_is_read_and_scanned_to_the_page_limit(tmp_path: Path) -> None:
    pdf = many_pages_pdf(tmp_path / "papers" / "long.pdf", 20_000)
    run = review(pdf)
    assert run.rc == 0, run.err
    run.check_bounded()
    assert "only the first 200 of 20000 pages were read" in run.err
    result = json.loads((pdf.parent / "long.review" / "review.json").read_text())
    assert any("first 200 pages only" in f["why"] for f in result["injection"]["findings"])


# -- LaTeX that costs time, stack or memory ----------------------------------------------------------------


def test_deeply_nested_braces_are_flattened(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    nested = "{" * 500 + "Deep text." + "}" * 500
    assert len(nested) < 1_100  # the 1 KB that ended in RecursionError
    (src / "main.tex").write_text(paper_tex(nested + "\\textbf{" * 300 + "x" + "}" * 300))
    run = review(src / "main.tex")
    assert run.rc == 0, run.err
    run.check_bounded()
    assert "nested over 64 deep were flattened" in run.err and any("Deep text." in r for r in run.sent)


def test_unbalanced_defs_are_linear(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    junk = "\\def\\junk{ an unbalanced definition " * 4_000  # 140 KB, no group ever closed
    assert len(junk) > 140_000
    (src / "main.tex").write_text(paper_tex(junk + "\\newcommand{\\x}[" * 2_000 + "\\phantom{" * 2_000))
    run = review(src / "main.tex")
    assert run.rc == 0, run.err
    run.check_bounded()


def test_a_3000_deep_source_folder(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "main.tex").write_text(paper_tex(inputs="\\input{" + "d/" * 3_000 + "missing}"))
    fd = os.open(src, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(3_000):
            os.mkdir("d", dir_fd=fd)
            nxt = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = nxt
        with os.fdopen(os.open("deep.tex", os.O_WRONLY | os.O_CREAT, dir_fd=fd), "w") as deep:
            deep.write(paper_tex())  # a second document, far below: never found, never a candidate
    finally:
        os.close(fd)
    try:
        run = review(src)
        assert run.rc == 0, run.err
        run.check_bounded()
        assert "\\input{d/d/d/" in run.err and "missing' not found in" in run.err
    finally:
        remove_tree(src / "d")  # pytest's own clean-up recurses per level


def test_huge_tex_and_md_are_refused_unread(tmp_path: Path) -> None:
    folder = tmp_path / "papers"
    folder.mkdir()
    for name in ("huge.md", "huge.tex"):
        with open(folder / name, "wb") as sparse:  # 10 GB that take no disk: read whole, they would take hours
            sparse.truncate(10 * 2**30)
    for name in ("huge.md", "huge.tex"):
        run = review(folder / name)
        assert run.rc == 2 and not run.sent, run.err
        run.check_bounded()
        assert (
            f"{folder / name}: refused: " in run.err
            and "is 10,737,418,240 bytes, over the 4,194,304 allowed" in run.err
        )
    src = tmp_path / "src"
    src.mkdir()
    (src / "main.tex").write_text(paper_tex(inputs="\\input{huge}"))
    (folder / "huge.tex").rename(src / "huge.tex")
    run = review(src)
    assert run.rc == 0, run.err
    run.check_bounded()
    assert f"{src / 'huge.tex'} is 10,737,418,240 bytes, over the 4,194,304 allowed; not read" in run.err


def test_a_long_source_is_cut_not_converted_for_minutes(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    prose = "\\section{Part}We measure how networks generalise, with $x^2$ and \\emph{emphasis}. " * 100
    for i in range(12):
        (src / f"part{i}.tex").write_text(prose * 30)  # 12 files of 240 KB: 2.9 MB of LaTeX
    (src / "main.tex").write_text(paper_tex(inputs="".join(f"\\input{{part{i}}}" for i in range(12))))
    run = review(src)
    assert run.rc == 0, run.err
    run.check_bounded()
    assert "the source is over 1000000 characters" in run.err


def test_the_users_own_links_are_followed_as_named(tmp_path: Path) -> None:
    """A link the user names (the paper, or its folder) is theirs: read as named; only what lies below is refused."""
    from review.ingest.paper import load_paper

    src = tmp_path / "src"
    src.mkdir()
    (src / "main.tex").write_text(paper_tex(inputs="\\input{intro}"))
    (src / "intro.tex").write_text("An introduction read through the folder.")
    (tmp_path / "linked-src").symlink_to(src, target_is_directory=True)
    (tmp_path / "linked.tex").symlink_to(src / "main.tex")
    (tmp_path / "intro.tex").write_text("An introduction beside the link.")
    from_folder = load_paper(tmp_path / "linked-src")
    assert "An introduction read through the folder." in from_folder.text and not from_folder.ingest.warnings
    from_file = load_paper(tmp_path / "linked.tex")  # its inputs are looked for beside the name given
    assert "An introduction beside the link." in from_file.text
