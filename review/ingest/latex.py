"""LaTeX sources as Markdown-like text: a multi-file source flattened, its own macros expanded, then
converted by pylatexenc.

Steps, each a function of its own:

1. ``flatten``: comments (``%``, ``comment`` environments, ``\\iffalse`` blocks) dropped, then every
   ``\\input``, ``\\include``, ``\\subfile``, ``\\import`` and ``\\subimport`` replaced by the file it
   names, looked up as LaTeX does (relative to the main file's folder, with or without ``.tex``),
   never outside the source folder; what could not be read is recorded, not silently dropped.
2. ``collect_macros`` / ``expand_macros``: the source's own ``\\newcommand``, ``\\def``,
   ``\\DeclareMathOperator`` ... definitions, expanded textually as TeX would (arguments and
   optional defaults), so ``\\newcommand{\\datanet}{DataComp}`` reads "DataComp" and a math macro
   becomes the math it stands for.
3. ``latex_to_markdown``: pylatexenc turns the body into text; sections become numbered Markdown
   headings (the appendix lettered), math is kept as LaTeX between its delimiters, tables as rows of
   cells separated by ``|``, figures as their captions, citations and references as ``[key]``.

A source comes from whoever wrote the paper, so every file is read through ``fars.safe_files``
(below the source folder one component at a time: no link followed, no FIFO or device opened, each
file at most ``MAX_FILE_BYTES``), a folder is searched a few levels deep without following links,
and every step is linear in the source and bounded: groups are matched in one pass (an unbalanced
``\\def`` costs nothing extra), the source and its expansion are capped, and nesting deeper than
``MAX_NESTING`` is flattened before pylatexenc, which recurses once per level.
"""

from __future__ import annotations

import os
import posixpath
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from fars.safe_files import UnsafeFileError, read_file, read_named

MAX_FILE_BYTES = 4 * 2**20  # one .tex or .bbl file; a paper's main file is 50-300 KB
MAX_SOURCE_CHARS = 1_000_000  # flattened; the rest is cut and flagged (a reviewer reads at most 400,000 characters)
MAX_CONVERT_CHARS = 1_200_000  # given to pylatexenc once macros are expanded (it reads about 150 KB a second)
MAX_READ_BYTES = 16 * 2**20  # all files of one source together, comments included
MAX_INPUT_DEPTH = 16
MAX_INPUTS = 1_000  # \input commands followed in one source; the rest are recorded, not read
MAX_EXPANSION_DEPTH = 24
MAX_NESTING = 64  # braces and environments nested deeper are flattened (pylatexenc recurses per level)
MAX_WARNINGS = 20  # warnings recorded one by one; the rest are counted
FOLDER_DEPTH = 3  # a source folder is searched this many levels down (its own files are level 1)
MAX_FOLDER_ENTRIES = 20_000  # entries of a source folder looked at, at most
MAX_MAIN_READS = 200  # .tex files of a folder opened to find its main one
MAX_BBL_CHARS = 500_000  # a compiled bibliography; a paper's has 20-100 KB
_INPUT = re.compile(
    r"\\(?P<cmd>input|include|subfile|import|subimport|InputIfFileExists)\*?\s*"
    r"(?:\{(?P<dir>[^{}]*)\}\s*(?=\{))?(?:\{(?P<arg>[^{}]*)\}|(?<=\\input)\s+(?P<bare>[^\s{}\\%]+))"
)
_DEFINERS = ("newcommand", "renewcommand", "providecommand", "DeclareRobustCommand")
# Macros a source may redefine for layout; expanding such a redefinition would lose the structure.
_STRUCTURAL = {
    "section",
    "subsection",
    "subsubsection",
    "paragraph",
    "subparagraph",
    "chapter",
    "part",
    "appendix",
    "maketitle",
    "title",
    "author",
    "caption",
    "label",
    "ref",
    "cite",
    "item",
    "footnote",
    "emph",
    "textbf",
    "textit",
    "texttt",
    "bibliography",
    "includegraphics",
    "input",
    "include",
    "begin",
    "end",
    "and",
    "AND",
    "And",
    "thanks",
    "url",
    "href",
    "abstract",
    "tableofcontents",
}


@dataclass
class Macro:
    """A macro the source defines: its argument count, the default of an optional first one, its body."""

    nargs: int
    default: str | None
    body: str


@dataclass
class LatexReading:
    """What was read of a LaTeX source: its text, title, the files read and what went wrong."""

    title: str | None
    text: str
    files: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    more_warnings: int = 0  # warnings past MAX_WARNINGS, counted only

    def warn(self, message: str) -> None:
        """Record a warning; past ``MAX_WARNINGS`` they are only counted (a source can repeat one without end)."""
        if len(self.warnings) < MAX_WARNINGS:
            self.warnings.append(message)
        else:
            self.more_warnings += 1

    def close_warnings(self) -> None:
        """Say how many warnings were counted but not recorded."""
        if self.more_warnings:
            self.warnings.append(f"... and {self.more_warnings} more warnings like these (inputs not read)")
            self.more_warnings = 0


def strip_comments(source: str) -> str:
    """``source`` without comments: ``%`` to the end of the line (as TeX, with the line end and the next
    line's indentation), ``comment`` environments and ``\\iffalse ... \\fi`` blocks."""
    text = re.sub(r"(?<!\\)((?:\\\\)*)%[^\n]*(?:\n[ \t]*)?", r"\1", source)
    text = _drop_spans(text, "\\begin{comment}", "\\end{comment}")
    return _drop_iffalse(text)


