"""The search over programs: the model edits a working copy of the template's code, runs it, reads back, tries again.

Each node is a version of the code: a *draft* edits the template's own code to implement the
hypothesis's mechanism; a *debug* node fixes a failed node from its error tail (or, when its edits
were refused, from its own reply and the reason); an *improve* node changes the best working node after
reading its metrics and learning curve. Every node runs with the *method's settings* (the plan's method
condition: its knobs and components) plus its own code, and the prompt says so by name and value, so a
node is the idea (settings and code) rather than the baseline with code. The prompt shows the editable
files, the template modules they import (within a character budget), and, to a later draft, the earlier
drafts it must differ from.

A node's edits (``fars.code.edits``) apply to a fresh copy of the template folder, all or none; the copy
is smoke-run at the template's smoke scale and then run over the plan's seeds, every run inside the
sandbox (the runner the stage hands in). The first draft runs alone; when its reply holds no edit at
all (a weak model ignoring the format), the search ends there, one call spent. A node is *buggy* (its
edits did not apply or parse, its runs failed, timed out or reported a non-finite metric), or *better*,
*same* or *worse* than the baseline by its mean. The search is bounded (drafts, debug depth,
improvement steps, nodes in all, nodes at once) and deterministic given its nodes' outcomes, so a
resumed search takes the same path: a node the ledger already holds is not run or paid for again.

The winner, the best node better than the baseline, becomes the condition ``code``, with runs on *fresh
seeds* (``FRESH_SEED_OFFSET`` past the plan's): it was chosen because its runs on the plan's seeds beat the
baseline's, so those runs are the best of several tries and would bias its test upward (a capable reviewer
of the relay run: "the +0.0028 is the best of 3"); its ablations run on the same fresh seeds. When the idea names
its parts, the model is asked to put each behind a switch the harness sets in ``parts.json`` beside the
entry point, and each ablation ``code-without-<part>`` runs the winning code unchanged with one switch
off. Only when no parts are named (or the winning code reads no switch) is the winner's diff split by
hunk instead, as ``code-without-hunk<k>`` conditions whose descriptions say they are that fallback.
When no node beats the baseline the plan's own conditions stand alone: the project never fails because
the model could not write code.
"""

from __future__ import annotations

import ast
import asyncio
import difflib
import hashlib
import json
import logging
import math
import re
import shutil
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from experiments.metrics import Metrics
from experiments.spec import BUNDLED_DIR, TemplateSpec, Value
from fars.code.edits import (
    DIVIDER_MARK,
    REPLACE_MARK,
    SEARCH_MARK,
    Edit,
    apply_edits,
    parse_edits,
    path_of,
    read_editable,
    unified_diff,
)
from fars.config import CodeSearchConfig
from fars.evaluation.stats import welch_t
from fars.llm.budget import BudgetExceeded
from fars.llm.client import model_context_tokens
from fars.run.contracts import CodeNode, CodeSearchSummary, NodeKind
from fars.safe_files import remove_tree
from review.degenerate import value_problems

log = logging.getLogger(__name__)
SYSTEM = (
    "You implement a research idea in the code of a machine learning experiment, so that the experiment tests "
    "it. You change what the idea needs and nothing else, keep every command-line flag and the metrics.json the "
    "script writes, and import only the standard library and what the code already imports."
)
EXAMPLE_HEAD = "Example of a reply (two blocks in train.py, then a new file):"
NO_CHANGE = "NO CHANGE"  # what a model replies when the settings already implement the idea whole
FORMAT_EXAMPLE = '''Warm the learning rate up linearly over the first tenth of training; the loss is label-smoothed.

train.py
<<<<<<< SEARCH
def lr_factor(step: int, total: int) -> float:
    return 1.0
=======
def lr_factor(step: int, total: int) -> float:
    return min(1.0, (step + 1) / max(1, total // 10))
>>>>>>> REPLACE
<<<<<<< SEARCH
    factor = 1.0
=======
    factor = lr_factor(step, args.steps)
>>>>>>> REPLACE

method.py
```python
"""Cross-entropy against smoothed targets (the loss extension point)."""

import torch


def loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cross_entropy(logits, targets, label_smoothing=0.1)
```'''
FORMAT = f"""Reply format. Begin with two or three sentences on what your code does (later drafts are shown them beside
your diff). Then your edits, in either form:

1. To change a file: a line holding only the file's path, then one or more blocks, each exactly

{SEARCH_MARK}
lines copied exactly from the file, indentation included
{DIVIDER_MARK}
the lines to put in their place
{REPLACE_MARK}

   A block belongs to the last path named above it, so further blocks for the same file need no path line.
   Blocks apply in order, each to the file as the earlier blocks left it, and each SEARCH text must occur
   exactly once in it (quote more lines when it would occur twice). An empty SEARCH part is refused.
2. To write a new file (such as method.py, which the script loads with --method when it exists) or a file
   whole: a line holding only its path, then the whole file in one ```python fenced block.

A path line may be written as `train.py` or **train.py**; anything else you write is read as prose. If any
edit cannot be applied, none is: you get the reply back with the reason, and the files stay as they were.

{EXAMPLE_HEAD}

{FORMAT_EXAMPLE}"""
PARTS_FILE = "parts.json"  # the switches of the idea's named parts, written into every run's copy
MAX_FILE_SHOWN = 14_000  # characters of each editable file shown to the model
MAX_CONTEXT_SHOWN = 16_000  # characters of the template modules the editable files import
MAX_DRAFTS_SHOWN = 6_000  # characters of the earlier drafts shown to a later one
ROOMY_CONTEXT_TOKENS = 32_000  # a model window from which the imported modules and earlier drafts are shown
MAX_REPLY_SHOWN = 4_000  # characters of a refused reply shown back to the model


