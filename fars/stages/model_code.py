"""Model-written method code: the model writes a module against a template's extension point.

Each attempt is written to the project folder, checked for syntax, then smoke-run for a few steps as a
real training job in a subprocess with a time limit and a scrubbed environment (no API keys). An error
goes back to the model with the log's tail, up to ``max_attempts``; every attempt is recorded in the
ledger. ``None`` as the result means the parametric plan stands alone (the fallback, never skipped).
"""

from __future__ import annotations

import ast
import hashlib
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel

from experiments.spec import TemplateSpec
from fars.config import ModelCodeConfig

_BLOCK = re.compile(r"```(?:python|py)?\s*\n(.*?)```", re.DOTALL)


class Completer(Protocol):
    """What this needs of the model client: one chat completion returning an object with ``.text``."""

    async def complete(self, messages: list[dict[str, str]], *, max_tokens: int | None = None) -> Any: ...


class CodeAttempt(BaseModel):
    """One attempt: its file, whether it passed the smoke run, and why not."""

    attempt: int
    path: str | None
    sha256: str | None
    ok: bool
    error: str | None
    seconds: float


def extract_code(text: str) -> str | None:
    """The Python module in a reply: the longest fenced block, else the whole reply if it parses."""
    blocks = _BLOCK.findall(text)
    if blocks:
        return str(max(blocks, key=len)).strip() + "\n"
    try:
        ast.parse(text)
    except SyntaxError:
        return None
    return text.strip() + "\n" if text.strip() and ("def " in text) else None


def syntax_error(code: str) -> str | None:
    """A short description of the module's syntax error, or None."""
    try:
        ast.parse(code)
    except SyntaxError as exc:
        return f"SyntaxError: {exc.msg} (line {exc.lineno})"
    if not any(name in code for name in ("def build_model", "def make_optimizer", "def loss")):
        return "the module defines none of build_model, make_optimizer, loss"
    return None


def first_prompt(template: TemplateSpec, hypothesis: str) -> list[dict[str, str]]:
    """The request for a method module."""
    return [
        {"role": "system", "content": "You write short, correct PyTorch code. Reply with one ```python block only."},
        {
            "role": "user",
            "content": (
                f"Experiment: {template.description}\nHypothesis to test: {hypothesis}\n"
                f"Write a method module for this experiment. Contract: {template.extension}\n"
                "Import only torch, math and the standard library. Keep it under 80 lines."
            ),
        },
    ]


async def write_method(
    llm: Completer,
    template: TemplateSpec,
    hypothesis: str,
    folder: Path,
    cfg: ModelCodeConfig,
    smoke: Callable[[Path], Awaitable[str | None]],
    record: Callable[[CodeAttempt], None],
) -> Path | None:
    """Ask for a method module, smoke-run it, feed errors back; the first module that passes, or None."""
    folder.mkdir(parents=True, exist_ok=True)
    messages = first_prompt(template, hypothesis)
    for attempt in range(1, cfg.max_attempts + 1):
        started = time.perf_counter()
        reply = await llm.complete(messages, max_tokens=cfg.max_tokens)
        text = str(reply.text)
        code = extract_code(text)
        path: Path | None = None
        if code is None:
            error: str | None = "no Python code found in the reply; reply with one ```python block"
        else:
            path = folder / f"method_attempt{attempt}.py"
            path.write_text(code, encoding="utf-8")
            error = syntax_error(code) or await smoke(path)
        record(
            CodeAttempt(
                attempt=attempt,
                path=str(path) if path else None,
                sha256=hashlib.sha256(path.read_bytes()).hexdigest() if path else None,
                ok=error is None,
                error=error[-1500:] if error else None,
                seconds=time.perf_counter() - started,
            )
        )
        if error is None and path is not None:
            final = folder / "method.py"
            final.write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
            return final
        messages = [
            *messages,
            {"role": "assistant", "content": text[-3000:]},
            {
                "role": "user",
                "content": f"That module failed:\n{(error or '')[-1200:]}\nFix it. Reply with the whole module in one ```python block.",
            },
        ]
    return None
