"""Ask the subject model to judge generated items in both orders and write ``metrics.json`` (no training).

Usage: ``python train.py --out_dir DIR --seed 0 --steps 40 --format xml --labels numbers ...`` (every
knob and component of template.yaml is a flag; a step is one item, asked twice). The subject model is
an OpenAI-compatible chat endpoint: ``POST $FARS_SUBJECT_URL/chat/completions`` with the model
``$FARS_SUBJECT_MODEL``. Inside FARS that is the run's gateway (fars/executor/gateway.py), so every
call is counted, budgeted, cached and replayed like the harness's own; outside it, any such server
works (``FARS_SUBJECT_URL=http://127.0.0.1:8000/v1``). Standard library and pydantic only (no torch).

A weak subject scores near chance, often with a strong position bias: that is the measurement, not a
failure. Replies that name neither label are counted as invalid; a call the gateway refuses for budget
ends the run early with the items done so far (``items`` in ``final`` says how many).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import random
import re
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from experiments.extension import load_method
from experiments.llm_judge import SPEC
from experiments.llm_judge.items import Item, make_item
from experiments.metrics import Curves, Metrics, Provenance, write_metrics
from experiments.provenance import combined_sha256, config_sha256, file_sha256

LABELS = {"letters": ["A", "B"], "numbers": ["1", "2"], "ordinal": ["first", "second"]}
INSTRUCTIONS = {
    "none": "",
    "careful": "Check each candidate carefully, and judge which one is correct, not where it is listed.\n",
    "random_order": "The candidates are listed in random order.\n",
}
TASK = "Two candidates answer the question below, and exactly one of them is correct."
SHOT_SEED = 7919  # worked examples come from their own stream, never from the evaluated items


class SubjectError(RuntimeError):
    """The subject model's endpoint could not be used at all (unreachable, refused, misconfigured)."""


class BudgetExhausted(RuntimeError):
    """The gateway refused a call because the run's budget is spent."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Flags: run options, one per knob and component, and the engine flags every job is given."""
    p = SPEC.argument_parser()
    # the engine flags the Experiment stage passes to every job; an inference run is one plain process
    p.add_argument("--engine", choices=["plain", "ddp", "deepspeed"], default="plain")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="unused: the subject runs elsewhere")
    p.add_argument("--ds_config", type=Path, default=None, help="unused (no training)")
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32", help="unused (no training)")
    p.add_argument("--grad_accum", type=int, default=1, help="unused (no training)")
    p.add_argument("--grad_clip", type=float, default=0.0, help="unused (no training)")
    p.add_argument("--zero_stage", type=int, choices=[0, 1, 2, 3], default=0, help="unused (no training)")
    p.add_argument("--compile", action="store_true", help="unused (no training)")
    p.add_argument("--method", type=Path, default=None, help="a method module defining the extension points")
    p.add_argument("--workers", type=int, default=4, help="requests in flight at once")
    p.add_argument("--request_timeout", type=float, default=900.0, help="seconds to wait for one reply")
    p.add_argument("--eval_every", type=int, default=0, help="0: about 20 curve points per run")
    args = p.parse_args(argv)
    if args.engine != "plain":
        p.error(f"--engine {args.engine}: llm_judge is an inference template and runs as one plain process")
    return args


# -- prompts ---------------------------------------------------------------------------------------
def layout(question: str, candidates: list[str], labels: list[str], fmt: str) -> str:
    """The question and the two labelled candidates in the format component's layout."""
    if fmt == "json":
        block = {
            "question": question,
            "candidates": [{"label": la, "text": c} for la, c in zip(labels, candidates, strict=True)],
        }
        return json.dumps(block)
    if fmt == "xml":
        tags = [f'<candidate label="{la}">{c}</candidate>' for la, c in zip(labels, candidates, strict=True)]
        return "\n".join([f"<question>{question}</question>", *tags])
    return "\n".join([f"Question: {question}", *(f"{la}: {c}" for la, c in zip(labels, candidates, strict=True))])


def reply_for(label: str, output: str) -> str:
    """How a judge answers ``label`` under the output component (used for the worked examples)."""
    return json.dumps({"answer": label}) if output == "schema" else label


def prompt(question: str, candidates: list[str], labels: list[str], config: dict[str, Any]) -> str:
    """The user turn for one order of one item."""
    first, second = labels
    if config["output"] == "schema":
        ask = f'Reply with JSON naming the correct candidate: {{"answer": "{first}"}} or {{"answer": "{second}"}}.'
    else:
        ask = f"Reply with {first} or {second} only, naming the correct candidate."
    return f"{TASK}\n\n{layout(question, candidates, labels, config['format'])}\n\n{INSTRUCTIONS[config['instruction']]}{ask}"