def _drop_spans(text: str, begin: str, end: str) -> str:
    """``text`` without each span from ``begin`` to the next ``end`` (one without an end is kept); one pass."""
    out, pos = [], 0
    while (start := text.find(begin, pos)) != -1:
        stop = text.find(end, start + len(begin))
        if stop == -1:
            break
        out.append(text[pos:start])
        pos = stop + len(end)
    out.append(text[pos:])
    return "".join(out)


def _drop_iffalse(text: str) -> str:
    """Remove ``\\iffalse ... \\fi`` blocks, counting the conditionals nested in them."""
    out, pos = [], 0
    cond = re.compile(r"\\(if[A-Za-z@]*|fi)(?![A-Za-z@])")
    for start in (m.start() for m in re.finditer(r"\\iffalse(?![A-Za-z@])", text)):
        if start < pos:
            continue
        depth, i = 1, start + len("\\iffalse")
        while depth and (m := cond.search(text, i)):
            depth += -1 if m.group(1) == "fi" else 1
            i = m.end()
        out.append(text[pos:start])
        pos = i if depth == 0 else len(text)
        if depth:
            break
    out.append(text[pos:])
    return "".join(out)


# -- files of a source folder ---------------------------------------------------------------------


def source_files(folder: Path, *, depth: int = FOLDER_DEPTH, limit: int = MAX_FOLDER_ENTRIES) -> list[str]:
    """The regular files of ``folder`` at most ``depth`` levels down, as relative POSIX names in sorted
    order. Links and special files are left out and never followed, a deeper tree is not entered, and
    the search stops after ``limit`` entries (a folder of a million files costs no more)."""
    found: list[str] = []
    pending, seen = [("", 1)], 0
    while pending:
        rel, level = pending.pop()
        try:
            with os.scandir(folder / rel if rel else folder) as entries:
                for entry in entries:
                    seen += 1
                    if seen > limit:
                        return sorted(found, key=lambda name: name.split("/"))
                    name = f"{rel}/{entry.name}" if rel else entry.name
                    if entry.is_dir(follow_symlinks=False):
                        if level < depth:
                            pending.append((name, level + 1))
                    elif entry.is_file(follow_symlinks=False):
                        found.append(name)
        except OSError:
            continue  # unreadable, vanished, or a name too long: not part of the source
    return sorted(found, key=lambda name: name.split("/"))


def read_source_file(root: Path, name: str | PurePosixPath, *, named: bool = False) -> str:
    """The text of file ``name`` below source folder ``root``, read through ``fars.safe_files`` (no link
    followed at any level, no FIFO or device opened, at most ``MAX_FILE_BYTES``); ``named``: the file
    the user gave, followed as named. ``root`` itself is the user's path (resolved: a link they made to
    it is theirs). ``UnsafeFileError`` (naming the file) or ``OSError`` if refused."""
    path = root / name
    data = (
        read_named(path, max_bytes=MAX_FILE_BYTES)
        if named
        else read_file(root.resolve(), str(name), max_bytes=MAX_FILE_BYTES)
    )
    return data.decode("utf-8", errors="replace")


def _input_names(name: str, here: PurePosixPath, root: Path) -> tuple[list[str], str | None]:
    """The names below the source folder an ``\\input{name}`` in a file of folder ``here`` may mean, in
    the order LaTeX tries them (the main file's folder first, with ``.tex`` first), or why none."""
    name = name.strip().strip('"')
    if not name:
        return [], "an empty file name"
    if name.startswith(("/", "~")) or Path(name).is_absolute():
        return [], f"{name!r} is an absolute path outside the source folder; not read"
    files = [name] if name.endswith(".tex") else [f"{name}.tex", name]
    inside = []
    for base in dict.fromkeys((".", str(here))):
        for file in files:
            norm = posixpath.normpath(posixpath.join(base, file))
            if norm != ".." and not norm.startswith("../"):
                inside.append(norm)
    if not inside:
        return [], f"{name!r} leaves the source folder {root}; not read"
    return list(dict.fromkeys(inside)), None


def _is_folder(root: Path, name: str) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(root / name).st_mode)
    except (OSError, ValueError):
        return False


def _read_input(root: Path, names: list[str], shown: str) -> tuple[str | None, bytes, str]:
    """The first of ``names`` that is a file below ``root`` and its bytes, or (None, b"", why not)."""
    for name in names:
        try:
            return name, read_file(root, name, max_bytes=MAX_FILE_BYTES), ""
        except (FileNotFoundError, NotADirectoryError):
            continue
        except UnsafeFileError as exc:
            if _is_folder(root, name):
                continue  # \input{sections} beside a folder sections/: LaTeX tries the next name too
            return None, b"", f"{exc.strerror}; not read"
        except (OSError, ValueError) as exc:  # a name too long, a NUL in it, no permission
            return None, b"", f"{shown!r} cannot be read ({getattr(exc, 'strerror', None) or exc}); not read"
    return None, b"", f"{shown!r} not found in {root}"


