"""The README is a front door and docs/ the reference: the site builds strictly, every link lands, every path and
module named exists, and every `fars` command shown in a code block is one the CLI takes."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

from fars.cli import COMMANDS, expand_jobs, split_args
from fars.commands.configured import compose_run
from tests.conftest import REPO

README = REPO / "README.md"
DOCS = REPO / "docs"
PAGES = [README, *sorted(DOCS.glob("*.md"))]
SETUP_LINES = (  # CI (.ci/run) and the developers' guide depend on these two lines, exactly
    "./install.sh --system && .venv/bin/fars run ",
    "./install.sh --system && .venv/bin/python -m pytest ",
)
FENCE = re.compile(r"^(```|~~~)")
CODE_SPAN = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
# `fars` as a command word: at a line's start, after a path (.venv/bin/fars) or opening `$(`, followed by a word
FARS_COMMAND = re.compile(r"(?:^|(?<=[\s/(]))fars\s+(?=[\w-])(.*)$")
SEPARATORS = {"&&", "||", ";", "|", "&"}
FILE_NAME = re.compile(r"\.(json|md|yaml|tex|pdf|txt|html|sqlite)$")  # `review.json` is a file, not a module


def split_markdown(text: str) -> tuple[list[str], list[list[str]]]:
    """The prose lines of a Markdown page and the lines of each fenced code block."""
    prose: list[str] = []
    blocks: list[list[str]] = []
    block: list[str] | None = None
    for line in text.splitlines():
        if FENCE.match(line.strip()):
            if block is None:
                block = []
            else:
                blocks.append(block)
                block = None
        elif block is None:
            prose.append(line)
        else:
            block.append(line)
    assert block is None, "a code block is not closed"
    return prose, blocks


def heading_text(raw: str) -> str:
    """A heading as rendered: inline markup gone (code spans keep their text, links their label)."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", raw)
    return text.replace("`", "").replace("**", "").replace("*", "")


def github_slug(text: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, each space a hyphen."""
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def mkdocs_slug(text: str) -> str:
    """MkDocs' anchor for a heading (Python-Markdown's toc extension)."""
    from markdown.extensions.toc import slugify

    return str(slugify(text, "-"))


@cache
def anchors(page: Path) -> frozenset[str]:
    """The anchors of ``page`` that both GitHub and MkDocs give its headings."""
    prose, _ = split_markdown(page.read_text(encoding="utf-8"))
    found = set()
    for line in prose:
        if match := HEADING.match(line):
            text = heading_text(match.group(2))
            if github_slug(text) == mkdocs_slug(text):  # a link to it works in both; otherwise reword the heading
                found.add(github_slug(text))
    return frozenset(found)


def links(page: Path) -> list[str]:
    """Every link target in the prose of ``page`` (not in code)."""
    prose, _ = split_markdown(page.read_text(encoding="utf-8"))
    return [target for line in prose for target in LINK.findall(CODE_SPAN.sub("", line))]


def fars_commands(page: Path) -> list[list[str]]:
    """The arguments after `fars` of every command shown in the code blocks of ``page``."""
    _, blocks = split_markdown(page.read_text(encoding="utf-8"))
    commands = []
    for line in (without_comment(line) for block in blocks for line in block):
        match = FARS_COMMAND.search(line)
        if match is None:
            continue
        rest = match.group(1)
        if line[: match.start()].endswith("$("):  # eval "$(fars run -sc install=bash)"
            rest = rest.split(")", 1)[0]
        lexer = shlex.shlex(rest, posix=True, punctuation_chars=";&|")
        lexer.whitespace_split = True  # a word is everything up to a space; `#` starts a comment at a word's start
        words = []
        for word in lexer:
            if word in SEPARATORS:
                break
            words.append(word)
        commands.append(words)
    return commands


def without_comment(line: str) -> str:
    """A shell line without its comment: from a `#` that starts a word outside quotes."""
    quote = ""
    for i, char in enumerate(line):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i]
    return line


def is_placeholder(override: str) -> bool:
    """An override shown as a pattern rather than a value: `...`, or a value in capitals such as `DIR`."""
    value = override.split("=", 1)[-1]
    return "..." in override or re.fullmatch(r"[A-Z][A-Z_]*", value) is not None


def test_the_readme_is_a_front_door() -> None:
    text = README.read_text(encoding="utf-8")
    assert len(text) < 8000, f"README.md has {len(text)} characters; move reference text into docs/"
    lines = [line.split("#")[0] for line in text.splitlines()]
    for setup in SETUP_LINES:
        assert any(line.startswith(setup) for line in lines), f"README.md lost the set-up line {setup.strip()!r}"
    assert any("docs/" in target for target in links(README)), "README.md links to no docs page"


def test_the_site_builds_strictly_and_loads_nothing_from_elsewhere(tmp_path: Path) -> None:
    """`mkdocs build --strict`: a broken link or anchor, a page missing from the nav or a bad config fails it."""
    pytest.importorskip("mkdocs", reason="mkdocs is in the dev extra: pip install -e '.[dev]'")
    site = tmp_path / "site"
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "-f", str(REPO / "mkdocs.yml"), "-d", str(site)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    built = {page.stem for page in site.glob("*.html")}
    assert {page.stem for page in DOCS.glob("*.md")} <= built
    for page in site.glob("*.html"):
        html = page.read_text(encoding="utf-8")
        fetched = re.findall(r"<(?:script|img|iframe)[^>]*\ssrc=\"(?:https?:)?//[^\"]*\"", html)
        fetched += re.findall(r"<link[^>]*\shref=\"(?:https?:)?//[^\"]*\"", html)
        assert not fetched, f"{page.name} loads from elsewhere: {fetched}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_lands(page: Path) -> None:
    """Every relative link of the README and docs/ names a file, and an anchor a heading of it."""
    bad = []
    for target in links(page):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        landing = (page.parent / path).resolve() if path else page
        if not landing.exists():
            bad.append(f"{target}: no file {landing}")
        elif anchor and (landing.suffix != ".md" or anchor not in anchors(landing)):
            bad.append(f"{target}: no heading #{anchor} in {landing.name} (has {sorted(anchors(landing))})")
    assert not bad, f"{page.name}:\n" + "\n".join(bad)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_path_and_module_named_exists(page: Path) -> None:
    """Code spans naming a file of the repository (`fars/run/contracts.py`) or a module's member
    (`fars.stages.base.register_stage`) name ones that exist, so a move cannot leave the docs behind."""
    prose, _ = split_markdown(page.read_text(encoding="utf-8"))
    spans = [span.split()[0] for line in prose for span in CODE_SPAN.findall(line) if span.strip()]
    bad = []
    for span in spans:
        if re.fullmatch(r"(fars|review|experiments|tests|benchmarks|conf|\.ci)/[\w./-]*", span):
            bad += [] if (REPO / span).exists() else [f"{span}: no such file or folder"]
        elif re.fullmatch(r"(fars|review|experiments)(\.\w+)+", span) and not FILE_NAME.search(span):
            bad += [] if module_member_exists(span) else [f"{span}: no such module or member"]
    assert not bad, f"{page.name}:\n" + "\n".join(bad)


def module_member_exists(dotted: str) -> bool:
    """Whether ``dotted`` is a module of the repository, or a name a module of it defines or re-exports."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        base = REPO.joinpath(*parts[:cut])
        source = base.with_suffix(".py") if base.with_suffix(".py").is_file() else base / "__init__.py"
        if source.is_file():
            rest = parts[cut:]
            if not rest:
                return True
            return len(rest) == 1 and re.search(rf"\b{re.escape(rest[0])}\b", source.read_text("utf-8")) is not None
    return False