def shots(item_index: int, seed: int, labels: list[str], config: dict[str, Any]) -> list[dict[str, str]]:
    """Two solved items of the same family as earlier turns: correct first in one, second in the other."""
    turns: list[dict[str, str]] = []
    rng = random.Random(f"shots:{seed}:{item_index}")
    slots = [0, 1]
    rng.shuffle(slots)
    for k, slot in enumerate(slots):
        example = make_item(config["task"], config["difficulty"], SHOT_SEED + seed, 2 * item_index + k, stream="shot")
        shown = [example.correct, example.wrong] if slot == 0 else [example.wrong, example.correct]
        turns.append({"role": "user", "content": prompt(example.question, shown, labels, config)})
        turns.append({"role": "assistant", "content": reply_for(labels[slot], config["output"])})
    return turns


def build_messages(item: dict[str, Any], labels: list[str], config: dict[str, Any]) -> list[dict[str, str]]:
    """The chat messages for one order of an item (``item['candidates']`` in slot order)."""
    examples = shots(item["index"], item["seed"], labels, config) if config["shots"] == "two" else []
    return [*examples, {"role": "user", "content": prompt(item["question"], item["candidates"], labels, config)}]


def response_format(labels: list[str], output: str) -> dict[str, Any] | None:
    """The JSON schema that keeps the reply to one of the two labels (None for free text)."""
    if output != "schema":
        return None
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "string", "enum": list(labels)}},
        "required": ["answer"],
        "additionalProperties": False,
    }
    return {"type": "json_schema", "json_schema": {"name": "Verdict", "schema": schema, "strict": True}}


def parse_verdict(text: str, labels: list[str]) -> int | None:
    """The slot a reply picks: its JSON ``answer``, else the one label the text names alone; None if neither."""
    stripped = text.strip()
    try:
        answer = json.loads(stripped).get("answer") if stripped.startswith("{") else None
    except (ValueError, AttributeError):
        answer = None
    if isinstance(answer, str) and answer.strip() in labels:
        return labels.index(answer.strip())
    named = [i for i, la in enumerate(labels) if _names(stripped, la)]
    return named[0] if len(named) == 1 else None


def _names(text: str, label: str) -> bool:
    """Whether ``text`` has ``label`` as a word of its own (``first`` in any case; ``A`` or ``1`` exactly)."""
    flags = re.IGNORECASE if len(label) > 1 else 0
    return re.search(rf"(?<!\w){re.escape(label)}(?!\w)", text, flags) is not None


# -- the subject -----------------------------------------------------------------------------------
@dataclass
class Reply:
    """One call's outcome: the text (empty when the call failed), its token counts and any error."""

    text: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str = ""


class Subject:
    """The subject model behind an OpenAI-compatible ``/chat/completions`` endpoint (urllib, no SDK)."""

    def __init__(self, url: str, model: str, timeout_s: float) -> None:
        self.url = url.rstrip("/") + "/chat/completions"
        self.model = model
        self.timeout_s = timeout_s

    @classmethod
    def from_env(cls, timeout_s: float) -> Subject:
        """The subject FARS (or the user) names in FARS_SUBJECT_URL and FARS_SUBJECT_MODEL."""
        url = os.environ.get("FARS_SUBJECT_URL", "").strip()
        if not url:
            raise SystemExit(
                "FARS_SUBJECT_URL is not set: llm_judge studies a language model and reaches it through an "
                "OpenAI-compatible endpoint. Run it through FARS (its jobs get the run's gateway), or set "
                "FARS_SUBJECT_URL=http://HOST:PORT/v1 (and FARS_SUBJECT_MODEL) to a server of your own."
            )
        return cls(url, os.environ.get("FARS_SUBJECT_MODEL", "default"), timeout_s)

    def ask(self, messages: list[dict[str, str]], fmt: dict[str, Any] | None, max_tokens: int) -> Reply:
        """One chat completion; HTTP faults of one call come back in ``Reply.error``, fatal ones raise."""
        body: dict[str, Any] = {"model": self.model, "messages": messages, "max_tokens": max_tokens}
        if fmt is not None:
            body["response_format"] = fmt
        request = urllib.request.Request(
            self.url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                data = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            detail = _error_text(exc)
            if exc.code == 429 and "budget" in detail:
                raise BudgetExhausted(detail) from None
            if exc.code in (401, 403, 404):
                raise SubjectError(f"{self.url} refused the call ({exc.code}: {detail})") from None
            return Reply(error=f"HTTP {exc.code}: {detail}")
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            reason = getattr(exc, "reason", exc)
            if isinstance(reason, TimeoutError | OSError) and "timed out" in str(reason):
                return Reply(error=f"no reply within {self.timeout_s:.0f}s")
            raise SubjectError(f"cannot reach the subject model at {self.url} ({reason})") from None
        except ValueError as exc:
            return Reply(error=f"not a JSON reply ({exc})")
        try:
            text = data["choices"][0]["message"]["content"] or ""
        except (KeyError, IndexError, TypeError):
            return Reply(error=f"not a chat completion: {str(data)[:200]}")
        usage = data.get("usage") or {}
        return Reply(str(text), int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))


