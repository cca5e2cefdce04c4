"""Model-written edits to a working copy of a template: parsed, checked, applied, shown as a diff.

A reply edits files by name, in the formats capable models follow best (``fars.code.search.FORMAT``
tells the model exactly this, with an example a test parses):

* search/replace blocks: a line holding only the file's path, then one or more blocks ::

      <<<<<<< SEARCH
      lines as they are now
      =======
      lines to put in their place
      >>>>>>> REPLACE

  A block belongs to the last path named above it, so later blocks of the same file need no path line.
  Blocks apply in order; each SEARCH text must occur exactly once in the file as the earlier blocks left it.
* a whole file: a line holding only the path, then the file's new contents in one fenced block.

A path line may carry markdown decoration (backticks, bold, a heading mark, a trailing colon); a fence
around blocks is allowed. Everything else in a reply is prose and is ignored.

Only the template's ``editable`` files and new Python files beside them (``method.py``, ``helpers.py``)
may be written; a path that leaves the copy, names a folder, or touches anything else is refused, and
the reason goes back to the model. Every changed Python file must parse. A reply applies whole or not at
all: one refused edit leaves every file as it was, so the model is never shown a half-applied file.
"""

from __future__ import annotations

import ast
import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

SEARCH_MARK = "<<<<<<< SEARCH"
DIVIDER_MARK = "======="
REPLACE_MARK = ">>>>>>> REPLACE"
_PATH = re.compile(r"[\w.~/\\-]*[\w-]\.[A-Za-z0-9]+")  # a file name with an extension, maybe a folder before it
_DECORATION = re.compile(r"^(?:#+\s+|[-*]\s+)?(?:(?:file|path)\s*:\s*)?", re.IGNORECASE)  # '## ', '- ', 'File: '
_NEW_FILE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\.py")
MAX_FILE_BYTES = 200_000


@dataclass(frozen=True)
class Edit:
    """One change: a search/replace in a file, or a file's whole new contents (``search`` None).

    ``problem`` is set when the reply held something meant as an edit that cannot be read (a block with
    no ``=======`` line, a fence never closed); such an edit is refused when applied, with that message.
    """

    path: str
    search: str | None
    replace: str
    problem: str = ""

    def label(self) -> str:
        """A short name for tables and ablations: 'train.py: replace 3 lines' or 'method.py: whole file'."""
        if self.problem:
            return f"{self.path or '(no file)'}: unreadable edit"
        if self.search is None:
            return f"{self.path}: whole file"
        return f"{self.path}: replace {self.search.count(chr(10)) + 1} line(s)"


@dataclass
class Applied:
    """The files an edit set produced, and what was refused or broken (then ``files`` is empty)."""

    files: dict[str, str] = field(default_factory=dict)  # path -> new contents (changed files only)
    problems: list[str] = field(default_factory=list)


def path_of(line: str) -> str | None:
    """The file path a line names when it holds nothing else (markdown decoration aside), else None."""
    text = _DECORATION.sub("", line.strip()).strip("*`: \t")
    return text if _PATH.fullmatch(text) else None


def _fence(line: str) -> str | None:
    """The info string of a fence line (``"python"`` for ```python), None for a line that opens no fence."""
    text = line.strip()
    return text[3:].strip() if text.startswith("```") else None


def parse_edits(reply: str) -> list[Edit]:
    """Every edit in a model's reply, in the order written (see the module docstring for the format)."""
    lines = reply.splitlines()
    edits: list[Edit] = []
    path, named_at = "", -1  # the last path named, and the line that named it
    wrapping = False  # inside a fence that wraps blocks (its bare closing line ends it, opening nothing)
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.strip() == SEARCH_MARK:
            edit, i = _block(lines, i, path)
            edits.append(edit)
            continue
        info = _fence(line)
        if info == "" and wrapping:
            wrapping, i = False, i + 1
            continue
        if info is not None:
            end = next((k for k in range(i + 1, len(lines)) if lines[k].strip() == "```"), None)
            body = lines[i + 1 : end]
            if any(b.strip() == SEARCH_MARK for b in body):
                wrapping, i = True, i + 1  # a fence around blocks: read on inside it
                continue
            named = next((p for p in map(path_of, info.split()) if p), None)  # ```python train.py
            adjacent = named_at >= 0 and all(not lines[k].strip() for k in range(named_at + 1, i))
            target = named or (path if adjacent else None)
            if target is not None and end is None:
                problem = f"{target}: its fenced block has no closing ``` line, so the file's end is unknown"
                edits.append(Edit(path=target, search=None, replace="", problem=problem))
            elif target is not None:
                edits.append(Edit(path=target, search=None, replace="\n".join(body) + "\n"))
            i = len(lines) if end is None else end + 1  # a fence under no path is a snippet of prose: skipped
            continue
        named = path_of(line)
        if named is not None:
            path, named_at = named, i
        i += 1
    return edits