def all_commands() -> list[list[str]]:
    """Each distinct `fars` command of the README's and docs' code blocks, once."""
    seen: dict[str, list[str]] = {}
    for page in PAGES:
        for words in fars_commands(page):
            seen.setdefault(shlex.join(words), words)
    return list(seen.values())


COMMANDS_SHOWN = all_commands()


def test_the_commands_are_found() -> None:
    """The scan sees the README's commands (a broken scan would pass every command test by finding none)."""
    shown = {shlex.join(words) for words in COMMANDS_SHOWN}
    assert {"run", "view", "review paper.pdf", "run llm=openai", "run -sc install=bash"} <= shown
    assert len(COMMANDS_SHOWN) >= 25


@cache
def composes(overrides: tuple[str, ...]) -> str | None:
    """None when ``fars run`` composes and validates these overrides, else what it says."""
    try:
        compose_run([o for o in overrides if not o.startswith("hydra.")])
    except Exception as exc:  # UsageError lists every problem; anything else is a problem too
        return f"{type(exc).__name__}: {exc}"
    return None


@pytest.mark.parametrize("words", COMMANDS_SHOWN, ids=shlex.join)
def test_every_fars_command_shown_parses(words: list[str]) -> None:
    """The first word is a command of fars/cli.py; `fars run`'s overrides compose, every job of a sweep
    checked for each value the sweep takes (placeholders such as `DIR` or `...` left out)."""
    command, args = words[0], words[1:]
    assert command == "run" or command in COMMANDS, f"`fars {command}` is no command of fars/cli.py"
    if command != "run":
        return
    flags, overrides = split_args(args)
    assert all(f.startswith("-") or flags[i - 1].startswith("-") for i, f in enumerate(flags)), flags
    overrides = [o for o in overrides if not is_placeholder(o)]
    jobs = expand_jobs(overrides, multirun=any(f in ("-m", "--multirun") for f in flags))
    covered: set[str] = set()
    for job in jobs:  # a 12-job sweep needs only the jobs that bring a value not composed yet
        if set(job) <= covered:
            continue
        covered |= set(job)
        problem = composes(tuple(job))
        assert problem is None, f"fars {shlex.join(words)}: job {job} does not compose:\n{problem}"