def _error_text(exc: urllib.error.HTTPError) -> str:
    try:
        payload = json.loads(exc.read() or b"{}")
        return str(payload.get("error", {}).get("message") or payload)[:300]
    except (ValueError, AttributeError):
        return str(exc.reason)[:300]


# -- scoring ---------------------------------------------------------------------------------------
@dataclass
class Judged:
    """An item's two verdicts: ``picks[o]`` is the slot chosen when the correct answer sat in slot ``o``."""

    family: str
    picks: tuple[int | None, int | None]
    errors: int
    single_order: int  # the order whose verdict counts under aggregation=single

    def correct(self, order: int) -> bool | None:
        """Whether the verdict of that order is right (None when the reply named no label)."""
        pick = self.picks[order]
        return None if pick is None else pick == order

    def score(self, aggregation: str) -> float:
        """1, 0 or (a tie of the two orders under ``both``) 0.5."""
        if aggregation == "single":
            return 1.0 if self.correct(self.single_order) else 0.0
        verdicts = [c for c in (self.correct(0), self.correct(1)) if c is not None]
        if not verdicts:
            return 0.0
        if len(verdicts) == 1 or verdicts[0] == verdicts[1]:
            return 1.0 if verdicts[0] else 0.0
        return 0.5

    @property
    def consistent(self) -> bool:
        """Both orders picked the same candidate (not the same slot)."""
        return None not in self.picks and self.correct(0) == self.correct(1)


def summary(judged: list[Judged], aggregation: str) -> dict[str, float]:
    """The headline accuracy and the bias measures over the items judged."""
    picks = [p for j in judged for p in j.picks]
    valid = [p for p in picks if p is not None]
    first_rate = sum(1 for p in valid if p == 0) / len(valid) if valid else 0.5
    per_order = [[j.correct(o) for j in judged] for o in (0, 1)]
    out = {
        "accuracy": sum(j.score(aggregation) for j in judged) / len(judged),
        "prompt_accuracy": sum(1 for c in [*per_order[0], *per_order[1]] if c) / len(picks),
        "accuracy_correct_first": sum(1 for c in per_order[0] if c) / len(judged),
        "accuracy_correct_second": sum(1 for c in per_order[1] if c) / len(judged),
        "first_slot_rate": first_rate,
        "position_bias": abs(first_rate - 0.5) * 2,
        "consistency": sum(1 for j in judged if j.consistent) / len(judged),
        "invalid_rate": (len(picks) - len(valid)) / len(picks),
        "error_rate": sum(j.errors for j in judged) / len(picks),
        "items": float(len(judged)),
    }
    for family in sorted({j.family for j in judged}):
        members = [j for j in judged if j.family == family]
        out[f"accuracy_{family}"] = sum(j.score(aggregation) for j in members) / len(members)
    return out