def _block(lines: list[str], start: int, path: str) -> tuple[Edit, int]:
    """The SEARCH/REPLACE block opening at ``lines[start]``, and the index of the line after it."""
    marks = {SEARCH_MARK, DIVIDER_MARK, REPLACE_MARK}
    k = start + 1
    while k < len(lines) and lines[k].strip() not in marks:
        k += 1
    search = "\n".join(lines[start + 1 : k])
    where = f"the block at line {start + 1} of your reply" + (f" ({path})" if path else "")
    if k >= len(lines) or lines[k].strip() != DIVIDER_MARK:
        return Edit(path, search, "", problem=f"{where} has no {DIVIDER_MARK} line after its SEARCH lines"), k
    j = k + 1
    while j < len(lines) and lines[j].strip() not in (SEARCH_MARK, REPLACE_MARK):
        j += 1
    replace = "\n".join(lines[k + 1 : j])
    if j >= len(lines) or lines[j].strip() != REPLACE_MARK:
        return Edit(path, search, replace, problem=f"{where} has no {REPLACE_MARK} line"), j
    return Edit(path, search, replace), j + 1


def allowed_path(path: str, editable: list[str]) -> str | None:
    """Why ``path`` may not be written (None when it may): outside the copy, not editable, not a new .py."""
    if not path:
        return "an edit names no file; put the file's path on a line of its own above its first block"
    pure = PurePosixPath(path)
    if pure.is_absolute() or ".." in pure.parts or "\\" in path or path.startswith("~"):
        return f"{path!r} leaves the working copy; name a file of the template by its relative path"
    if path in editable:
        return None
    if len(pure.parts) == 1 and _NEW_FILE.fullmatch(path) and path not in ("template.yaml", "__init__.py"):
        return None  # a new module beside the entry point (e.g. method.py for --method)
    return f"{path!r} is not one of the files you may edit ({', '.join(editable)}) nor a new .py file beside them"


def apply_edits(edits: list[Edit], current: dict[str, str], editable: list[str]) -> Applied:
    """Apply ``edits`` to ``current`` (path -> contents), all or none: the changed files, or every problem."""
    out = Applied()
    if not edits:
        out.problems.append(
            "no edit found in the reply; give the file's path on a line of its own, then SEARCH/REPLACE blocks or "
            "the whole file in one fenced block"
        )
        return out
    files = dict(current)
    for number, edit in enumerate(edits, 1):
        why = edit.problem or allowed_path(edit.path, editable)
        if why:
            out.problems.append(why)
            continue
        if edit.search is None:
            files[edit.path] = edit.replace
        else:
            problem = _replace(files, edit, number)
            if problem:
                out.problems.append(problem)
                continue
        if len(files[edit.path].encode()) > MAX_FILE_BYTES:
            out.problems.append(f"{edit.path} would be over {MAX_FILE_BYTES} bytes")
    changed = {p: t for p, t in files.items() if current.get(p) != t}
    if not changed and not out.problems:
        out.problems.append("the edits change nothing")
    for path, text in changed.items():
        if path.endswith(".py"):
            try:
                ast.parse(text, filename=path)
            except SyntaxError as exc:
                out.problems.append(f"{path}: SyntaxError: {exc.msg} (line {exc.lineno})")
    out.files = {} if out.problems else changed  # all or none: a half-applied reply is no version of anything
    return out


def _replace(files: dict[str, str], edit: Edit, number: int) -> str | None:
    """Apply one search/replace edit to ``files`` in place; why it cannot be applied, or None."""
    assert edit.search is not None
    text = files.get(edit.path)
    which = f"{edit.path}, edit {number}"
    if text is None:
        return f"{which}: the file does not exist yet; write it whole in a fenced block instead of searching in it"
    if not edit.search.strip():
        return f"{which}: the SEARCH part is empty; quote the lines to replace (or write the file whole)"
    count = text.count(edit.search)
    if count == 0:
        first = edit.search.strip().splitlines()[0]
        near = difflib.get_close_matches(first, text.splitlines(), n=1, cutoff=0.6)
        hint = f"; the closest line is {near[0].strip()!r}" if near else ""
        return f"{which}: the SEARCH text is not in the file (it must match exactly, indentation included){hint}"
    if count > 1:
        return f"{which}: the SEARCH text occurs {count} times in the file; quote more lines so it occurs once"
    if not edit.replace and edit.search + "\n" in text:
        files[edit.path] = text.replace(edit.search + "\n", "", 1)  # lines deleted, not left blank
    else:
        files[edit.path] = text.replace(edit.search, edit.replace, 1)
    return None


def unified_diff(before: dict[str, str], after: dict[str, str]) -> str:
    """The changes from ``before`` to ``after`` (path -> contents) as one unified diff."""
    parts: list[str] = []
    for path in sorted(set(before) | set(after)):
        old, new = before.get(path, ""), after.get(path, before.get(path, ""))
        if old == new:
            continue
        parts += difflib.unified_diff(
            old.splitlines(keepends=True),
            new.splitlines(keepends=True),
            fromfile=f"a/{path}" if path in before else "/dev/null",
            tofile=f"b/{path}",
        )
    return "".join(parts)


def read_editable(folder: Path, editable: list[str]) -> dict[str, str]:
    """The editable files of a template (or working copy) folder, and any new .py files it already has."""
    files = {}
    for name in editable:
        path = folder / name
        if path.is_file() and not path.is_symlink():
            files[name] = path.read_text(encoding="utf-8")
    return files
