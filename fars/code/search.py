"""The search over programs: the model edits a working copy of the template's code, runs it, reads back, tries again.

Each node is a version of the code: a *draft* edits the template's own code to implement the
hypothesis; a *debug* node fixes a failed node from its error tail; an *improve* node changes the
best working node after reading its metrics and learning curve. A node's edits (``fars.code.edits``)
are applied to a fresh copy of the template folder; the copy is smoke-run at the template's smoke
scale and then run over the plan's seeds, every run inside the sandbox (the runner the stage hands in).
The first draft runs alone; when its reply holds no edit at all (a weak model ignoring the format), the
search ends there, one call spent. A node is *buggy* (its edits did not apply or parse, its runs failed, timed out or reported a
non-finite metric), or *better*, *same* or *worse* than the baseline by its mean. The search is
bounded (drafts, debug depth, improvement steps, nodes in all, nodes at once) and deterministic given
its nodes' outcomes, so a resumed search takes the same path: a node the ledger already holds is not
run or paid for again.

The winner, the best node better than the baseline, becomes the condition ``code``; each of its
changes (a contiguous region of a file it altered) is then put back to the template's version, one at
a time, as ablation conditions ``code-without-change<k>``. When no node beats the baseline the plan's
own conditions stand alone: the project never fails because the model could not write code.
"""

from __future__ import annotations

import asyncio
import difflib
import logging
import math
import shutil
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from experiments.metrics import Metrics
from experiments.spec import TemplateSpec
from fars.code.edits import Edit, apply_edits, parse_edits, read_editable, unified_diff
from fars.config import CodeSearchConfig
from fars.evaluation.stats import welch_t
from fars.run.contracts import CodeNode, CodeSearchSummary, NodeKind
from fars.safe_files import remove_tree

log = logging.getLogger(__name__)
SYSTEM = (
    "You edit the code of a machine learning experiment to test a research hypothesis. You change as little as "
    "needed, keep every command-line flag and the metrics.json the script writes, and import only the standard "
    "library and what the code already imports."
)
FORMAT = """Reply with your edits and nothing else. For each file: its path on a line of its own, then one or more blocks

<<<<<<< SEARCH
lines exactly as they are in the file now
=======
the lines to put in their place
>>>>>>> REPLACE

or, for a new file (such as method.py, which the script loads with --method when it exists), its path on a line of
its own and the whole file in one ```python block."""
MAX_FILE_SHOWN = 14_000  # characters of each file shown to the model


class Completer(Protocol):
    """What the search needs of the model client."""

    async def complete(self, messages: list[dict[str, str]], *, max_tokens: int | None = None) -> Any: ...


# (the copy's folder, the runs' folder, seeds, steps, time limit or None) -> one Metrics per seed, or why not
RunCode = Callable[[Path, Path, list[int], int, float | None], Awaitable[list[Metrics] | str]]