def flatten(main: Path, *, root: Path | None = None, named: bool = False) -> LatexReading:
    """The source of ``main`` with every file it inputs spliced in (comments dropped), and the record.

    Every file is read below ``root`` (default: main's folder) through ``read_source_file``; ``named``:
    ``main`` is the file the user gave (followed as named). The files, the bytes read, the inputs
    followed and the flattened text are all bounded; what was left out is recorded.
    """
    root = root or main.parent
    try:
        main_rel = PurePosixPath(main.relative_to(root).as_posix())
    except ValueError:
        root, main_rel = main.parent, PurePosixPath(main.name)
    root = root.resolve()  # the user's path to the folder (theirs to follow); nothing below it is followed
    reading = LatexReading(title=None, text="")
    state = {"chars": 0, "bytes": 0, "inputs": 0}
    stopped: set[str] = set()

    def stop_once(why: str) -> None:
        if why not in stopped:
            stopped.add(why)
            reading.warnings.append(why)

    def read(rel: PurePosixPath, raw: bytes, stack: tuple[str, ...]) -> str:
        state["bytes"] += len(raw)
        text = strip_comments(raw.decode("utf-8", errors="replace"))
        reading.files.append(str(rel))
        state["chars"] += len(text)
        if state["chars"] > MAX_SOURCE_CHARS:
            stop_once(f"the source is over {MAX_SOURCE_CHARS} characters; the rest was not read")
            text = text[: max(0, MAX_SOURCE_CHARS - (state["chars"] - len(text)))]

        def splice(m: re.Match[str]) -> str:
            cmd, name = m.group("cmd"), m.group("arg") or m.group("bare") or ""
            if cmd in ("import", "subimport"):
                folder = m.group("dir") or ""
                name = (
                    posixpath.join(folder, name) if cmd == "import" else posixpath.join(str(rel.parent), folder, name)
                )
            shown = f"\\{cmd}{{{name}}} in {rel}"
            state["inputs"] += 1
            if state["inputs"] > MAX_INPUTS:
                stop_once(f"over {MAX_INPUTS} \\input commands; the rest were not read")
                return ""
            if state["chars"] >= MAX_SOURCE_CHARS or state["bytes"] >= MAX_READ_BYTES:
                stop_once(
                    f"the source is over {MAX_SOURCE_CHARS} characters or {MAX_READ_BYTES} bytes; the rest was not read"
                )
                return ""
            names, why = _input_names(name, rel.parent, root)
            target, data, why = _read_input(root, names, name.strip()) if why is None else (None, b"", why)
            if target is None:
                reading.warn(f"{shown}: {why}")
                return ""
            if target in stack or len(stack) >= MAX_INPUT_DEPTH:
                reading.warn(f"{shown}: inputs itself or nests too deep; not read again")
                return ""
            body = read(PurePosixPath(target), data, (*stack, target))
            if cmd == "subfile":  # a standalone file: its document body only
                body = _document_body(body)
            return ("\n\\clearpage\n" if cmd == "include" else "") + body + "\n"

        return _INPUT.sub(splice, text)

    raw = (
        read_named(main, max_bytes=MAX_FILE_BYTES)
        if named
        else read_file(root, str(main_rel), max_bytes=MAX_FILE_BYTES)
    )
    reading.text = read(main_rel, raw, (str(main_rel),))
    reading.close_warnings()
    return reading


def _document_body(text: str) -> str:
    begin = text.find("\\begin{document}")
    if begin == -1:
        return text
    return text[begin + len("\\begin{document}") :].split("\\end{document}")[0]


# -- groups and macros --------------------------------------------------------------------------------


def group_ends(text: str, open_: str = "{", close: str = "}") -> dict[int, int]:
    """Where the groups of ``text`` end: the index of each unescaped ``open_`` mapped to that of its
    matching ``close`` (unmatched ones left out). One pass, so no group is ever looked for twice: an
    unbalanced brace used to be rescanned to the end of the text at every definition after it."""
    ends: dict[int, int] = {}
    stack: list[int] = []
    for m in re.finditer(r"\\.|" + re.escape(open_) + "|" + re.escape(close), text, flags=re.S):
        token = m.group()
        if token == open_:
            stack.append(m.start())
        elif token == close and stack:
            ends[stack.pop()] = m.start()
    return ends


