"""A deterministic scripted model, registered with litellm as the custom provider ``scripted``.

It stands in for a real model in tests and benchmarks through the very same client path. Replies:
first the configured ``routes`` (replies in order for requests whose last message contains a key) and
``outputs`` in order, then, for a JSON-schema request, a valid instance made from
the schema and seeded by the request (same request, same reply), else a short sentence. Every reply
bills ``output_tokens`` output tokens; input tokens are the words of the prompt.

A scripted output ``!fault:KIND[:ARG]`` injects a provider fault instead of a reply:

* raised like a real provider: ``400`` (the request is invalid), ``429[:SECONDS]`` (rate limit, with a Retry-After header when SECONDS
  is given), ``500``, ``503``, ``timeout``, ``connection``, ``context`` (context length exceeded);
  ``500:billed`` and ``503:billed`` are errors whose body carries a ``usage`` block (the provider billed the try);
* ``hang[:SECONDS]``: no answer for SECONDS (default an hour), so the client's own time-out fires;
* bad replies: ``empty`` (no content, and no usage: not billed), ``empty:billed`` (no content, billed as a
  whole reply, as providers bill a reply spent on hidden reasoning), ``truncated`` (the JSON reply cut in half,
  finish_reason ``length``), ``nonjson`` (prose where JSON was asked). Every reply but ``empty`` is billed.

Like a server, it can refuse ways of asking for structured output (``refuse_modes``: with a 400,
422, or a 500 whose body is a validation error, as llama-cpp-python's server answers
``json_schema``), answers tool calls with the tool's arguments, and follows a schema written in the
system prompt when no format is given. Like a provider with prompt caching (``prompt_cache``), it
reports cached input tokens in its usage the way the real APIs do: ``automatic`` as OpenAI (shared
prefixes of 1024+ tokens, in steps of 128, in ``prompt_tokens_details.cached_tokens``), ``explicit``
as Anthropic (prefixes ending at a ``cache_control`` mark of 1024+ tokens are written, then read:
``cache_creation_input_tokens`` and ``cache_read_input_tokens``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import random
import re
import threading
import time
from typing import Any

import httpx
import litellm
from litellm import CustomLLM
from litellm.types.utils import ChatCompletionMessageToolCall, Function, ModelResponse
from litellm.types.utils import Usage as LiteUsage

from fars.config import ScriptedModelConfig
from fars.context import current_call_context
from fars.llm import stamp_free
from fars.llm.local import common_prefix

_WORD = re.compile(r"[A-Za-z][A-Za-z\-]{2,}")


CACHE_MIN_TOKENS = 1024  # the providers' minimum cacheable prompt (OpenAI; Anthropic's Sonnet and Opus)
CACHE_STEP = 128  # OpenAI caches prefixes in steps of this many tokens


def _text_of(content: Any) -> str:
    """A message content as text (a list of content blocks joined)."""
    if isinstance(content, list):
        return "".join(str(b.get("text", "")) for b in content if isinstance(b, dict))
    return str(content or "")


def prompt_words(messages: list[dict[str, Any]]) -> list[str]:
    """The words of all message contents, in order."""
    return [w for m in messages for w in _text_of(m.get("content", "")).split()]


def marked_prefixes(messages: list[dict[str, Any]]) -> list[int]:
    """Word counts of the prompt up to the end of each content block marked ``cache_control``."""
    counts, total = [], 0
    for message in messages:
        content = message.get("content")
        blocks = content if isinstance(content, list) else [{"text": content}]
        for block in blocks:
            if not isinstance(block, dict):
                continue
            total += len(str(block.get("text", "") or "").split())
            if block.get("cache_control"):
                counts.append(total)
    return counts


def request_mode(optional_params: dict[str, Any]) -> str:
    """How a request asks for structured output: json_schema, json_object, tools or text."""
    if optional_params.get("tools"):
        return "tools"
    fmt = optional_params.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") in ("json_schema", "json_object"):
        return str(fmt["type"])
    return "text"


def request_schema(messages: list[dict[str, Any]], optional_params: dict[str, Any]) -> dict[str, Any] | None:
    """The JSON schema a request asks for, however it asks (format, tool, or written in the prompt)."""
    fmt = optional_params.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        return dict(fmt["json_schema"]["schema"])
    if isinstance(fmt, dict) and isinstance(fmt.get("schema"), dict):
        return dict(fmt["schema"])
    tools = optional_params.get("tools") or []
    if tools:
        return dict(tools[0]["function"].get("parameters") or {})
    for message in messages:  # a model that follows the instruction "... this JSON schema: {...}"
        text = _text_of(message.get("content")) if message.get("role") == "system" else ""
        marker = text.find("JSON schema: {")
        if marker >= 0:
            try:
                found, _ = json.JSONDecoder().raw_decode(text[marker + len("JSON schema: ") :])
            except ValueError:
                continue
            if isinstance(found, dict):
                return found
    return None


RAISED_FAULTS = ("400", "429", "500", "503", "timeout", "connection", "context")
REPLY_FAULTS = ("empty", "truncated", "nonjson", "hang")
BILLED = "billed"  # the ARG of ``empty``, ``500`` and ``503`` that makes the provider bill the failed try
_BILLED_ERRORS = {"500": 500, "503": 503}


def _billed_error_response(status: int, message: str, usage: dict[str, int]) -> httpx.Response:
    """An error response whose JSON body carries the usage the provider billed for the failed try."""
    return httpx.Response(
        status,
        json={"error": {"message": message}, "usage": usage},
        request=httpx.Request("POST", "http://scripted.invalid/v1/chat"),
    )


def _retry_after_response(seconds: str) -> httpx.Response:
    return httpx.Response(
        429, headers={"retry-after": seconds}, request=httpx.Request("POST", "http://scripted.invalid/v1/chat")
    )


def _fault(kind: str, model: str, arg: str | None = None, usage: dict[str, int] | None = None) -> Exception:
    if arg == BILLED and kind in _BILLED_ERRORS:  # a server error that still reports (and bills) usage
        body = _billed_error_response(_BILLED_ERRORS[kind], f"scripted billed {kind}", usage or {})
        if kind == "500":
            return litellm.InternalServerError("scripted billed server error", "scripted", model, response=body)
        return litellm.ServiceUnavailableError("scripted billed overload", "scripted", model, response=body)
    rate_limited = (
        litellm.RateLimitError(
            "scripted rate limit", llm_provider="scripted", model=model, response=_retry_after_response(arg)
        )
        if arg is not None
        else litellm.RateLimitError("scripted rate limit", llm_provider="scripted", model=model)
    )
    faults: dict[str, Exception] = {
        "400": litellm.BadRequestError("scripted invalid request", model=model, llm_provider="scripted"),
        "429": rate_limited,
        "503": litellm.ServiceUnavailableError("scripted overload", llm_provider="scripted", model=model),
        "500": litellm.InternalServerError("scripted server error", llm_provider="scripted", model=model),
        "timeout": litellm.Timeout("scripted time-out", model=model, llm_provider="scripted"),
        "context": litellm.ContextWindowExceededError(
            "scripted context overflow", model=model, llm_provider="scripted"
        ),
        "connection": litellm.APIConnectionError("scripted connection drop", llm_provider="scripted", model=model),
    }
    if kind not in faults:
        return ValueError(f"unknown scripted fault {kind!r}; known: {sorted([*faults, *REPLY_FAULTS])}")
    return faults[kind]


class SchemaSampler:
    """Makes a valid, deterministic instance of a JSON schema (pydantic's flavour, with $defs)."""

    def __init__(self, schema: dict[str, Any], rng: random.Random, vocabulary: list[str]) -> None:
        self.root = schema
        self.rng = rng
        self.vocabulary = vocabulary or ["result"]

    def sample(self, node: dict[str, Any] | None = None, name: str = "value") -> Any:
        """An instance of ``node`` (the root schema by default)."""
        node = self.root if node is None else node
        if "$ref" in node:
            ref = node["$ref"].split("/")[-1]
            return self.sample(self.root.get("$defs", {})[ref], name)
        for key in ("anyOf", "oneOf", "allOf"):
            if key in node:
                options = [o for o in node[key] if o.get("type") != "null"] or node[key]
                return self.sample(options[0], name)
        if "const" in node:
            return node["const"]
        if "enum" in node:
            return self.rng.choice(node["enum"])
        kind = node.get("type", "string")
        if kind == "object":
            props = node.get("properties", {})
            return {key: self.sample(sub, key) for key, sub in props.items()}
        if kind == "array":
            low = int(node.get("minItems", 1))
            high = int(node.get("maxItems", max(low, 3)))
            count = self.rng.randint(low, max(low, min(high, low + 2)))
            return [self.sample(node.get("items", {}), name) for _ in range(count)]
        if kind == "integer":
            low = int(node.get("minimum", node.get("exclusiveMinimum", 0) + 1 if "exclusiveMinimum" in node else 1))
            high = int(node.get("maximum", max(low, 5)))
            return self.rng.randint(low, high)
        if kind == "number":
            start = float(node.get("minimum", 0.0))
            stop = float(node.get("maximum", start + 1.0))
            return round(self.rng.uniform(start, stop), 4)
        if kind == "boolean":
            return self.rng.random() < 0.5
        return self._text(name, int(node.get("minLength", 1)), int(node.get("maxLength", 200)))

    def _text(self, name: str, low: int, high: int) -> str:
        words = [w.strip(".,:;()[]{}\"'").lower() for w in self.vocabulary]
        words = [w for w in words if _WORD.fullmatch(w)] or ["result"]
        picked = [self.rng.choice(words) for _ in range(self.rng.randint(4, 10))]
        text = f"{name.replace('_', ' ')}: {' '.join(picked)}."
        text = text[:high]
        return text if len(text) >= low else text.ljust(low, ".")


class ScriptedProvider(CustomLLM):
    """litellm custom provider with scripted, deterministic replies and fixed output token counts."""

    def __init__(self, cfg: ScriptedModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        known = (*RAISED_FAULTS, *REPLY_FAULTS)
        routes = {**read_routes(cfg.routes_file), **cfg.routes} if cfg.routes_file else dict(cfg.routes)
        every = [*cfg.outputs, *(o for replies in routes.values() for o in replies)]
        unknown = [o for o in every if o.startswith("!fault:") and o[7:].partition(":")[0] not in known]
        if unknown:  # caught here, not inside litellm (which would wrap it as a retryable fault)
            raise ValueError(f"unknown scripted fault {unknown[0][7:]!r} in llm.scripted.outputs; known: {list(known)}")
        billable = ("empty", *_BILLED_ERRORS)
        wrong = [o for o in every if o.startswith("!fault:") and o.endswith(":" + BILLED) and o[7:-7] not in billable]
        if wrong:
            raise ValueError(f"scripted fault {wrong[0][7:]!r} cannot be billed; only {', '.join(billable)} can")
        self._queue = list(cfg.outputs)
        self._routes = {key: list(replies) for key, replies in routes.items()}
        self._lock = threading.Lock()
        self.calls = 0
        self._latency_rng = random.Random(cfg.latency_seed)
        # (project, stage, simulated latency, monotonic time the wait began)
        self.waits: list[tuple[str | None, str | None, float, float]] = []
        self.reply_cpu_s = 0.0  # CPU seconds spent making replies
        self._seen_prompts: list[list[str]] = []  # automatic prompt caching: earlier prompts' words
        self._written: set[tuple[str, ...]] = set()  # explicit prompt caching: prefixes written to the cache
        self.modes: list[str] = []  # how each request asked for structured output, in order

    def sample_latency(self) -> float:
        """The next simulated latency: mean ``latency_s``, drawn from ``latency_dist`` with a seeded RNG.

        Each draw is kept in ``waits`` with the project and stage of the call and when the wait began,
        so a benchmark can compute the ideal throughput for exactly the latencies it simulated.
        """
        mean, spread, rng = self.cfg.latency_s, self.cfg.latency_spread, self._latency_rng
        if not mean:
            return 0.0
        with self._lock:
            if self.cfg.latency_dist == "exponential":
                wait = rng.expovariate(1 / mean)
            elif self.cfg.latency_dist == "lognormal":  # parameters chosen so the mean stays latency_s
                wait = rng.lognormvariate(math.log(mean) - spread**2 / 2, spread)
            elif self.cfg.latency_dist == "uniform":
                wait = rng.uniform(max(0.0, mean * (1 - spread)), mean * (1 + spread))
            else:
                wait = mean
            ctx = current_call_context()
            self.waits.append((ctx.project_id, ctx.stage, wait, time.monotonic()))
        return wait

    def _next_scripted(self, messages: list[dict[str, Any]]) -> str | None:
        last = str(messages[-1].get("content", "")) if messages else ""
        with self._lock:
            self.calls += 1
            for key, replies in self._routes.items():
                if replies and key in last:
                    return replies.pop(0)
            return self._queue.pop(0) if self._queue else None

    def reply(
        self, model: str, messages: list[dict[str, Any]], optional_params: dict[str, Any], scripted: str | None
    ) -> tuple[str, str]:
        """The reply text and finish reason for a request, given the scripted output it drew (if any).

        Raises the scripted provider fault for ``!fault:KIND`` kinds that a provider raises.
        """
        if scripted is None:
            return self.generate(messages, optional_params), "stop"
        if not scripted.startswith("!fault:"):
            return scripted, "stop"
        kind, _, arg = scripted.removeprefix("!fault:").partition(":")
        if kind == "empty":
            return "", "stop"
        if kind == "nonjson":
            return "I would rather describe the result in words than as JSON.", "stop"
        if kind == "truncated":
            whole = self.generate(messages, optional_params)
            return whole[: max(1, len(whole) // 2)], "length"
        if kind == "hang":
            return self.generate(messages, optional_params), "stop"  # the wait happened before
        words = len(prompt_words(messages))
        usage = {"prompt_tokens": words, "completion_tokens": self.cfg.output_tokens}
        raise _fault(kind, f"scripted/{model}", arg or None, usage)

    def generate(self, messages: list[dict[str, Any]], optional_params: dict[str, Any]) -> str:
        """The deterministic reply made from the request: a schema instance, or a short sentence.

        Seeded by the request's text and format (content blocks marked for caching read as their text).
        """
        schema = request_schema(messages, optional_params)
        plain = [{**m, "content": _text_of(m.get("content"))} for m in messages]
        tools = optional_params.get("tools")
        seed_text = json.dumps(
            [plain, optional_params.get("response_format") or ({"tools": tools} if tools else None)],
            sort_keys=True,
            default=str,
        )
        rng = random.Random(hashlib.sha256(seed_text.encode()).hexdigest())
        if schema is not None:
            return json.dumps(SchemaSampler(schema, rng, prompt_words(messages)[-200:]).sample())
        words = prompt_words(messages)[-50:] or ["ok"]
        return " ".join(rng.choice(words) for _ in range(self.cfg.output_tokens))

    def refusal(self, model: str, optional_params: dict[str, Any]) -> Exception | None:
        """The error a server gives for a structured-output mode it does not take (``refuse_modes``), if any."""
        mode = request_mode(optional_params)
        with self._lock:
            self.modes.append(mode)
        if mode not in self.cfg.refuse_modes:
            return None
        detail = (
            "1 validation error:\n  {'type': 'literal_error', 'loc': ('body', 'response_format', 'type'), "
            f"'msg': \"Input should be 'text' or 'json_object'\", 'input': '{mode}'}}"
        )
        where = f"scripted/{model}"
        if self.cfg.refuse_status == 400:
            return litellm.BadRequestError(f"unsupported {mode}: {detail}", model=where, llm_provider="scripted")
        if self.cfg.refuse_status == 422:
            return litellm.UnprocessableEntityError(
                f"unprocessable {mode}: {detail}",
                model=where,
                llm_provider="scripted",
                response=httpx.Response(422, request=httpx.Request("POST", "http://scripted.invalid/v1/chat")),
            )
        return litellm.InternalServerError(detail, llm_provider="scripted", model=where)

    def cached_tokens(self, messages: list[dict[str, Any]]) -> tuple[int, int]:
        """(tokens read from the prompt cache, tokens written to it) for a prompt, as the configured provider does."""
        words = prompt_words(messages)
        with self._lock:
            if self.cfg.prompt_cache == "automatic":
                shared = max((common_prefix(words, earlier) for earlier in self._seen_prompts), default=0)
                self._seen_prompts.append(words)
                if len(words) < CACHE_MIN_TOKENS or shared < CACHE_MIN_TOKENS:
                    return 0, 0
                return min(shared, len(words) - 1) // CACHE_STEP * CACHE_STEP, 0
            if self.cfg.prompt_cache == "explicit":
                read = written = 0
                for end in marked_prefixes(messages):
                    if end < CACHE_MIN_TOKENS:
                        continue
                    prefix = tuple(words[:end])
                    if prefix in self._written:
                        read = max(read, end)
                    else:
                        self._written.add(prefix)
                        written = max(written, end)
                return read, max(0, written - read)
        return 0, 0

    def _respond(
        self, model: str, messages: list, optional_params: dict, model_response: ModelResponse, scripted: str | None
    ) -> ModelResponse:
        started = time.thread_time()
        text, finish = self.reply(model, messages, optional_params, scripted)
        self.reply_cpu_s += time.thread_time() - started  # the model's work, not the harness's (benchmarks)
        choice: Any = model_response.choices[0]
        if request_mode(optional_params) == "tools" and finish == "stop":  # answered as the forced tool call
            name = optional_params["tools"][0]["function"]["name"]
            choice.message.content = None
            choice.message.tool_calls = [
                ChatCompletionMessageToolCall(
                    id=f"call_{self.calls}", type="function", function=Function(name=name, arguments=text)
                )
            ]
            choice.finish_reason = "tool_calls"
        else:
            choice.message.content = text
            choice.finish_reason = finish
        prompt_tokens, output_tokens = len(prompt_words(messages)), self.cfg.output_tokens
        read, written = self.cached_tokens(messages)
        if _unbilled(scripted):  # an empty reply this provider does not bill: its usage is all zeros
            prompt_tokens = output_tokens = read = written = 0
        cache_usage: dict[str, Any] = {}
        if self.cfg.prompt_cache == "automatic":
            cache_usage = {"prompt_tokens_details": {"cached_tokens": read}}
        elif self.cfg.prompt_cache == "explicit":  # as litellm reports Anthropic's usage
            cache_usage = {
                "prompt_tokens_details": {"cached_tokens": read},
                "cache_read_input_tokens": read,
                "cache_creation_input_tokens": written,
            }
        model_response.usage = LiteUsage(
            prompt_tokens=prompt_tokens,
            completion_tokens=output_tokens,
            total_tokens=prompt_tokens + output_tokens,
            **cache_usage,
        )
        model_response.model = f"scripted/{model}"
        model_response.created = int(time.time())
        stamp_free(model_response)
        return model_response

    def completion(  # type: ignore[override]  # litellm's CustomLLM declares looser positional parameters
        self,
        model: str,
        messages: list,
        *args: Any,
        model_response: ModelResponse,
        optional_params: dict,
        **kw: Any,
    ) -> ModelResponse:
        """Blocking scripted reply."""
        refused = self.refusal(model, optional_params)
        if refused is not None:
            raise refused
        scripted = self._next_scripted(messages)
        time.sleep(self.sample_latency() + _hang_seconds(scripted))
        return self._respond(model, messages, optional_params, model_response, scripted)

    async def acompletion(  # type: ignore[override]  # litellm's CustomLLM declares looser positional parameters
        self,
        model: str,
        messages: list,
        *args: Any,
        model_response: ModelResponse,
        optional_params: dict,
        **kw: Any,
    ) -> ModelResponse:
        """Async scripted reply after the configured latency."""
        refused = self.refusal(model, optional_params)
        if refused is not None:
            raise refused
        scripted = self._next_scripted(messages)
        delay = self.sample_latency() + _hang_seconds(scripted)
        if delay:
            await asyncio.sleep(delay)
        return self._respond(model, messages, optional_params, model_response, scripted)


def read_routes(path: str) -> dict[str, list[str]]:
    """Scripted routes from a JSON or YAML file ``{key: [reply, ...]}``; a clear error naming the file otherwise."""
    import yaml

    try:
        with open(path, encoding="utf-8") as file:
            data = yaml.safe_load(file)  # JSON is YAML
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"llm.scripted.routes_file={path}: not a readable JSON or YAML file ({exc})") from None
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, list) and all(isinstance(r, str) for r in v) for k, v in data.items()
    ):
        raise ValueError(f"llm.scripted.routes_file={path}: must map each key to a list of replies (strings)")
    return data


def _unbilled(scripted: str | None) -> bool:
    """Whether a scripted output is a reply the provider does not bill (``!fault:empty`` without ``:billed``)."""
    if scripted is None or not scripted.startswith("!fault:"):
        return False
    kind, _, arg = scripted.removeprefix("!fault:").partition(":")
    return kind == "empty" and arg != BILLED


def _hang_seconds(scripted: str | None) -> float:
    """How long a ``!fault:hang[:SECONDS]`` output keeps the caller waiting (0 for anything else)."""
    if scripted is None or not scripted.startswith("!fault:hang"):
        return 0.0
    arg = scripted.removeprefix("!fault:hang").lstrip(":")
    return float(arg) if arg else 3600.0