@dataclass
class _Node:
    record: CodeNode
    files: dict[str, str] = field(default_factory=dict)  # the editable files (and new ones) of this version
    runs: list[Metrics] = field(default_factory=list)


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
    ) -> None:
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
        self.original = read_editable(spec.folder, spec.editable)
        self.nodes: list[_Node] = []
        self.sign = 1.0 if spec.higher_is_better else -1.0
        self.baseline_mean = sum(baseline) / len(baseline) if baseline else float("nan")

    # -- prompts ------------------------------------------------------------------------------------
    def _show(self, files: dict[str, str]) -> str:
        return "\n\n".join(f"{path}:\n```python\n{text[:MAX_FILE_SHOWN]}\n```" for path, text in sorted(files.items()))

    def _task(self) -> str:
        direction = "higher" if self.spec.higher_is_better else "lower"
        points = f" It may define: {self.spec.extension}" if self.spec.extension else ""
        return (
            f"Experiment: {self.spec.title}. {self.spec.description}\nMetric: {self.spec.metric} ({direction} is better); "
            f"the baseline reaches {self.baseline_mean:.4f} over {len(self.baseline)} seeds.\n"
            f"Hypothesis to test: {self.hypothesis}\nThe plan already tests {self.method} with the template's own "
            f"settings; write code that implements the hypothesis better than settings can.{points}\n"
            f"You may edit: {', '.join(self.spec.editable) or 'no file of the template'}, or add a new .py file."
        )

    def _prompt(self, node_id: str, kind: NodeKind, parent: _Node | None) -> list[dict[str, str]]:
        files = parent.files if parent is not None else self.original
        if kind == "draft" or parent is None:
            number = int(node_id.removeprefix("n")) + 1
            other = " Take a different approach from the other drafts." if self.cfg.drafts > 1 and number > 1 else ""
            ask = (
                f"{self._task()}\n\nThe code now:\n\n{self._show(files)}\n\nDraft {number} of {self.cfg.drafts} "
                f"(version {node_id}).{other} {FORMAT}"
            )
        elif kind == "debug":
            ask = (
                f"{self._task()}\n\nYour last version of the code:\n\n{self._show(files)}\n\nIt failed:\n"
                f"{(parent.record.error or '')[-1500:]}\n\nFix it (version {node_id}, debugging {parent.record.id}). {FORMAT}"
            )
        else:
            ask = (
                f"{self._task()}\n\nYour best version so far reaches {parent.record.mean:.4f} (the baseline "
                f"{self.baseline_mean:.4f}); its {self.spec.metric} over training: {curve_summary(parent.runs)}.\n"
                f"The code:\n\n{self._show(files)}\n\nImprove it further (version {node_id}, improving "
                f"{parent.record.id}). {FORMAT}"
            )
        return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": ask}]

    # -- one node -------------------------------------------------------------------------------------
    def _copy(self, node_id: str, files: dict[str, str]) -> Path:
        """A fresh working copy of the template folder with ``files`` written over it."""
        src = self.folder / node_id / "src"
        src.parent.mkdir(parents=True, exist_ok=True)
        remove_tree(src)  # links unfollowed, however deep: what a killed session left cannot steer the copy
        shutil.copytree(self.spec.folder, src, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"), symlinks=False)
        for path, text in files.items():
            (src / path).write_text(text, encoding="utf-8")
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
            applied = apply_edits(parse_edits(known[1] or ""), base, self.spec.editable)
            node = _Node(record, {**base, **applied.files})
            if record.verdict != "buggy":  # its runs' metrics.json are on disk: read back, not run again
                runs = await self.run_code(self._copy(node_id, node.files), self.folder / node_id / "runs",
                                           self.seeds, self.steps, None)  # fmt: skip
                node.runs = runs if not isinstance(runs, str) else []
            return node
        reply = await self.llm.complete(self._prompt(node_id, kind, parent), max_tokens=self.cfg.max_tokens or 1500)
        text = str(reply.text)
        (self.folder / node_id).mkdir(parents=True, exist_ok=True)
        (self.folder / node_id / "reply.txt").write_text(text, encoding="utf-8")
        edits: list[Edit] = parse_edits(text)
        applied = apply_edits(edits, base, self.spec.editable)
        record.edits = [e.label() for e in edits]
        files = {**base, **applied.files}
        node = _Node(record, files)
        if applied.problems:
            record.error = "the edits were refused: " + "; ".join(applied.problems)
        else:
            diff = unified_diff(self.original, files)
            patch = self.folder / node_id / "diff.patch"
            patch.write_text(diff, encoding="utf-8")
            record.diff = str(patch.relative_to(self.run_dir))
            src = self._copy(node_id, files)
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
        record.verdict = verdict  # type: ignore[assignment]
        record.p_vs_baseline = p

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
            outcome.summary.reason = "the first draft held no edit (the reply ignores the edit format), so the search "
            outcome.summary.reason += "stopped there: the plan's conditions stand alone"
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
            return SearchOutcome(summary)
        winner = max(better, key=lambda n: self.sign * (n.record.mean or 0.0))
        summary.winner = winner.record.id
        summary.diff = winner.record.diff
        summary.reason = (
            f"{winner.record.id} reached {winner.record.mean:.4f} against the baseline's {self.baseline_mean:.4f}"
        )
        outcome = SearchOutcome(summary, winner_runs=winner.runs)
        if self.cfg.ablations:
            await self._ablate(winner, outcome)
        return outcome

    async def _ablate(self, winner: _Node, outcome: SearchOutcome) -> None:
        """Run the winner without each of its changes (the largest ``max_parts``, when it made two or more)."""
        parts = [
            (path, k, i1, i2, j1, j2)
            for path, after in sorted(winner.files.items())
            for k, (i1, i2, j1, j2) in enumerate(change_regions(self.original.get(path, ""), after))
        ]
        if len(parts) < 2:
            return
        parts = sorted(parts, key=lambda p: -(p[3] - p[2] + p[5] - p[4]))[: self.cfg.max_parts]
        jobs = []
        for number, (path, k, i1, _i2, j1, j2) in enumerate(sorted(parts, key=lambda p: (p[0], p[1])), 1):
            before = self.original.get(path, "")
            files = dict(winner.files)
            if before:
                files[path] = without_change(before, winner.files[path], k)
            else:
                files.pop(path)  # a new file: the ablation leaves it out
            where = f"{path} lines {j1 + 1}-{j2}" if j2 > j1 else f"{path} at line {i1 + 1}"
            name = f"code-without-change{number}"
            outcome.summary.parts.append(f"{name}: {where}")
            jobs.append((name, where, files))

        async def run(name: str, where: str, files: dict[str, str]) -> tuple[str, str, list[Metrics] | str]:
            src = self._copy(f"{winner.record.id}-{name}", files)
            return name, where, await self.run_code(src, src.parent / "runs", self.seeds, self.steps, None)

        for name, where, runs in await asyncio.gather(*(run(*j) for j in jobs)):
            if isinstance(runs, str):
                log.warning("ablation %s of the winning code failed: %s", name, runs[-300:])
                continue
            outcome.ablations[name] = (f"the winning code ({winner.record.id}) without its change at {where}", runs)


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)