class Groups:
    """The balanced groups of one text, matched once per kind of bracket and then looked up in O(1)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._ends: dict[str, dict[int, int]] = {}

    def at(self, i: int, open_: str = "{", close: str = "}") -> tuple[str, int] | None:
        """The group starting at ``text[i]`` (which must be ``open_``): its content and the index after it."""
        text = self.text
        if i >= len(text) or text[i] != open_:
            return None
        ends = self._ends.get(open_)
        if ends is None:
            ends = self._ends[open_] = group_ends(text, open_, close)
        j = ends.get(i)
        return None if j is None else (text[i + 1 : j], j + 1)


def _group(text: str, i: int, open_: str = "{", close: str = "}") -> tuple[str, int] | None:
    """The balanced group starting at ``text[i]`` (which must be ``open_``): its content and the index after it."""
    return Groups(text).at(i, open_, close)


_SPACE = re.compile(r"[ \t\n]*")
_CONTROL_WORD = re.compile(r"\\([A-Za-z@]+)")


def _skip_space(text: str, i: int) -> int:
    match = _SPACE.match(text, i)
    return match.end() if match else i


def _control_word(text: str, i: int) -> tuple[str, int] | None:
    """The control word at ``text[i]`` (a backslash and letters), e.g. ``('datanet', i + 8)``."""
    m = _CONTROL_WORD.match(text, i)
    return (m.group(1), m.end()) if m else None


def _one_argument(groups: Groups, i: int) -> tuple[str, int] | None:
    """A macro argument at ``text[i]``: a braced group, a control sequence or one character."""
    text = groups.text
    i = _skip_space(text, i)
    if i >= len(text):
        return None
    if text[i] == "{":
        return groups.at(i)
    if text[i] == "\\":
        word = _control_word(text, i)
        return (text[i : word[1]], word[1]) if word else (text[i : i + 2], i + 2)
    return text[i], i + 1


def collect_macros(text: str) -> tuple[dict[str, Macro], str]:
    """The macros ``text`` defines, and ``text`` without their definitions."""
    macros: dict[str, Macro] = {}
    out, pos = [], 0
    groups = Groups(text)
    head = re.compile(r"\\(newcommand|renewcommand|providecommand|DeclareRobustCommand|DeclareMathOperator|def|let)\*?")
    for m in head.finditer(text):
        if m.start() < pos:
            continue
        parsed = _definition(groups, m)
        if parsed is None:
            continue
        name, macro, end, kind = parsed
        out.append(text[pos : m.start()])
        pos = end
        if "@" in name or "@" in macro.body or (kind != "newcommand" and name in _STRUCTURAL):
            continue  # layout internals, or a redefinition of structure: not expanded
        if kind == "providecommand" and name in macros:
            continue
        macros[name] = macro
    out.append(text[pos:])
    return macros, "".join(out)


def _definition(groups: Groups, m: re.Match[str]) -> tuple[str, Macro, int, str] | None:
    """Parse the definition starting at match ``m``: name, macro, end index, kind; None if malformed."""
    text = groups.text
    kind, i = m.group(1), _skip_space(text, m.end())
    if kind == "let":  # \let\a\b or \let\a=\b
        first = _control_word(text, i)
        if not first:
            return None
        j = _skip_space(text, first[1])
        j = _skip_space(text, j + 1) if j < len(text) and text[j] == "=" else j
        second = _control_word(text, j)
        return (first[0], Macro(0, None, "\\" + second[0]), second[1], kind) if second else None
    if kind == "def":
        word = _control_word(text, i)
        if not word:
            return None
        params = re.compile(r"(?:#\d)*").match(text, word[1])
        j = params.end() if params else word[1]
        body = groups.at(j)
        return (
            (word[0], Macro(len(params.group(0)) // 2 if params else 0, None, body[0]), body[1], kind) if body else None
        )
    braced = groups.at(i)
    if braced:
        name = braced[0].strip().lstrip("\\")
        j = braced[1]
    else:
        word = _control_word(text, i)
        if not word:
            return None
        name, j = word
    if not re.fullmatch(r"[A-Za-z@]+", name):
        return None
    if kind == "DeclareMathOperator":
        body = groups.at(_skip_space(text, j))
        return (name, Macro(0, None, body[0]), body[1], kind) if body else None
    nargs, default = 0, None
    j = _skip_space(text, j)
    if j < len(text) and text[j] == "[":
        count = groups.at(j, "[", "]")
        if not count or not count[0].strip().isdigit():
            return None
        nargs, j = int(count[0]), _skip_space(text, count[1])
        if j < len(text) and text[j] == "[":
            opt = groups.at(j, "[", "]")
            if not opt:
                return None
            default, j = opt[0], _skip_space(text, opt[1])
    body = groups.at(j)
    return (name, Macro(nargs, default, body[0]), body[1], kind) if body else None


def expand_macros(text: str, macros: dict[str, Macro], *, limit: int | None = None) -> tuple[str, bool]:
    """``text`` with the given macros expanded (recursively, as TeX would); True if the output limit
    (default: ten times the input plus a megabyte, at most ``MAX_CONVERT_CHARS``, against
    self-multiplying macros) cut it short."""
    if not macros:
        return text, False
    budget = [limit if limit is not None else min(10 * len(text) + 1_000_000, MAX_CONVERT_CHARS)]
    cut = [False]

    def run(src: str, depth: int) -> str:
        out: list[str] = []
        groups = Groups(src)  # matched once, on the first argument looked for
        i = 0
        while i < len(src):
            j = src.find("\\", i)
            if j == -1:
                out.append(src[i:])
                break
            out.append(src[i:j])
            word = _control_word(src, j)
            if word is None:  # a control symbol such as \\ or \%
                out.append(src[j : j + 2])
                i = j + 2
                continue
            name, end = word
            macro = macros.get(name)
            if macro is None or depth >= MAX_EXPANSION_DEPTH or cut[0]:
                out.append(src[j:end])
                i = end
                continue
            args, k = [], end
            if macro.default is not None:
                k2 = _skip_space(src, k)
                opt = groups.at(k2, "[", "]") if k2 < len(src) and src[k2] == "[" else None
                args.append(opt[0] if opt else macro.default)
                k = opt[1] if opt else k
            while len(args) < macro.nargs:
                arg = _one_argument(groups, k)
                if arg is None:
                    break
                args.append(arg[0])
                k = arg[1]
            if sum(map(len, args)) * max(1, macro.body.count("#")) + len(macro.body) > budget[0]:
                cut[0] = True  # the body would outgrow what is left: not even built
                out.append(src[j:k])
                i = k
                continue
            body = _substitute(macro.body, args)
            budget[0] -= len(body)
            if budget[0] < 0:
                cut[0] = True
                out.append(src[j:k])
            else:
                out.append(run(body, depth + 1))
            i = k
        return "".join(out)

    return run(text, 0), cut[0]


def _substitute(body: str, args: list[str]) -> str:
    """A macro body with ``#1`` ... ``#9`` replaced by the arguments (a missing one by nothing)."""

    def arg(m: re.Match[str]) -> str:
        n = int(m.group(1))
        return args[n - 1] if 0 < n <= len(args) else ""

    return re.sub(r"#(\d)", arg, body)


_VERBATIM = re.compile(
    r"\\begin\{(verbatim\*?|Verbatim|lstlisting|minted|listing|code)\}(?:\[[^\]]{0,500}\])?(?:\{[^}]{0,500}\})?"
)