# -- the run ---------------------------------------------------------------------------------------
def judge_all(
    args: argparse.Namespace, config: dict[str, Any], subject: Subject, method: ModuleType | None
) -> tuple[list[Judged], dict[str, int]]:
    """Ask every item in both orders; stops early (keeping whole items) if the budget runs out."""
    labels = LABELS[args.labels]
    fmt = response_format(labels, args.output)
    make_messages = getattr(method, "build_messages", None) or build_messages
    read = getattr(method, "parse_verdict", None) or parse_verdict
    items: list[Item] = [make_item(args.task, args.difficulty, args.seed, i) for i in range(args.steps)]
    jobs = []
    for index, item in enumerate(items):
        for order in (0, 1):  # order 0: the correct candidate in the first slot
            shown = [item.correct, item.wrong] if order == 0 else [item.wrong, item.correct]
            spec = {
                "index": index,
                "seed": args.seed,
                "family": item.family,
                "question": item.question,
                "candidates": shown,
            }
            jobs.append((index, order, make_messages(spec, labels, dict(config))))
    replies: dict[tuple[int, int], Reply] = {}
    tokens = {"prompt": 0, "completion": 0}
    stop: BudgetExhausted | None = None
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.workers)) as pool:
        futures = {pool.submit(subject.ask, msgs, fmt, args.max_tokens): (i, o) for i, o, msgs in jobs}
        for future in concurrent.futures.as_completed(futures):
            if future.cancelled():  # not started before the budget ran out
                continue
            try:
                reply = future.result()
            except BudgetExhausted as exc:
                stop = exc
                for other in futures:
                    other.cancel()
                continue
            replies[futures[future]] = reply
            tokens["prompt"] += reply.prompt_tokens
            tokens["completion"] += reply.completion_tokens
    if replies and all(r.error for r in replies.values()):
        first = next(iter(replies.values())).error
        raise SubjectError(f"every call to the subject model at {subject.url} failed; one said: {first}")
    singles = [i % 2 for i in range(len(items))]  # half the items count order 0, half order 1, in a seeded order
    random.Random(f"order:{args.seed}").shuffle(singles)
    judged = []
    for index, item in enumerate(items):
        single = singles[index]
        if (index, 0) not in replies or (index, 1) not in replies:
            break  # the budget ended the run here: keep only items whose both orders were asked
        pair = [replies[(index, 0)], replies[(index, 1)]]
        picks = [None if r.error else read(r.text, labels) for r in pair]
        judged.append(Judged(item.family, (picks[0], picks[1]), sum(bool(r.error) for r in pair), single))
    if stop is not None:
        print(f"llm_judge: {stop}; scored the first {len(judged)} of {len(items)} items", file=sys.stderr)
    if not judged:
        raise SubjectError(f"no item was judged ({stop or 'no replies'})")
    return judged, tokens


def provenance(config: dict[str, Any], method: Path | None) -> Provenance:
    """Hashes of this template's code (and the method's) and of the config; no torch here."""
    here = Path(__file__).resolve().parent
    paths = [*sorted(here.glob("*.py")), here.parent / "metrics.py", here.parent / "extension.py"]
    if method is not None:
        paths.append(method)
    files = {f"{p.parent.name}/{p.name}": file_sha256(p) for p in paths}
    return Provenance(code_sha256=combined_sha256(files), config_sha256=config_sha256(config), files=files)


def main(argv: list[str] | None = None) -> Metrics:
    """Judge ``--steps`` items in both orders, write ``metrics.json`` and return it."""
    args = parse_args(argv)
    if args.steps < 1:
        raise SystemExit(f"--steps {args.steps}: judge at least one item")
    config = {name: getattr(args, name) for name in [*(k.name for k in SPEC.knobs), *SPEC.component_names]}
    method = load_method(args.method)
    subject = Subject.from_env(args.request_timeout)
    start = time.perf_counter()
    try:
        judged, tokens = judge_all(args, config, subject, method)
    except SubjectError as exc:
        raise SystemExit(f"llm_judge: {exc}") from None
    wall = time.perf_counter() - start
    every = args.eval_every or max(1, len(judged) // 20)
    steps = [n for n in range(1, len(judged) + 1) if n % every == 0 or n == len(judged)]
    curve = [sum(j.score(args.aggregation) for j in judged[:n]) / n for n in steps]
    prompts = 2 * len(judged)
    metrics = Metrics(
        template=SPEC.name,
        engine="plain",
        device="cpu",
        seed=args.seed,
        steps=args.steps,
        config={**config, "subject": subject.model},
        metric=SPEC.metric,
        final=summary(judged, args.aggregation),
        curves=Curves(step=steps, val_metric=curve),
        wall_s=wall,
        examples_per_s=prompts / max(wall, 1e-9),
        tokens_per_s=(tokens["prompt"] + tokens["completion"]) / max(wall, 1e-9),
        parameters=0,  # the subject's size is not known here
        method=file_sha256(args.method) if args.method else None,
        provenance=provenance(config, args.method),
    )
    write_metrics(metrics, args.out_dir)
    return metrics


if __name__ == "__main__":
    main()