class Completer(Protocol):
    """What the search needs of the model client."""

    async def complete(self, messages: list[dict[str, str]], *, max_tokens: int | None = None) -> Any: ...


# (the copy's folder, the runs' folder, seeds, steps, time limit or None) -> one Metrics per seed, or why not
RunCode = Callable[[Path, Path, list[int], int, float | None], Awaitable[list[Metrics] | str]]


FRESH_SEED_OFFSET = 10_000  # the winner's reported runs: the plan's seeds shifted past any the search used


@dataclass
class _Node:
    record: CodeNode
    files: dict[str, str] = field(default_factory=dict)  # the editable files (and new ones) of this version
    runs: list[Metrics] = field(default_factory=list)
    reply: str = ""  # the model's reply that made it
    diff: str = ""  # its unified diff against the template ("" when its edits were refused)


@dataclass
class SearchOutcome:
    """What the stage gets back: the summary, and the winner's and its ablations' runs to aggregate."""

    summary: CodeSearchSummary
    winner_runs: list[Metrics] = field(default_factory=list)
    ablations: dict[str, tuple[str, list[Metrics]]] = field(default_factory=dict)  # name -> (description, runs)


def change_regions(before: str, after: str) -> list[tuple[int, int, int, int]]:
    """The regions where ``after`` differs from ``before``: (i1, i2, j1, j2) line spans of each change."""
    matcher = difflib.SequenceMatcher(None, before.splitlines(keepends=True), after.splitlines(keepends=True))
    return [(i1, i2, j1, j2) for tag, i1, i2, j1, j2 in matcher.get_opcodes() if tag != "equal"]


def without_change(before: str, after: str, skip: int) -> str:
    """``after`` with its change number ``skip`` (of ``change_regions``) put back to ``before``'s lines."""
    old, new = before.splitlines(keepends=True), after.splitlines(keepends=True)
    out: list[str] = []
    matcher = difflib.SequenceMatcher(None, old, new)
    k = -1
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            out += new[j1:j2]
            continue
        k += 1
        out += old[i1:i2] if k == skip else new[j1:j2]
    return "".join(out)


def curve_summary(runs: list[Metrics], points: int = 6) -> str:
    """A compact learning curve: the metric at a few steps, averaged over seeds."""
    if not runs:
        return "no runs"
    length = min(len(m.curves.step) for m in runs)
    picks = sorted({round(i * (length - 1) / max(1, points - 1)) for i in range(points)})
    parts = []
    for i in picks:
        value = sum(m.curves.val_metric[i] for m in runs) / len(runs)
        parts.append(f"step {runs[0].curves.step[i]}: {value:.4f}")
    return ", ".join(parts)


def part_switches(parts: list[str]) -> dict[str, str]:
    """Each named part's switch in ``parts.json`` (part -> key): its words in lower case joined by '_', unique."""
    keys: dict[str, str] = {}
    for part in parts:
        key = re.sub(r"[^0-9a-z]+", "_", part.lower()).strip("_") or "part"
        while key in keys.values():
            key += "_2"
        keys[part] = key
    return keys


def approach_of(reply: str, limit: int = 400) -> str:
    """The prose a reply opens with, before its first path line, block or fence: what the model says it did."""
    prose = []
    for line in reply.splitlines():
        if line.strip() in (SEARCH_MARK, DIVIDER_MARK, REPLACE_MARK) or line.strip().startswith("```"):
            break
        if path_of(line) is not None:
            break
        prose.append(line.strip())
    text = " ".join(p for p in prose if p)
    return (text[:limit] + "...") if len(text) > limit else text or "(no words of its own)"


