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
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MAX_SOURCE_CHARS = 20_000_000  # flattened source; a larger one is cut and flagged
MAX_INPUT_DEPTH = 16
MAX_EXPANSION_DEPTH = 24
_INPUT = re.compile(
    r"\\(?P<cmd>input|include|subfile|import|subimport|InputIfFileExists)\*?\s*"
    r"(?:\{(?P<dir>[^{}]*)\}\s*(?=\{))?(?:\{(?P<arg>[^{}]*)\}|(?<=\\input)\s+(?P<bare>[^\s{}\\%]+))"
)
_DEFINERS = ("newcommand", "renewcommand", "providecommand", "DeclareRobustCommand")
# Macros a source may redefine for layout; expanding such a redefinition would lose the structure.
_STRUCTURAL = {
    "section", "subsection", "subsubsection", "paragraph", "subparagraph", "chapter", "part", "appendix",
    "maketitle", "title", "author", "caption", "label", "ref", "cite", "item", "footnote", "emph", "textbf",
    "textit", "texttt", "bibliography", "includegraphics", "input", "include", "begin", "end", "and", "AND",
    "And", "thanks", "url", "href", "abstract", "tableofcontents",
}  # fmt: skip


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


def strip_comments(source: str) -> str:
    """``source`` without comments: ``%`` to the end of the line (as TeX, with the line end and the next
    line's indentation), ``comment`` environments and ``\\iffalse ... \\fi`` blocks."""
    text = re.sub(r"(?<!\\)((?:\\\\)*)%[^\n]*(?:\n[ \t]*)?", r"\1", source)
    text = re.sub(r"\\begin\{comment\}.*?\\end\{comment\}", "", text, flags=re.S)
    return _drop_iffalse(text)


def _drop_iffalse(text: str) -> str:
    """Remove ``\\iffalse ... \\fi`` blocks, counting the conditionals nested in them."""
    out, pos = [], 0
    for start in (m.start() for m in re.finditer(r"\\iffalse(?![A-Za-z@])", text)):
        if start < pos:
            continue
        depth, i = 1, start + len("\\iffalse")
        cond = re.compile(r"\\(if[A-Za-z@]*|fi)(?![A-Za-z@])")
        while depth and (m := cond.search(text, i)):
            depth += -1 if m.group(1) == "fi" else 1
            i = m.end()
        out.append(text[pos:start])
        pos = i if depth == 0 else len(text)
    out.append(text[pos:])
    return "".join(out)


def _resolve(name: str, here: Path, root: Path) -> tuple[Path | None, str | None]:
    """The file an ``\\input{name}`` means, or why it was not read."""
    name = name.strip().strip('"')
    if not name:
        return None, "an empty file name"
    if Path(name).is_absolute() or name.startswith("~"):
        return None, f"{name!r} is an absolute path outside the source folder; not read"
    tried = []
    for base in dict.fromkeys((root, here)):
        for candidate in (base / f"{name}.tex", base / name) if not name.endswith(".tex") else (base / name,):
            resolved = candidate.resolve()
            if not resolved.is_relative_to(root.resolve()):
                return None, f"{name!r} leaves the source folder {root}; not read"
            tried.append(candidate)
            if resolved.is_file():
                return resolved, None
    return None, f"{name!r} not found in {root}"


def flatten(main: Path, *, root: Path | None = None) -> LatexReading:
    """The source of ``main`` with every file it inputs spliced in (comments dropped), and the record."""
    root = (root or main.parent).resolve()
    reading = LatexReading(title=None, text="")
    total = [0]

    def read(path: Path, stack: tuple[Path, ...]) -> str:
        raw = path.read_bytes()[: MAX_SOURCE_CHARS + 1]
        text = strip_comments(raw.decode("utf-8", errors="replace"))
        rel = str(path.relative_to(root)) if path.is_relative_to(root) else str(path)
        reading.files.append(rel)
        total[0] += len(text)
        if total[0] > MAX_SOURCE_CHARS:
            reading.warnings.append(f"the source is over {MAX_SOURCE_CHARS} characters; the rest was not read")
            return text[: max(0, MAX_SOURCE_CHARS - (total[0] - len(text)))]

        def splice(m: re.Match[str]) -> str:
            cmd, name = m.group("cmd"), m.group("arg") or m.group("bare") or ""
            if cmd in ("import", "subimport"):
                folder = m.group("dir") or ""
                name = (
                    str(Path(folder) / name) if cmd == "import" else str(path.parent.relative_to(root) / folder / name)
                )
            target, why = _resolve(name, path.parent, root)
            if target is None:
                reading.warnings.append(f"\\{cmd}{{{name}}} in {rel}: {why}")
                return ""
            if target in stack or len(stack) >= MAX_INPUT_DEPTH:
                reading.warnings.append(f"\\{cmd}{{{name}}} in {rel}: inputs itself or nests too deep; not read again")
                return ""
            body = read(target, (*stack, target))
            if cmd == "subfile":  # a standalone file: its document body only
                body = _document_body(body)
            return ("\n\\clearpage\n" if cmd == "include" else "") + body + "\n"

        return _INPUT.sub(splice, text)

    reading.text = read(main.resolve(), (main.resolve(),))
    return reading