def _verbatim_blocks(text: str) -> tuple[str, list[str]]:
    """Verbatim-like environments replaced by placeholders (restored after conversion), and their contents.
    One pass: an environment without its ``\\end`` is looked for once, not once per ``\\begin``."""
    blocks: list[str] = []
    out, pos, search = [], 0, 0
    unclosed: set[str] = set()
    while m := _VERBATIM.search(text, search):
        env = m.group(1)
        end_tag = f"\\end{{{env}}}"
        stop = -1 if env in unclosed else text.find(end_tag, m.end())
        if stop == -1:
            unclosed.add(env)
            search = m.end()
            continue
        blocks.append(text[m.end() : stop].strip("\n"))
        out.append(text[pos : m.start()] + f" FARSVERBATIM{len(blocks) - 1}Z ")
        pos = search = stop + len(end_tag)
    out.append(text[pos:])
    return "".join(out), blocks


def limit_nesting(text: str, limit: int = MAX_NESTING) -> tuple[str, int]:
    """``text`` with braces and ``\\begin``/``\\end`` pairs nested deeper than ``limit`` flattened (each
    replaced by a space, what they hold kept), and how many were: pylatexenc recurses once per level
    and a few hundred levels end in ``RecursionError``. One pass."""
    out, pos, flattened = [], 0, 0
    stack: list[bool] = []
    for m in re.finditer(r"\\(?:begin|end)\s*\{[^{}]{0,80}\}|\\.|[{}]", text, flags=re.S):
        token = m.group()
        if token == "{" or token.startswith("\\begin"):
            drop = len(stack) >= limit
            stack.append(drop)
        elif token == "}" or token.startswith("\\end"):
            drop = stack.pop() if stack else False
        else:
            continue
        if drop:
            out.append(text[pos : m.start()] + " ")
            pos = m.end()
            flattened += 1
    out.append(text[pos:])
    return "".join(out), flattened