def imported_modules(spec: TemplateSpec, files: dict[str, str]) -> list[tuple[str, Path, list[str]]]:
    """The template modules ``files`` import (name, file, names imported from it), the files themselves left
    out: ``experiments.*`` modules FARS ships and modules of the template's own folder, in import order."""
    found: dict[Path, tuple[str, list[str]]] = {}
    own = {(spec.folder / name).resolve() for name in files}
    for path, text in sorted(files.items()):
        if not path.endswith(".py"):
            continue
        try:
            tree = ast.parse(text)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                names, module = [a.name for a in node.names], node.module or ""
                where = _module_file(spec, module, node.level)
                if where is None and node.level == 0:  # `from experiments.pkg import module`
                    for name in names:
                        sub = _module_file(spec, f"{module}.{name}", 0)
                        if sub is not None and sub.resolve() not in own:
                            found.setdefault(sub, (f"{module}.{name}", []))
                    continue
            elif isinstance(node, ast.Import):
                names = []
                for alias in node.names:
                    where = _module_file(spec, alias.name, 0)
                    if where is not None and where.resolve() not in own:
                        found.setdefault(where, (alias.name, []))
                continue
            else:
                continue
            if where is not None and where.resolve() not in own:
                dotted = "." * node.level + module
                found.setdefault(where, (dotted, []))[1].extend(n for n in names if n not in found[where][1])
    return [(name, path, names) for path, (name, names) in found.items()]


def _module_file(spec: TemplateSpec, module: str, level: int) -> Path | None:
    """The file of a module named in an import, when it is one FARS ships or one of the template's own."""
    parts = [p for p in module.split(".") if p]
    if level > 0:
        base = spec.folder
        for _ in range(level - 1):
            base = base.parent
    elif parts and parts[0] == "experiments":
        base, parts = BUNDLED_DIR, parts[1:]
    elif len(parts) == 1:
        base = spec.folder  # a sibling module (the script's folder is first on its path)
    else:
        return None
    for candidate in (
        base.joinpath(*parts).with_suffix(".py") if parts else None,
        base.joinpath(*parts, "__init__.py"),
    ):
        if candidate is not None and candidate.is_file() and not candidate.is_symlink():
            return candidate
    return None


def _top_level(text: str, names: list[str]) -> list[ast.stmt]:
    """The top-level definitions (functions, classes, assignments) of ``names`` in a module's source."""
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return []
    found: list[ast.stmt] = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            defined = [node.name]
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            defined = [t.id for t in targets if isinstance(t, ast.Name)]
        else:
            continue
        if not names or set(defined) & set(names):
            found.append(node)
    return found


def no_edit_reason(reply: str) -> str:
    """Why the search stopped at a first draft without an edit: the model judged no code needed (it said
    NO CHANGE, or explained itself in prose), or the reply is not the edit format at all (a weak model)."""
    said = approach_of(reply.replace(NO_CHANGE, ""), limit=300)
    explained = len(said.split()) >= 8 and not value_problems(said, descriptions=[FORMAT, *FORMAT.split(". ")])
    if NO_CHANGE in reply or explained:
        return (
            "the model wrote no code: it judged that the method's settings already implement the idea "
            f"(its words: {said}), so the plan's conditions stand alone"
        )
    return (
        "the first draft held no edit (the reply ignores the edit format), so the search stopped there: "
        "the plan's conditions stand alone"
    )


def definitions(text: str, names: list[str]) -> str:
    """The full source of the top-level definitions of ``names`` in a module."""
    return "\n\n".join(ast.get_source_segment(text, node) or "" for node in _top_level(text, names))


def outline(text: str, names: list[str]) -> str:
    """The signatures and first docstring lines of ``names`` (every top-level definition when empty)."""
    lines = text.splitlines()
    out = []
    for node in _top_level(text, names):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            out.append(lines[node.lineno - 1])
            continue
        header = lines[node.lineno - 1 : node.body[0].lineno - 1]
        doc = ast.get_docstring(node)
        out += [*header, *(['    """' + doc.splitlines()[0] + '"""'] if doc else []), "    ..."]
    return "\n".join(out)


_CONTEXTS: OrderedDict[tuple[str, str, int], tuple[str, list[tuple[Path, int, int]]]] = OrderedDict()
_CONTEXTS_KEPT = 32  # templates' contexts remembered (a run uses a handful)


def context_text(spec: TemplateSpec, files: dict[str, str], budget: int = MAX_CONTEXT_SHOWN) -> str:
    """The template modules the editable files build on, within ``budget`` characters.

    The template's own modules (a folder of ``experiments/``, e.g. the chargpt model abstracts_lm's train.py
    imports) come first and whole where they fit: they are what the code builds on. The shared harness modules
    (``experiments/engine.py``, ``schedules.py``) follow with just the definitions imported from them. Past the
    budget a module is outlined (signatures and docstrings), then only named.

    Every project on a template asks the same: the answer is kept per folder, files and budget, and used again
    while the modules it read are unchanged on disk (parsing them took 30 ms of the event loop per project, which
    256 projects reaching the Experiment stage together waited on in turn).
    """
    digest = hashlib.sha256(json.dumps(sorted(files.items())).encode()).hexdigest()
    key = (str(spec.folder), digest, budget)
    kept = _CONTEXTS.get(key)
    if kept is not None and all(_stamp(p) == (p, m, z) for p, m, z in kept[1]):
        _CONTEXTS.move_to_end(key)
        return kept[0]
    text, read = _context_text(spec, files, budget)
    _CONTEXTS[key] = (text, [_stamp(p) for p in read])
    while len(_CONTEXTS) > _CONTEXTS_KEPT:
        _CONTEXTS.popitem(last=False)
    return text