def _document_body(text: str) -> str:
    begin = text.find("\\begin{document}")
    if begin == -1:
        return text
    return text[begin + len("\\begin{document}") :].split("\\end{document}")[0]


def _group(text: str, i: int, open_: str = "{", close: str = "}") -> tuple[str, int] | None:
    """The balanced group starting at ``text[i]`` (which must be ``open_``): its content and the index after it."""
    if i >= len(text) or text[i] != open_:
        return None
    depth, j = 0, i
    while j < len(text):
        c = text[j]
        if c == "\\":
            j += 2
            continue
        if c == open_:
            depth += 1
        elif c == close:
            depth -= 1
            if depth == 0:
                return text[i + 1 : j], j + 1
        j += 1
    return None


def _skip_space(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t\n":
        i += 1
    return i


def _control_word(text: str, i: int) -> tuple[str, int] | None:
    """The control word at ``text[i]`` (a backslash and letters), e.g. ``('datanet', i + 8)``."""
    m = re.compile(r"\\([A-Za-z@]+)").match(text, i)
    return (m.group(1), m.end()) if m else None


def _one_argument(text: str, i: int) -> tuple[str, int] | None:
    """A macro argument at ``text[i]``: a braced group, a control sequence or one character."""
    i = _skip_space(text, i)
    if i >= len(text):
        return None
    if text[i] == "{":
        return _group(text, i)
    if text[i] == "\\":
        word = _control_word(text, i)
        return (text[i : word[1]], word[1]) if word else (text[i : i + 2], i + 2)
    return text[i], i + 1


def collect_macros(text: str) -> tuple[dict[str, Macro], str]:
    """The macros ``text`` defines, and ``text`` without their definitions."""
    macros: dict[str, Macro] = {}
    out, pos = [], 0
    head = re.compile(r"\\(newcommand|renewcommand|providecommand|DeclareRobustCommand|DeclareMathOperator|def|let)\*?")
    for m in head.finditer(text):
        if m.start() < pos:
            continue
        parsed = _definition(text, m)
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


def _definition(text: str, m: re.Match[str]) -> tuple[str, Macro, int, str] | None:
    """Parse the definition starting at match ``m``: name, macro, end index, kind; None if malformed."""
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
        body = _group(text, j)
        return (
            (word[0], Macro(len(params.group(0)) // 2 if params else 0, None, body[0]), body[1], kind) if body else None
        )
    braced = _group(text, i)
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
        body = _group(text, _skip_space(text, j))
        return (name, Macro(0, None, body[0]), body[1], kind) if body else None
    nargs, default = 0, None
    j = _skip_space(text, j)
    if j < len(text) and text[j] == "[":
        count = _group(text, j, "[", "]")
        if not count or not count[0].strip().isdigit():
            return None
        nargs, j = int(count[0]), _skip_space(text, count[1])
        if j < len(text) and text[j] == "[":
            opt = _group(text, j, "[", "]")
            if not opt:
                return None
            default, j = opt[0], _skip_space(text, opt[1])
    body = _group(text, j)
    return (name, Macro(nargs, default, body[0]), body[1], kind) if body else None


def expand_macros(text: str, macros: dict[str, Macro], *, limit: int | None = None) -> tuple[str, bool]:
    """``text`` with the given macros expanded (recursively, as TeX would); True if the output limit
    (default: ten times the input plus a megabyte, against self-multiplying macros) cut it short."""
    if not macros:
        return text, False
    budget = [limit if limit is not None else 10 * len(text) + 1_000_000]
    cut = [False]

    def run(src: str, depth: int) -> str:
        out: list[str] = []
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
                opt = _group(src, k2, "[", "]") if k2 < len(src) and src[k2] == "[" else None
                args.append(opt[0] if opt else macro.default)
                k = opt[1] if opt else k
            while len(args) < macro.nargs:
                arg = _one_argument(src, k)
                if arg is None:
                    break
                args.append(arg[0])
                k = arg[1]
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


def _verbatim_blocks(text: str) -> tuple[str, list[str]]:
    """Verbatim-like environments replaced by placeholders (restored after conversion), and their contents."""
    blocks: list[str] = []

    def keep(m: re.Match[str]) -> str:
        blocks.append(m.group(2).strip("\n"))
        return f" FARSVERBATIM{len(blocks) - 1}Z "

    pattern = (
        r"\\begin\{(verbatim\*?|Verbatim|lstlisting|minted|listing|code)\}(?:\[[^\]]*\])?(?:\{[^}]*\})?(.*?)\\end\{\1\}"
    )
    return re.sub(pattern, keep, text, flags=re.S), blocks


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
            "section": "*[{", "subsection": "*[{", "subsubsection": "*[{", "paragraph": "*[{",
            "subparagraph": "*[{", "chapter": "*[{", "texttt": "{", "textsf": "{", "textsc": "{", "textrm": "{",
            "textup": "{", "textmd": "{", "textsl": "{", "textnormal": "{", "mbox": "{", "text": "{",
            "underline": "{", "uline": "{", "hl": "{", "textcolor": "[{{", "colorbox": "[{{", "href": "{{",
            "url": "{", "cite": "*[[{", "citep": "*[[{", "citet": "*[[{", "citealp": "*[[{", "citealt": "*[[{",
            "citeauthor": "*[[{", "citeyear": "*[[{", "citeyearpar": "*[[{", "parencite": "*[[{",
            "textcite": "*[[{", "autocite": "*[[{", "ref": "{", "eqref": "{", "cref": "*{", "Cref": "*{",
            "autoref": "*{", "pageref": "{", "label": "{", "includegraphics": "*[[{", "caption": "*[{",
            "subcaption": "[{", "captionof": "*{[{", "footnote": "[{", "footnotetext": "[{", "marginpar": "[{",
            "todo": "[{", "vspace": "*{", "hspace": "*{", "setlength": "{{", "addtolength": "{{",
            "bibliography": "{", "bibliographystyle": "{", "printbibliography": "[", "multicolumn": "{{{",
            "multirow": "[{[{", "resizebox": "*{{{", "scalebox": "{[{", "rotatebox": "[{{", "ding": "{", "bibitem": "[{", "appendix": "",
            "maketitle": "", "toprule": "[", "midrule": "[", "bottomrule": "[", "hline": "", "cline": "{",
            "newline": "", "linebreak": "[", "thanks": "{", "iclrfinalcopy": "", "thispagestyle": "{", "pagestyle": "{", "State": "", "Require": "",
            "Ensure": "", "Return": "",
        }  # fmt: skip
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
            "label", "includegraphics", "vspace", "hspace", "setlength", "addtolength", "bibliographystyle",
            "marginpar", "todo", "maketitle", "toprule", "midrule", "bottomrule", "hline", "cline", "thanks",
            "iclrfinalcopy", "centering", "clearpage", "newpage", "tableofcontents", "noindent", "small",
            "footnotesize", "scriptsize", "tiny", "large", "Large", "LARGE", "normalsize", "bigskip", "medskip",
            "smallskip", "vfill", "hfill", "raggedright", "flushbottom", "thispagestyle", "pagestyle",
        ]  # fmt: skip
        keep_arg = {
            "texttt": 0, "textsf": 0, "textsc": 0, "textrm": 0, "textup": 0, "textmd": 0, "textsl": 0,
            "textnormal": 0, "mbox": 0, "text": 0, "underline": 0, "uline": 0, "hl": 0, "textcolor": 2,
            "colorbox": 2, "multicolumn": 2, "multirow": 4, "resizebox": 3, "scalebox": 2, "rotatebox": 2,
        }  # fmt: skip
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
    m = re.search(rf"\\{name}\*?\s*(\[[^\]]*\]\s*)?(?=\{{)", text)
    if not m:
        return None
    group = _group(text, m.end())
    return group[0] if group else None


def latex_to_markdown(source: str, *, bbl: str | None = None) -> tuple[str | None, str, list[str]]:
    """A flattened LaTeX source as (title, Markdown-like text, warnings); ``bbl`` is the compiled bibliography."""
    warnings: list[str] = []
    macros, source = collect_macros(source)
    source, cut = expand_macros(source, macros)
    if cut:
        warnings.append("the source's macros expand without end; expansion was stopped")
    source, blocks = _verbatim_blocks(source)
    begin = source.find("\\begin{document}")
    preamble, body = (source[:begin], source[begin + len("\\begin{document}") :]) if begin != -1 else ("", source)
    body = body.split("\\end{document}")[0]
    if begin == -1:
        warnings.append("no \\begin{document}: read as a fragment")
    abstract = re.search(r"\\begin\{abstract\}.*?\\end\{abstract\}", preamble, flags=re.S)  # some classes take it early
    if abstract and "\\begin{abstract}" not in body:
        body = abstract.group(0) + "\n" + body
    if bbl and "\\begin{thebibliography}" not in body:
        body = re.sub(r"\\(bibliography|printbibliography)(\[[^\]]*\])?(\{[^{}]*\})?", lambda _: bbl, body, count=1)
    body = re.sub(r"\\cmidrule(\([^)]*\))?\{[^}]*\}", "", body)
    converter = _Converter()
    raw_title = _find_command_argument(preamble, "title") or _find_command_argument(body, "title")
    title = " ".join(converter.to_text(raw_title.replace("\\\\", " ")).split()) if raw_title else None
    if raw_title and "\\title" in body:
        body = re.sub(r"\\title\*?\s*(\[[^\]]*\])?", "", body, count=1).replace("{" + raw_title + "}", "", 1)
    body = re.sub(r"\\author\*?\s*(\[[^\]]*\])?\s*(?=\{)", r"\\FARSauthor", body)
    body = _strip_command(body, "FARSauthor")
    text = _tidy(converter.to_text(body))
    for i, block in enumerate(blocks):
        text = text.replace(f"FARSVERBATIM{i}Z", "\n```\n" + block + "\n```\n")
    if title:
        text = f"# {title}\n\n{text}"
    return title, text, warnings


def _strip_command(text: str, name: str) -> str:
    """``text`` without every ``\\name{...}`` (its balanced argument included)."""
    out, pos = [], 0
    for m in re.finditer(rf"\\{name}(?![A-Za-z])", text):
        if m.start() < pos:
            continue
        group = _group(text, _skip_space(text, m.end()))
        out.append(text[pos : m.start()])
        pos = group[1] if group else m.end()
    out.append(text[pos:])
    return "".join(out)


def read_latex(path: Path, *, root: Path | None = None) -> LatexReading:
    """Read a LaTeX paper: its inputs followed, macros expanded, converted to text; see the module doc."""
    reading = flatten(path, root=root)
    bbl_path = path.with_suffix(".bbl")
    bbl = bbl_path.read_text(encoding="utf-8", errors="replace") if bbl_path.is_file() else None
    title, text, warnings = latex_to_markdown(reading.text, bbl=bbl)
    reading.title, reading.text = title, text
    reading.warnings += warnings
    if bbl is not None:
        reading.files.append(bbl_path.name)
    return reading


def is_main_file(text: str) -> bool:
    """Whether a .tex file's text is a document of its own (``\\documentclass`` or ``\\begin{document}``)."""
    text = strip_comments(text)
    return bool(re.search(r"\\documentclass|\\begin\{document\}", text))


MAIN_NAMES = ("main", "paper", "ms", "manuscript", "article", "root")


def find_main_tex(folder: Path) -> tuple[Path | None, list[Path]]:
    """The main .tex file of a source folder (the one that is a document; by conventional name when
    several are), and every candidate found (for the error message when none can be chosen)."""
    candidates = []
    for tex in sorted(folder.rglob("*.tex")):
        if len(tex.relative_to(folder).parts) > 3 or not tex.is_file():
            continue
        try:
            head = tex.read_bytes()[:200_000].decode("utf-8", errors="replace")
        except OSError:
            continue
        if is_main_file(head):
            candidates.append(tex)
    top = [c for c in candidates if c.parent == folder] or candidates
    if len(top) == 1:
        return top[0], candidates
    named = [c for c in top if c.stem.lower() in (*MAIN_NAMES, folder.name.lower())]
    if len(named) == 1:
        return named[0], candidates
    with_body = [c for c in top if "\\begin{document}" in c.read_text(encoding="utf-8", errors="replace")]
    named = [c for c in with_body if c.stem.lower() in MAIN_NAMES]
    return (named[0] if len(named) == 1 else None), candidates