class _Converter:
    """The pylatexenc context for one document: headings numbered as LaTeX does, the appendix lettered."""

    def __init__(self) -> None:
        from pylatexenc import latexwalker, macrospec
        from pylatexenc.latex2text import (
            EnvironmentTextSpec,
            LatexNodes2Text,
            MacroTextSpec,
            SpecialsTextSpec,
            get_default_latex_context_db,
        )

        self.counters = [0, 0, 0]
        self.appendix = False
        wdb = latexwalker.get_default_latex_context_db()
        macro_args = {
            "section": "*[{",
            "subsection": "*[{",
            "subsubsection": "*[{",
            "paragraph": "*[{",
            "subparagraph": "*[{",
            "chapter": "*[{",
            "texttt": "{",
            "textsf": "{",
            "textsc": "{",
            "textrm": "{",
            "textup": "{",
            "textmd": "{",
            "textsl": "{",
            "textnormal": "{",
            "mbox": "{",
            "text": "{",
            "underline": "{",
            "uline": "{",
            "hl": "{",
            "textcolor": "[{{",
            "colorbox": "[{{",
            "href": "{{",
            "url": "{",
            "cite": "*[[{",
            "citep": "*[[{",
            "citet": "*[[{",
            "citealp": "*[[{",
            "citealt": "*[[{",
            "citeauthor": "*[[{",
            "citeyear": "*[[{",
            "citeyearpar": "*[[{",
            "parencite": "*[[{",
            "textcite": "*[[{",
            "autocite": "*[[{",
            "ref": "{",
            "eqref": "{",
            "cref": "*{",
            "Cref": "*{",
            "autoref": "*{",
            "pageref": "{",
            "label": "{",
            "includegraphics": "*[[{",
            "caption": "*[{",
            "subcaption": "[{",
            "captionof": "*{[{",
            "footnote": "[{",
            "footnotetext": "[{",
            "marginpar": "[{",
            "todo": "[{",
            "vspace": "*{",
            "hspace": "*{",
            "setlength": "{{",
            "addtolength": "{{",
            "bibliography": "{",
            "bibliographystyle": "{",
            "printbibliography": "[",
            "multicolumn": "{{{",
            "multirow": "[{[{",
            "resizebox": "*{{{",
            "scalebox": "{[{",
            "rotatebox": "[{{",
            "ding": "{",
            "bibitem": "[{",
            "appendix": "",
            "maketitle": "",
            "toprule": "[",
            "midrule": "[",
            "bottomrule": "[",
            "hline": "",
            "cline": "{",
            "newline": "",
            "linebreak": "[",
            "thanks": "{",
            "iclrfinalcopy": "",
            "thispagestyle": "{",
            "pagestyle": "{",
            "State": "",
            "Require": "",
            "Ensure": "",
            "Return": "",
        }
        wdb.add_context_category(
            "fars-review",
            prepend=True,
            macros=[macrospec.MacroSpec(name, args) for name, args in macro_args.items()],
            environments=[
                macrospec.EnvironmentSpec("figure", "["),
                macrospec.EnvironmentSpec("figure*", "["),
                macrospec.EnvironmentSpec("table", "["),
                macrospec.EnvironmentSpec("table*", "["),
                macrospec.EnvironmentSpec("tabular", "[{"),
                macrospec.EnvironmentSpec("tabular*", "{[{"),
                macrospec.EnvironmentSpec("tabularx", "{{"),
                macrospec.EnvironmentSpec("longtable", "[{"),
                macrospec.EnvironmentSpec("thebibliography", "{"),
                macrospec.EnvironmentSpec("wrapfigure", "[{[{"),
                macrospec.EnvironmentSpec("subfigure", "[{"),
                macrospec.EnvironmentSpec("minipage", "[[[{"),
            ],
        )
        self.walker_db = wdb

        def arg_text(node: Any, l2tobj: Any, index: int) -> str:
            args = node.nodeargd.argnlist if node.nodeargd else []
            arg = args[index] if index < len(args) else None
            return l2tobj.nodelist_to_text([arg]).strip() if arg is not None else ""

        def arg_verbatim(node: Any, index: int) -> str:
            args = node.nodeargd.argnlist if node.nodeargd else []
            arg = args[index] if index < len(args) else None
            if arg is None:
                return ""
            raw = arg.latex_verbatim()
            return raw[1:-1] if raw.startswith("{") and raw.endswith("}") else raw

        def heading(level: int) -> Any:
            def make(node: Any, l2tobj: Any) -> str:
                starred = bool(node.nodeargd and node.nodeargd.argnlist and node.nodeargd.argnlist[0] is not None)
                title = " ".join(arg_text(node, l2tobj, 2).split())
                if level < 3 and not starred:
                    self.counters[level] += 1
                    self.counters[level + 1 :] = [0] * (2 - level)
                    first = chr(ord("A") + self.counters[0] - 1) if self.appendix else str(self.counters[0])
                    title = ".".join([first, *map(str, self.counters[1 : level + 1])]) + " " + title
                return "\n\n" + "#" * (level + 2) + " " + title + "\n\n"

            return make

        def start_appendix(node: Any, l2tobj: Any) -> str:
            self.appendix, self.counters = True, [0, 0, 0]
            return "\n\n"

        def cite(node: Any, l2tobj: Any) -> str:
            keys = ", ".join(k.strip() for k in arg_verbatim(node, 3).split(",") if k.strip())
            return f"[{keys}]" if keys else ""

        def ref(index: int) -> Any:
            return lambda node, l2tobj: f"[{arg_verbatim(node, index).strip()}]"

        def caption(node: Any, l2tobj: Any) -> str:
            return "\nCaption: " + " ".join(arg_text(node, l2tobj, 2).split()) + "\n"

        def figure(node: Any, l2tobj: Any) -> str:  # a figure is its captions; drawings and images are not text
            captions = [
                n for n in _walk(node.nodelist) if n.isNodeType(latexwalker.LatexMacroNode) and n.macroname == "caption"
            ]
            return "".join("\nFigure: " + " ".join(arg_text(c, l2tobj, 2).split()) + "\n" for c in captions)

        def tabular(node: Any, l2tobj: Any) -> str:
            body = l2tobj.nodelist_to_text(node.nodelist)
            rows = [" | ".join(" ".join(c.split()) for c in row.split("\x00")) for row in body.split("\x01")]
            return "\n" + "\n".join(r for r in rows if r.strip(" |")) + "\n"

        def bibitem(node: Any, l2tobj: Any) -> str:
            return f"\n- [{arg_verbatim(node, 1).strip()}] "

        def footnote(node: Any, l2tobj: Any) -> str:
            return f" (footnote: {' '.join(arg_text(node, l2tobj, 1).split())})"

        def keep(index: int) -> Any:
            return lambda node, l2tobj: arg_text(node, l2tobj, index)

        def ding(node: Any, l2tobj: Any) -> str:  # pifont's check marks and crosses
            return {"51": "✓", "52": "✓", "55": "✗", "56": "✗"}.get(arg_verbatim(node, 0).strip(), "")

        discard = [
            "label",
            "includegraphics",
            "vspace",
            "hspace",
            "setlength",
            "addtolength",
            "bibliographystyle",
            "marginpar",
            "todo",
            "maketitle",
            "toprule",
            "midrule",
            "bottomrule",
            "hline",
            "cline",
            "thanks",
            "iclrfinalcopy",
            "centering",
            "clearpage",
            "newpage",
            "tableofcontents",
            "noindent",
            "small",
            "footnotesize",
            "scriptsize",
            "tiny",
            "large",
            "Large",
            "LARGE",
            "normalsize",
            "bigskip",
            "medskip",
            "smallskip",
            "vfill",
            "hfill",
            "raggedright",
            "flushbottom",
            "thispagestyle",
            "pagestyle",
        ]
        keep_arg = {
            "texttt": 0,
            "textsf": 0,
            "textsc": 0,
            "textrm": 0,
            "textup": 0,
            "textmd": 0,
            "textsl": 0,
            "textnormal": 0,
            "mbox": 0,
            "text": 0,
            "underline": 0,
            "uline": 0,
            "hl": 0,
            "textcolor": 2,
            "colorbox": 2,
            "multicolumn": 2,
            "multirow": 4,
            "resizebox": 3,
            "scalebox": 2,
            "rotatebox": 2,
        }
        macros = [MacroTextSpec(name, discard=True) for name in discard]
        macros += [MacroTextSpec(n, simplify_repl=keep(i)) for n, i in keep_arg.items()]
        macros += [
            MacroTextSpec(n, simplify_repl=heading(lv))
            for lv, n in enumerate(("section", "subsection", "subsubsection"))
        ]
        macros += [MacroTextSpec(n, simplify_repl=heading(3)) for n in ("paragraph", "subparagraph")]
        macros += [
            MacroTextSpec("appendix", simplify_repl=start_appendix),
            MacroTextSpec("caption", simplify_repl=caption),
            MacroTextSpec("footnote", simplify_repl=footnote),
            MacroTextSpec("footnotetext", simplify_repl=footnote),
            MacroTextSpec(
                "href", simplify_repl=lambda node, l2tobj: f"{arg_text(node, l2tobj, 1)} ({arg_verbatim(node, 0)})"
            ),
            MacroTextSpec("url", simplify_repl=lambda node, l2tobj: arg_verbatim(node, 0)),
            MacroTextSpec("bibitem", simplify_repl=bibitem),
            MacroTextSpec("bibliography", simplify_repl=lambda node, l2tobj: "\n\n## References\n\n"),
            MacroTextSpec("printbibliography", simplify_repl=lambda node, l2tobj: "\n\n## References\n\n"),
            MacroTextSpec("item", simplify_repl="\n- "),
            MacroTextSpec("ding", simplify_repl=ding),
            MacroTextSpec("State", simplify_repl="\n"),
            MacroTextSpec("newline", simplify_repl="\n"),
            MacroTextSpec("\\", simplify_repl="\x01"),
        ]
        macros += [MacroTextSpec(n, simplify_repl=cite) for n in macro_args if "cite" in n]
        macros += [
            MacroTextSpec(n, simplify_repl=ref(1 if macro_args[n].startswith("*") else 0))
            for n in ("ref", "eqref", "cref", "Cref", "autoref", "pageref")
        ]
        environments = [
            EnvironmentTextSpec(env, simplify_repl=figure) for env in ("figure", "figure*", "wrapfigure", "subfigure")
        ]
        environments += [
            EnvironmentTextSpec(env, simplify_repl=tabular) for env in ("tabular", "tabular*", "tabularx", "longtable")
        ]
        environments += [
            EnvironmentTextSpec(env, discard=True)
            for env in ("tikzpicture", "pgfpicture", "axis", "comment", "filecontents", "filecontents*")
        ]
        environments += [
            EnvironmentTextSpec(
                "abstract",
                simplify_repl=lambda node, l2tobj: (
                    "\n\n## Abstract\n\n" + l2tobj.nodelist_to_text(node.nodelist) + "\n\n"
                ),
            )
        ]
        environments += [
            EnvironmentTextSpec(
                "thebibliography",
                simplify_repl=lambda node, l2tobj: (
                    "\n\n## References\n\n" + l2tobj.nodelist_to_text(node.nodelist) + "\n\n"
                ),
            )
        ]
        db = get_default_latex_context_db()
        db.add_context_category(
            "fars-review",
            prepend=True,
            macros=macros,
            environments=environments,
            specials=[SpecialsTextSpec("&", simplify_repl="\x00"), SpecialsTextSpec("~", simplify_repl=" ")],
        )
        self.l2t = LatexNodes2Text(latex_context=db, math_mode="verbatim", strict_latex_spaces=False)

    def to_text(self, latex: str) -> str:
        """``latex`` as text (a fragment or a whole body)."""
        from pylatexenc.latexwalker import LatexWalker

        nodes = LatexWalker(latex, latex_context=self.walker_db, tolerant_parsing=True).get_latex_nodes()[0]
        return str(self.l2t.nodelist_to_text(nodes))