def _stamp(path: Path) -> tuple[Path, int, int]:
    """A module file with its change time and size (-1, -1 when it is gone)."""
    try:
        st = path.stat()
    except OSError:
        return path, -1, -1
    return path, st.st_mtime_ns, st.st_size


def _context_text(spec: TemplateSpec, files: dict[str, str], budget: int) -> tuple[str, list[Path]]:
    """``context_text`` worked out, with the module files it read."""
    found = imported_modules(spec, files)
    found.sort(key=lambda m: m[1].parent == BUNDLED_DIR)  # stable: import order within each group
    shown: list[str] = []
    left = budget
    for name, path, names in found:
        text = path.read_text(encoding="utf-8", errors="replace")
        label = str(path.relative_to(BUNDLED_DIR.parent)) if path.is_relative_to(BUNDLED_DIR.parent) else path.name
        imported = ", ".join(names) or "the module"
        choices = [
            (definitions(text, names), f"the definitions of {imported}"),
            (outline(text, names), f"signatures of {imported}"),
        ]
        if path.parent != BUNDLED_DIR:
            choices.insert(0, (text, "whole"))
        body, how = next(((b, h) for b, h in choices if b and len(b) <= left), ("", ""))
        if not body:
            shown.append(f"{label} (imported as {name}): not shown (over the budget of {budget} characters)")
            continue
        left -= len(body)
        shown.append(f"{label} (imported as {name}; {how}):\n```python\n{body}\n```")
    read = [spec.folder, *(path for _, path, _ in found)]  # the folder: a module added to it changes what is found
    if not shown:
        return "", read
    return (
        "The code your files build on (template modules they import; you cannot edit these, but your code may "
        "call, subclass or replace what they define):\n\n" + "\n\n".join(shown)
    ), read


