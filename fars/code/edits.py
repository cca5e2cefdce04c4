"""Model-written edits to a working copy of a template: parsed, checked, applied, shown as a diff.

A reply edits files by name, in the formats capable models follow best:

* search/replace blocks: the file's path on a line of its own, then ::

      <<<<<<< SEARCH
      lines as they are now
      =======
      lines to put in their place
      >>>>>>> REPLACE

* a whole file: the path on a line of its own, then the file's new contents in one fenced block.

Only the template's ``editable`` files and new Python files beside them (``method.py``, ``helpers.py``)
may be written; a path that leaves the copy, names a folder, or touches anything else is refused, and
the reason goes back to the model. Every changed Python file must parse.
"""

from __future__ import annotations

import ast
import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

_BLOCK = re.compile(
    r"(?P<path>[^\n`<>=]*?)\s*\n(?:```[a-z]*\n)?<<<<<<< SEARCH\n(?P<search>.*?)\n?=======\n(?P<replace>.*?)\n?>>>>>>> REPLACE",
    re.DOTALL,
)
_WHOLE = re.compile(r"(?:^|\n)(?P<path>[\w./-]+\.\w+)[ \t]*:?[ \t]*\n```[\w+-]*\n(?P<body>.*?)\n```", re.DOTALL)
_NEW_FILE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\.py")
MAX_FILE_BYTES = 200_000


class EditError(ValueError):
    """An edit that cannot be applied; the message says why, for the model to fix."""


@dataclass(frozen=True)
class Edit:
    """One change: a search/replace in a file, or a file's whole new contents (``search`` None)."""

    path: str
    search: str | None
    replace: str

    def label(self) -> str:
        """A short name for tables and ablations: 'train.py: replace 3 lines' or 'method.py: whole file'."""
        if self.search is None:
            return f"{self.path}: whole file"
        return f"{self.path}: replace {self.search.count(chr(10)) + 1} line(s)"


@dataclass
class Applied:
    """The files an edit set produced, and what was refused or broken."""

    files: dict[str, str] = field(default_factory=dict)  # path -> new contents (changed files only)
    problems: list[str] = field(default_factory=list)


def parse_edits(reply: str) -> list[Edit]:
    """Every edit in a model's reply (search/replace blocks first, then whole files), in order."""
    edits: list[Edit] = []
    covered: list[tuple[int, int]] = []
    for m in _BLOCK.finditer(reply):
        path = m.group("path").strip().strip("`*:").strip()
        path = path.split()[-1] if path else ""
        edits.append(Edit(path=path, search=m.group("search"), replace=m.group("replace")))
        covered.append(m.span())
    for m in _WHOLE.finditer(reply):
        if any(a <= m.start() < b for a, b in covered):
            continue
        edits.append(Edit(path=m.group("path"), search=None, replace=m.group("body") + "\n"))
    return edits


def allowed_path(path: str, editable: list[str]) -> str | None:
    """Why ``path`` may not be written (None when it may): outside the copy, not editable, not a new .py."""
    if not path:
        return "an edit names no file; put the file's path on the line before its block"
    pure = PurePosixPath(path)
    if pure.is_absolute() or ".." in pure.parts or "\\" in path or path.startswith("~"):
        return f"{path!r} leaves the working copy; name a file of the template by its relative path"
    if path in editable:
        return None
    if len(pure.parts) == 1 and _NEW_FILE.fullmatch(path) and path not in ("template.yaml", "__init__.py"):
        return None  # a new module beside the entry point (e.g. method.py for --method)
    return f"{path!r} is not one of the files you may edit ({', '.join(editable)}) nor a new .py file beside them"


def apply_edits(edits: list[Edit], current: dict[str, str], editable: list[str]) -> Applied:
    """Apply ``edits`` to ``current`` (path -> contents); what changed, and every refusal or mismatch."""
    out = Applied()
    if not edits:
        out.problems.append(
            "no edit found in the reply; give the file's path, then SEARCH/REPLACE blocks or the whole file in one "
            "fenced block"
        )
        return out
    files = dict(current)
    for edit in edits:
        why = allowed_path(edit.path, editable)
        if why:
            out.problems.append(why)
            continue
        if edit.search is None:
            files[edit.path] = edit.replace
        else:
            text = files.get(edit.path)
            if text is None:
                out.problems.append(f"{edit.path} does not exist yet; write it whole instead of searching in it")
                continue
            if edit.search not in text:
                near = difflib.get_close_matches(edit.search.strip().splitlines()[0] if edit.search.strip() else "",
                                                 text.splitlines(), n=1, cutoff=0.6)  # fmt: skip
                hint = f"; the closest line is {near[0].strip()!r}" if near else ""
                out.problems.append(f"{edit.path}: the SEARCH text is not in the file (it must match exactly){hint}")
                continue
            files[edit.path] = text.replace(edit.search, edit.replace, 1)
        if len(files[edit.path].encode()) > MAX_FILE_BYTES:
            out.problems.append(f"{edit.path} would be over {MAX_FILE_BYTES} bytes")
    out.files = {p: t for p, t in files.items() if current.get(p) != t}
    if not out.files and not out.problems:
        out.problems.append("the edits change nothing")
    for path, text in out.files.items():
        if path.endswith(".py"):
            try:
                ast.parse(text, filename=path)
            except SyntaxError as exc:
                out.problems.append(f"{path}: SyntaxError: {exc.msg} (line {exc.lineno})")
    return out


def unified_diff(before: dict[str, str], after: dict[str, str]) -> str:
    """The changes from ``before`` to ``after`` (path -> contents) as one unified diff."""
    parts: list[str] = []
    for path in sorted(set(before) | set(after)):
        old, new = before.get(path, ""), after.get(path, before.get(path, ""))
        if old == new:
            continue
        parts += difflib.unified_diff(
            old.splitlines(keepends=True), new.splitlines(keepends=True),
            fromfile=f"a/{path}" if path in before else "/dev/null", tofile=f"b/{path}",
        )  # fmt: skip
    return "".join(parts)


def read_editable(folder: Path, editable: list[str]) -> dict[str, str]:
    """The editable files of a template (or working copy) folder, and any new .py files it already has."""
    files = {}
    for name in editable:
        path = folder / name
        if path.is_file() and not path.is_symlink():
            files[name] = path.read_text(encoding="utf-8")
    return files