def _walk(nodes: Any) -> Any:
    """Every node under ``nodes``, depth first (arguments and group contents included)."""
    for node in nodes or []:
        if node is None:
            continue
        yield node
        yield from _walk(getattr(node, "nodelist", None) or [])
        argd = getattr(node, "nodeargd", None)
        if argd is not None and argd.argnlist:
            yield from _walk([a for a in argd.argnlist if a is not None])


def _tidy(text: str) -> str:
    """Whitespace as in a Markdown file: row separators restored, trailing spaces and runs of blank lines gone."""
    text = text.replace("\x01", "\n").replace("\x00", " | ")
    lines = [re.sub(r"[ \t]+", " ", line).strip() for line in text.splitlines()]
    return re.sub(r"\n\s*\n(\s*\n)+", "\n\n", "\n".join(lines)).strip()


def _find_command_argument(text: str, name: str) -> str | None:
    """The braced argument of the first ``\\name[...]{...}`` in ``text``."""
    m = re.search(rf"\\{name}\*?\s*(\[[^\]]{{0,500}}\]\s*)?(?=\{{)", text)
    if not m:
        return None
    group = _group(text, m.end())
    return group[0] if group else None


def _plain(latex: str) -> str:
    """LaTeX as rough text (control words, braces and math signs dropped), for a source pylatexenc cannot take."""
    return re.sub(r"\\[A-Za-z@]+\*?|[{}$]", " ", latex)


def _to_text(converter: _Converter, latex: str, warnings: list[str]) -> str:
    """``converter.to_text``, falling back to rough text where pylatexenc's recursion still runs out."""
    try:
        return converter.to_text(latex)
    except RecursionError:
        warnings.append("the LaTeX nests too deeply for the converter; read as rough text")
        return _plain(latex)