class CodeSearch:
    """One project's search (see the module docstring)."""

    def __init__(
        self,
        *,
        llm: Completer,
        spec: TemplateSpec,
        hypothesis: str,
        method: str,
        baseline: list[float],
        seeds: list[int],
        steps: int,
        settings: CodeSearchConfig,
        folder: Path,
        run_dir: Path,
        run_code: RunCode,
        remember: Callable[[CodeNode, str | None], None],
        known: dict[str, tuple[dict[str, Any], str | None]],
        method_settings: dict[str, Value] | None = None,
        parts: list[str] | None = None,
    ) -> None:
        """``method_settings``: the knobs and components every node runs with where they differ from the
        baseline (the plan's method condition; ``run_code`` must pass them, the prompt names them). None:
        nodes run with the baseline's settings. ``parts``: the idea's named parts, each made a switch."""
        self.llm = llm
        self.spec = spec
        self.hypothesis = hypothesis
        self.method = method  # the plan's own method in words, for context
        self.baseline = baseline
        self.seeds = seeds
        self.steps = steps
        self.cfg = settings
        self.folder = folder
        self.run_dir = run_dir
        self.run_code = run_code
        self.remember = remember
        self.known = known  # node id -> (record, reply) the ledger already holds (a resumed search)
        self.method_settings = dict(method_settings) if method_settings is not None else None
        self.switches = part_switches(parts or [])  # part -> its key in parts.json
        self.original = read_editable(spec.folder, spec.editable)
        # a small context window (the embedded model's 8,192 tokens) holds the task and the editable files, not the
        # modules they import or earlier drafts: a prompt over the window fails the call, and the node with it
        window = model_context_tokens(str(getattr(getattr(llm, "cfg", None), "model", "")))
        self.roomy = window is None or window >= ROOMY_CONTEXT_TOKENS
        self.context = context_text(spec, self.original) if self.roomy else ""
        self.nodes: list[_Node] = []
        self.sign = 1.0 if spec.higher_is_better else -1.0
        self.baseline_mean = sum(baseline) / len(baseline) if baseline else float("nan")
        self.notes: list[str] = []  # what the summary's reason must add (settings not applied, parts unswitched)

    # -- prompts ------------------------------------------------------------------------------------
    def _show(self, files: dict[str, str]) -> str:
        return "\n\n".join(f"{path}:\n```python\n{text[:MAX_FILE_SHOWN]}\n```" for path, text in sorted(files.items()))

    def _runs_with(self) -> str:
        """What every version runs with, by name and value."""
        run = f"python {self.spec.entry} --seed S --steps {self.steps}"
        if self.method_settings is None:
            return f"Every version of the code runs as `{run}` with the baseline's settings."
        if not self.method_settings:
            return f"Every version of the code runs as `{run}` with the method's settings, which are the baseline's."
        flags = " ".join(f"--{k}={v}" for k, v in sorted(self.method_settings.items()))
        return (
            f"Every version of the code runs as `{run} {flags}`: the method's settings, applied already (your code "
            "reads them from args as the template does; do not re-implement or hard-code them); every other setting "
            "is at the baseline's value."
        )

    def _parts_text(self) -> str:
        """How the idea's named parts become switches (empty when it names none)."""
        if not self.switches:
            return ""
        listed = ", ".join(f"{part!r} (switch {key!r})" for part, key in self.switches.items())
        on = json.dumps(dict.fromkeys(self.switches.values(), True))
        return (
            f"\nThe idea names {len(self.switches)} part(s) an ablation removes one at a time: {listed}. Put each "
            f"part's code behind its switch. Every run finds {PARTS_FILE} beside {self.spec.entry}: {on} for the "
            "method, and each ablation runs your code unchanged with one switch false. Read it once, in the file "
            f"that uses it (with `import json` and `from pathlib import Path`):\n    PARTS = json.loads((Path(__file__).parent / {PARTS_FILE!r}).read_text())\nand "
            'put each part under `if PARTS["<switch>"]:`; with any one switch false the rest must still run.'
        )

    def _task(self) -> str:
        direction = "higher" if self.spec.higher_is_better else "lower"
        points = f"\nExtension points: {self.spec.extension}" if self.spec.extension else ""
        return (
            f"Experiment: {self.spec.title}. {self.spec.description}\nMetric: {self.spec.metric} ({direction} is better); "
            f"the baseline (the template's code with the baseline's settings) reaches {self.baseline_mean:.4f} over "
            f"{len(self.baseline)} seeds.\nHypothesis to test: {self.hypothesis}\nThe plan's method: {self.method}.\n"
            f"{self._runs_with()}\nYour task: implement the mechanism the hypothesis names in code, on top of those "
            f"settings, so that running it tests the hypothesis.{points}{self._parts_text()}\n"
            f"You may edit: {', '.join(self.spec.editable) or 'no file of the template'}, or add a new .py file.\n"
            f"If those settings already implement the idea whole and code would only repeat them, reply with a line "
            f"holding only {NO_CHANGE} and one sentence saying why: the plan's conditions then stand alone."
        )

    def _drafts_shown(self) -> str:
        """The earlier drafts (their own words, outcome and diff, within a budget) a new draft must differ from."""
        earlier = [n for n in self.nodes if n.record.kind == "draft"]
        if not earlier or not self.roomy:
            return ""
        shown, left = [], MAX_DRAFTS_SHOWN
        for n in earlier:
            r = n.record
            outcome = r.verdict + (f", mean {r.mean:.4f}" if r.mean is not None else "")
            outcome += f": {(r.error or '')[:200]}" if r.error else ""
            diff = n.diff or "(its edits were refused, so it changed nothing)"
            head = f"Draft {r.id} ({outcome}). Its approach: {approach_of(n.reply)}\n"
            room = left - len(head) - 20
            if room < 200:
                shown.append(f"Draft {r.id}: not shown (over the budget of {MAX_DRAFTS_SHOWN} characters)")
                continue
            cut = diff[:room] + ("\n... (cut)" if len(diff) > room else "")
            shown.append(f"{head}```diff\n{cut}\n```")
            left -= len(shown[-1])
        return "Earlier drafts:\n\n" + "\n\n".join(shown) + "\n\nTake an approach different from each of these."

    def _prompt(self, node_id: str, kind: NodeKind, parent: _Node | None) -> list[dict[str, str]]:
        files = parent.files if parent is not None else self.original
        context = f"\n\n{self.context}" if self.context else ""
        if kind == "draft" or parent is None:
            number = int(node_id.removeprefix("n")) + 1
            others = self._drafts_shown()
            ask = (
                f"{self._task()}{context}\n\nThe code now:\n\n{self._show(files)}\n\n"
                + (f"{others}\n\n" if others else "")
                + f"Draft {number} of {self.cfg.drafts} (version {node_id}). {FORMAT}"
            )
        elif kind == "debug" and parent.record.diff is None:  # refused: nothing of it was applied or ran
            ask = (
                f"{self._task()}{context}\n\nYour reply for {parent.record.id} was refused and none of its edits "
                f"was applied:\n{(parent.record.error or '')[-1500:]}\n\nThat reply:\n\n"
                f"{parent.reply[:MAX_REPLY_SHOWN]}\n\nThe code as it stands (unchanged):\n\n{self._show(files)}\n\n"
                f"Write the edits again so they apply (version {node_id}, debugging {parent.record.id}). {FORMAT}"
            )
        elif kind == "debug":
            ask = (
                f"{self._task()}{context}\n\nYour last version of the code:\n\n{self._show(files)}\n\nIt failed:\n"
                f"{(parent.record.error or '')[-1500:]}\n\nFix it (version {node_id}, debugging {parent.record.id}). {FORMAT}"
            )
        else:
            ask = (
                f"{self._task()}{context}\n\nYour best version so far reaches {parent.record.mean:.4f} (the baseline "
                f"{self.baseline_mean:.4f}); its {self.spec.metric} over training: {curve_summary(parent.runs)}.\n"
                f"The code:\n\n{self._show(files)}\n\nImprove it further (version {node_id}, improving "
                f"{parent.record.id}). {FORMAT}"
            )
        return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": ask}]

    # -- one node -------------------------------------------------------------------------------------
    @property
    def fresh_seeds(self) -> list[int]:
        """The seeds the winner and its ablations are reported on: none the search chose it by."""
        return [s + FRESH_SEED_OFFSET for s in self.seeds]

    def _copy(self, name: str, files: dict[str, str], off: str | None = None) -> Path:
        """A fresh working copy of the template folder with ``files`` written over it, and the parts' switches
        (every one on, or all but ``off``) in ``parts.json`` when the idea names parts."""
        src = self.folder / name / "src"
        src.parent.mkdir(parents=True, exist_ok=True)
        remove_tree(src)  # links unfollowed, however deep: what a killed session left cannot steer the copy
        shutil.copytree(self.spec.folder, src, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"), symlinks=False)
        for path, text in files.items():
            (src / path).write_text(text, encoding="utf-8")
        if self.switches:
            switches = {key: key != off for key in self.switches.values()}
            (src / PARTS_FILE).write_text(json.dumps(switches, indent=1), encoding="utf-8")
        return src

    def _verdict(self, values: list[float]) -> tuple[str, float | None]:
        mean = sum(values) / len(values)
        diff = self.sign * (mean - self.baseline_mean)
        test = welch_t(self.baseline, values) if len(values) > 1 and len(self.baseline) > 1 else None
        verdict = "better" if diff > 0 else "worse" if diff < 0 else "same"
        return verdict, test.p_value if test else None

    async def _evaluate(self, node_id: str, kind: NodeKind, parent: _Node | None) -> _Node:
        depth = (parent.record.depth + 1) if parent is not None and kind == "debug" else 0
        base = dict(parent.files) if parent is not None else dict(self.original)
        record = CodeNode(
            id=node_id, parent=parent.record.id if parent else None, kind=kind, depth=depth, verdict="buggy"
        )
        started = time.perf_counter()
        known = self.known.get(node_id)
        if known is not None:  # finished in an earlier session: rebuilt, nothing run or paid for again
            record = CodeNode.model_validate(known[0])
            reply = known[1] or ""
            applied = apply_edits(parse_edits(reply), base, self.spec.editable)
            node = _Node(record, {**base, **applied.files}, reply=reply)
            node.diff = unified_diff(self.original, node.files) if applied.files else ""
            if record.verdict != "buggy":  # its runs' metrics.json are on disk: read back, not run again
                runs = await self.run_code(
                    self._copy(node_id, node.files), self.folder / node_id / "runs", self.seeds, self.steps, None
                )
                node.runs = runs if not isinstance(runs, str) else []
            return node
        try:
            reply = await self.llm.complete(self._prompt(node_id, kind, parent), max_tokens=self.cfg.max_tokens or 1500)
            text = str(reply.text)
        except BudgetExceeded:
            raise  # the project's budget is spent: the stage stops it, not the search
        except Exception as exc:  # a call the model cannot take (a prompt over its window, a dead provider)
            record.error = f"the model call failed ({type(exc).__name__}: {str(exc)[:300]})"
            record.seconds = time.perf_counter() - started
            self.remember(record, None)
            return _Node(record, dict(base), reply="")
        (self.folder / node_id).mkdir(parents=True, exist_ok=True)
        (self.folder / node_id / "reply.txt").write_text(text, encoding="utf-8")
        edits: list[Edit] = parse_edits(text)
        applied = apply_edits(edits, base, self.spec.editable)
        record.edits = [e.label() for e in edits]
        node = _Node(record, {**base, **applied.files}, reply=text)  # refused: the files stay as they were
        if applied.problems:
            record.error = "the edits were refused (none was applied): " + "; ".join(applied.problems)
        else:
            node.diff = unified_diff(self.original, node.files)
            patch = self.folder / node_id / "diff.patch"
            patch.write_text(node.diff, encoding="utf-8")
            record.diff = str(patch.relative_to(self.run_dir))
            src = self._copy(node_id, node.files)
            await self._run(node, src)
        record.seconds = time.perf_counter() - started
        self.remember(record, text)
        return node

    async def _run(self, node: _Node, src: Path) -> None:
        """Smoke-run the copy, then run it over the seeds; fill in the node's verdict."""
        record = node.record
        smoke = self.spec.scale("smoke").steps
        out = self.folder / record.id
        tried = await self.run_code(src, out / "smoke", [self.seeds[0]], smoke, self.cfg.smoke_timeout_s)
        if isinstance(tried, str):
            record.error = f"the smoke run failed: {tried[-1500:]}"
            return
        self._check_settings(tried[0])
        bad = [m.final.get(self.spec.metric) for m in tried if not _finite(m.final.get(self.spec.metric))]
        if bad:
            record.error = f"the smoke run reported a non-finite {self.spec.metric} ({bad[0]}): NaN or overflow"
            return
        runs = await self.run_code(src, out / "runs", self.seeds, self.steps, None)
        if isinstance(runs, str):
            record.error = f"a run over the seeds failed: {runs[-1500:]}"
            return
        values = [m.final.get(self.spec.metric) for m in runs]
        if not all(_finite(v) for v in values):
            record.error = f"a run reported a non-finite {self.spec.metric} ({values}): NaN or overflow"
            return
        numbers = [float(v) for v in values if v is not None]
        node.runs = runs
        record.values = numbers
        record.mean = sum(numbers) / len(numbers)
        verdict, p = self._verdict(numbers)
        record.verdict = verdict  # type: ignore[assignment]  # _verdict returns str; the Literal is checked by pydantic on dump
        record.p_vs_baseline = p

    def _check_settings(self, run: Metrics) -> None:
        """Note (once) when a run's recorded config contradicts the method's settings the prompt promised."""
        if not self.method_settings or any(n.startswith("the nodes ran with") for n in self.notes):
            return
        wrong = {
            k: run.config[k] for k, v in self.method_settings.items() if k in run.config and not _same(run.config[k], v)
        }
        if wrong:
            self.notes.append(
                f"the nodes ran with {wrong}, not the method's settings {self.method_settings} the prompt named"
            )
            log.warning("code search: %s (the runner passes other flags)", self.notes[-1])

    # -- the search ---------------------------------------------------------------------------------
    def _next_actions(self, improved: int) -> list[tuple[NodeKind, _Node | None]]:
        working = [n for n in self.nodes if n.record.verdict != "buggy"]
        best = max(working, key=lambda n: self.sign * (n.record.mean or 0.0), default=None)
        actions: list[tuple[NodeKind, _Node | None]] = []
        if best is not None and improved < self.cfg.improve_steps:
            actions.append(("improve", best))
        debugged = {n.record.parent for n in self.nodes if n.record.kind == "debug"}
        if all(n.record.edits == [] for n in self.nodes):  # no reply held an edit: the model ignores the format,
            return actions  # so asking it to fix what it never wrote only spends calls (weak models land here)
        for n in self.nodes:
            if n.record.verdict == "buggy" and n.record.id not in debugged and n.record.depth < self.cfg.debug_depth:
                actions.append(("debug", n))
        return actions

    async def search(self) -> SearchOutcome:
        """Run the bounded search; the winner's and its ablations' runs for the stage to aggregate."""
        self.folder.mkdir(parents=True, exist_ok=True)
        budget = self.cfg.max_nodes
        drafts = min(self.cfg.drafts, budget)
        await self._round([("draft", None)])  # one first: a model that ignores the edit format is asked once
        if not self.nodes[0].record.edits:
            outcome = await self._conclude()
            first = self.nodes[0].record
            failed = (first.error or "").startswith("the model call failed")
            outcome.summary.reason = (
                f"{first.error}, so the search stopped there: the plan's conditions stand alone"
                if failed
                else no_edit_reason(self.nodes[0].reply)
            )
            return outcome
        if drafts > 1:
            await self._round([("draft", None)] * (drafts - 1))
        improved = 0
        while len(self.nodes) < budget:
            actions = self._next_actions(improved)[: min(self.cfg.parallel, budget - len(self.nodes))]
            if not actions:
                break
            improved += sum(1 for kind, _ in actions if kind == "improve")
            await self._round(actions)
        return await self._conclude()

    async def _round(self, actions: list[tuple[NodeKind, _Node | None]]) -> None:
        ids = [f"n{len(self.nodes) + i}" for i in range(len(actions))]
        gate = asyncio.Semaphore(self.cfg.parallel)

        async def one(node_id: str, kind: NodeKind, parent: _Node | None) -> _Node:
            async with gate:
                return await self._evaluate(node_id, kind, parent)

        done = await asyncio.gather(*(one(i, k, p) for i, (k, p) in zip(ids, actions, strict=True)))
        self.nodes += done

    async def _conclude(self) -> SearchOutcome:
        summary = CodeSearchSummary(nodes=[n.record for n in self.nodes])
        better = [n for n in self.nodes if n.record.verdict == "better"]
        if not better:
            buggy = sum(1 for n in self.nodes if n.record.verdict == "buggy")
            summary.reason = f"no node beat the baseline ({len(self.nodes)} node(s), {buggy} buggy): the plan's conditions stand alone"
            summary.reason += "".join(f"; {note}" for note in self.notes)
            return SearchOutcome(summary)
        winner = max(better, key=lambda n: self.sign * (n.record.mean or 0.0))
        summary.winner = winner.record.id
        summary.diff = winner.record.diff
        summary.reason = (
            f"{winner.record.id} reached {winner.record.mean:.4f} against the baseline's {self.baseline_mean:.4f}"
        )
        again = self._copy(f"{winner.record.id}-fresh", winner.files)
        fresh = await self.run_code(again, again.parent / "runs", self.fresh_seeds, self.steps, None)
        if isinstance(fresh, str):  # it ran on the plan's seeds; a failure now is a fault to report, not a result
            summary.winner, summary.diff = None, None
            summary.reason = f"{winner.record.id} won on the plan's seeds but failed on fresh ones: {fresh[-300:]}"
            return SearchOutcome(summary)
        summary.fresh_seeds = list(self.fresh_seeds)
        outcome = SearchOutcome(summary, winner_runs=fresh)
        if self.cfg.ablations:
            await self._ablate(winner, outcome)
        summary.reason += "".join(f"; {note}" for note in self.notes)
        return outcome

    async def _ablate(self, winner: _Node, outcome: SearchOutcome) -> None:
        """Run the winner with each named part switched off; by diff hunk only when that cannot be done."""
        jobs = self._part_jobs(winner, outcome) if self.switches else None
        if jobs is None:
            why = "the idea named no parts" if not self.switches else "the winning code reads no part switch"
            jobs = self._hunk_jobs(winner, outcome, why)

        async def run(name: str, description: str, files: dict[str, str], off: str | None) -> tuple[str, str, Any]:
            src = self._copy(f"{winner.record.id}-{name}", files, off)
            return name, description, await self.run_code(src, src.parent / "runs", self.fresh_seeds, self.steps, None)

        for name, description, runs in await asyncio.gather(*(run(*j) for j in jobs)):
            if isinstance(runs, str):
                log.warning("ablation %s of the winning code failed: %s", name, runs[-300:])
                continue
            outcome.ablations[name] = (description, runs)

    def _part_jobs(
        self, winner: _Node, outcome: SearchOutcome
    ) -> list[tuple[str, str, dict[str, str], str | None]] | None:
        """One ablation per named part the winning code switches (the same code, that switch off); None when the
        code reads no switch at all. A part the code never names cannot be switched off, and the reason says so."""
        code = "\n".join(winner.files.values())
        if PARTS_FILE not in code:
            return None
        named = {part: key for part, key in self.switches.items() if f'"{key}"' in code or f"'{key}'" in code}
        missing = [part for part in self.switches if part not in named]
        if not named:
            return None
        if missing:
            self.notes.append(
                f"the winning code has no switch for {', '.join(map(repr, missing))}, so no ablation removes it"
            )
        jobs: list[tuple[str, str, dict[str, str], str | None]] = []
        for part, key in list(named.items())[: self.cfg.max_parts]:
            name = f"code-without-{key}"
            outcome.summary.parts.append(f"{name}: part {part!r} switched off")
            description = (
                f"the winning code ({winner.record.id}) with its part {part!r} switched off ({PARTS_FILE}: {key} false)"
            )
            jobs.append((name, description, dict(winner.files), key))
        return jobs

    def _hunk_jobs(
        self, winner: _Node, outcome: SearchOutcome, why: str
    ) -> list[tuple[str, str, dict[str, str], str | None]]:
        """The fallback: the winner without each contiguous change of its diff (the largest ``max_parts``, when it
        made two or more), labelled as hunks, not parts of the idea."""
        parts = [
            (path, k, i1, i2, j1, j2)
            for path, after in sorted(winner.files.items())
            for k, (i1, i2, j1, j2) in enumerate(change_regions(self.original.get(path, ""), after))
        ]
        if len(parts) < 2:
            return []
        parts = sorted(parts, key=lambda p: -(p[3] - p[2] + p[5] - p[4]))[: self.cfg.max_parts]
        jobs: list[tuple[str, str, dict[str, str], str | None]] = []
        for number, (path, k, i1, _i2, j1, j2) in enumerate(sorted(parts, key=lambda p: (p[0], p[1])), 1):
            before = self.original.get(path, "")
            files = dict(winner.files)
            if before:
                files[path] = without_change(before, winner.files[path], k)
            else:
                files.pop(path)  # a new file: the ablation leaves it out
            where = f"{path} lines {j1 + 1}-{j2}" if j2 > j1 else f"{path} at line {i1 + 1}"
            name = f"code-without-hunk{number}"
            outcome.summary.parts.append(f"{name}: diff hunk at {where} (a fallback: {why})")
            description = (
                f"the winning code ({winner.record.id}) without diff hunk {number} at {where}; a fallback ablation by "
                f"hunk, since {why}"
            )
            jobs.append((name, description, files, None))
        return jobs


def _same(ran: Value, promised: Value) -> bool:
    """Whether a run's recorded setting is the promised one (numbers compared as numbers)."""
    try:
        return math.isclose(float(ran), float(promised), rel_tol=1e-9)
    except (TypeError, ValueError):
        return str(ran) == str(promised)


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)