def latex_to_markdown(source: str, *, bbl: str | None = None) -> tuple[str | None, str, list[str]]:
    """A flattened LaTeX source as (title, Markdown-like text, warnings); ``bbl`` is the compiled bibliography."""
    warnings: list[str] = []
    macros, source = collect_macros(source)
    source, cut = expand_macros(source, macros)
    if cut:
        warnings.append("the source's macros expand without end; expansion was stopped")
    if len(source) > MAX_CONVERT_CHARS:
        warnings.append(f"the source is over {MAX_CONVERT_CHARS} characters once expanded; the rest was not read")
        source = source[:MAX_CONVERT_CHARS]
    source, blocks = _verbatim_blocks(source)
    source, flattened = limit_nesting(source)
    if flattened:
        warnings.append(f"{flattened} braces or environments nested over {MAX_NESTING} deep were flattened")
    begin = source.find("\\begin{document}")
    preamble, body = (source[:begin], source[begin + len("\\begin{document}") :]) if begin != -1 else ("", source)
    body = body.split("\\end{document}")[0]
    if begin == -1:
        warnings.append("no \\begin{document}: read as a fragment")
    start = preamble.find("\\begin{abstract}")  # some classes take it early
    stop = preamble.find("\\end{abstract}", start) if start != -1 else -1
    if stop != -1 and "\\begin{abstract}" not in body:
        body = preamble[start : stop + len("\\end{abstract}")] + "\n" + body
    if bbl and len(bbl) > MAX_BBL_CHARS:
        warnings.append(f"the bibliography (.bbl) is over {MAX_BBL_CHARS} characters; the rest was not read")
        bbl = bbl[:MAX_BBL_CHARS]
    if bbl and "\\begin{thebibliography}" not in body:
        bbl = limit_nesting(bbl)[0]
        body = re.sub(
            r"\\(bibliography|printbibliography)(\[[^\]]{0,500}\])?(\{[^{}]{0,2000}\})?", lambda _: bbl, body, count=1
        )
    body = re.sub(r"\\cmidrule(\([^)]{0,100}\))?\{[^}]{0,100}\}", "", body)
    converter = _Converter()
    raw_title = _find_command_argument(preamble, "title") or _find_command_argument(body, "title")
    title = " ".join(_to_text(converter, raw_title.replace("\\\\", " "), warnings).split()) if raw_title else None
    if raw_title and "\\title" in body:
        body = re.sub(r"\\title\*?\s*(\[[^\]]{0,500}\])?", "", body, count=1).replace("{" + raw_title + "}", "", 1)
    body = re.sub(r"\\author\*?\s*(\[[^\]]{0,500}\])?\s*(?=\{)", r"\\FARSauthor", body)
    body = _strip_command(body, "FARSauthor")
    text = _tidy(_to_text(converter, body, warnings))
    if blocks:
        text = re.sub(
            r"FARSVERBATIM(\d+)Z",
            lambda m: "\n```\n" + blocks[int(m.group(1))] + "\n```\n" if int(m.group(1)) < len(blocks) else m.group(0),
            text,
        )
    if title:
        text = f"# {title}\n\n{text}"
    return title, text, warnings


def _strip_command(text: str, name: str) -> str:
    """``text`` without every ``\\name{...}`` (its balanced argument included)."""
    out, pos = [], 0
    groups = Groups(text)
    for m in re.finditer(rf"\\{name}(?![A-Za-z])", text):
        if m.start() < pos:
            continue
        group = groups.at(_skip_space(text, m.end()))
        out.append(text[pos : m.start()])
        pos = group[1] if group else m.end()
    out.append(text[pos:])
    return "".join(out)


def read_latex(path: Path, *, root: Path | None = None, named: bool = False) -> LatexReading:
    """Read a LaTeX paper: its inputs followed, macros expanded, converted to text; see the module doc.

    ``root`` is the source folder (default: the file's folder); ``named``: ``path`` is the file the user
    gave (followed as named). The compiled bibliography (``.bbl`` beside the main file) is read the
    same way; one that is a link, a FIFO or too large is refused and recorded.
    """
    root = root or path.parent
    reading = flatten(path, root=root, named=named)
    try:
        bbl_rel = PurePosixPath(path.relative_to(root).as_posix()).with_suffix(".bbl")
    except ValueError:
        root, bbl_rel = path.parent, PurePosixPath(path.with_suffix(".bbl").name)
    bbl: str | None = None
    try:
        bbl = read_source_file(root, bbl_rel)
    except (FileNotFoundError, NotADirectoryError):
        pass
    except (OSError, ValueError) as exc:
        reading.warnings.append(f"{bbl_rel}: {getattr(exc, 'strerror', None) or exc}; not read")
    title, text, warnings = latex_to_markdown(reading.text, bbl=bbl)
    reading.title, reading.text = title, text
    reading.warnings += warnings
    if bbl is not None:
        reading.files.append(str(bbl_rel))
    return reading


def is_main_file(text: str) -> bool:
    """Whether a .tex file's text is a document of its own (``\\documentclass`` or ``\\begin{document}``)."""
    text = strip_comments(text)
    return bool(re.search(r"\\documentclass|\\begin\{document\}", text))


MAIN_NAMES = ("main", "paper", "ms", "manuscript", "article", "root")


def find_main_tex(folder: Path) -> tuple[Path | None, list[Path]]:
    """The main .tex file of a source folder (the one that is a document; by conventional name when
    several are), and every candidate found (for the error message when none can be chosen).

    The folder is searched ``FOLDER_DEPTH`` levels down by ``source_files`` (links never followed) and
    each .tex file read by ``read_source_file``: one that is refused is no candidate."""
    candidates: list[Path] = []
    with_body: set[Path] = set()
    names = [name for name in source_files(folder) if name.endswith(".tex")]
    for name in names[:MAX_MAIN_READS]:
        try:
            text = read_source_file(folder, name)
        except (OSError, ValueError):
            continue
        if is_main_file(text[:200_000]):
            candidates.append(folder / name)
            if "\\begin{document}" in text:
                with_body.add(folder / name)
    top = [c for c in candidates if c.parent == folder] or candidates
    if len(top) == 1:
        return top[0], candidates
    named = [c for c in top if c.stem.lower() in (*MAIN_NAMES, folder.name.lower())]
    if len(named) == 1:
        return named[0], candidates
    named = [c for c in top if c in with_body and c.stem.lower() in MAIN_NAMES]
    return (named[0] if len(named) == 1 else None), candidates
