"""The one door to the models: a thin async client over litellm.

Every call: replayed from the run's ledger if the same call already happened at the same place (a
resumed run pays nothing twice), else served from the shared response cache if deterministic, else
checked against the budget (its estimate reserved, then settled at its actual cost), sent through
litellm with time-outs and retries with backoff on provider faults (an empty reply counts as one),
then down the ``llm.fallbacks`` chain if the model fails for good, priced from litellm's cost data
(cached input tokens at the provider's cache price), and written to the ledger with the model that
answered, its tokens (sent, cached, evaluated), cost and saving, latency, structured-output mode and reply.

``structured`` asks for a pydantic model and validates, repairs or re-asks. How it asks adapts to the
server (``STRUCTURED_MODES``): JSON schema first; a server that rejects the request itself (a 4xx, or
a 500 whose body is a validation error; never retried) is asked with JSON object plus the schema,
then tool calling, then plain text with extraction and repair; the mode that works is remembered
per model. Long prompts are sent with their shared prefix marked ``cache_control`` for providers
with explicit prompt caching (the part after the last blank line of a message is what varies).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import os
import re
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from fars.budget import Budget, prompt_token_bound
from fars.config import LLMConfig
from fars.context import CallContext, current_call_context
from fars.ledger import CallRow, Ledger
from fars.llm.cache import ResponseCache, default_cache_dir
from fars.llm.providers import FREE_PROVIDERS, calling_with, install_routers
from review.degenerate import InvalidReply

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network look-up at import
import litellm

log = logging.getLogger(__name__)
litellm.suppress_debug_info = True  # its "Give Feedback" banner on every exception says nothing a user can use
T = TypeVar("T", bound=BaseModel)
# how structured output is asked for, in the order a server that rejects one is asked the next
STRUCTURED_MODES = ("json_schema", "json_object", "tools", "text")
# providers whose prompt caching takes explicit cache_control marks (litellm passes them on)
EXPLICIT_CACHING = ("anthropic", "bedrock", "vertex_ai", "vertex_ai_beta")
# words in a 5xx body that say the server refused the request itself (a validation error), not that it failed
_VALIDATION_MARKERS = (
    "validation error",
    "literal_error",
    "input should be",
    "extra inputs are not permitted",
    "unprocessable",
    "response_format",
    "json_schema",
    "not supported",
)

_RETRYABLE: tuple[type[BaseException], ...] = (
    litellm.RateLimitError,
    litellm.Timeout,
    litellm.APIConnectionError,
    litellm.InternalServerError,
    litellm.ServiceUnavailableError,
    litellm.BadGatewayError,
    TimeoutError,
)


class LLMError(RuntimeError):
    """A model call failed for good (after retries, or on a fault retrying cannot fix)."""


class StructuredOutputError(LLMError, InvalidReply):
    """The model's reply did not match the requested schema even after repair (for the reviewer, an InvalidReply)."""


class _FallbackWorthy(LLMError):
    """One model failed for good in a way another model might not (faults, context, credentials)."""


class _EmptyReply(RuntimeError):
    """A provider answered with no content (treated as a retryable fault)."""


class _RequestRejected(LLMError):
    """The server called the request itself invalid (never retried; structured output may ask another way)."""


_RETRYABLE_OR_EMPTY: tuple[type[BaseException], ...] = (*_RETRYABLE, _EmptyReply)


@dataclass(frozen=True)
class Completion:
    """A model reply and what it cost."""

    text: str
    model: str
    input_tokens: int
    output_tokens: int
    cost_usd: float
    latency_s: float
    cache_hit: bool
    finish_reason: str | None = None
    cached_input_tokens: int = 0  # input tokens a prompt cache served (provider's reads, embedded prefix reuse)
    saved_usd: float = 0.0  # their saving against the full input price
    structured_mode: str | None = None  # how structured output was asked for (STRUCTURED_MODES)


def register_providers(cfg: LLMConfig) -> dict[str, Any]:
    """This client's embedded (``local/...``) and scripted (``scripted/...``) handlers, by provider name.

    litellm sees one router per name (``fars.llm.providers``); it forwards each call to the handlers
    of the client making it, so clients with different scripted outputs or local models never mix.
    """
    from fars.llm.local import LocalLlamaProvider
    from fars.llm.scripted import ScriptedProvider

    install_routers()
    free = [m for m in (cfg.model, *cfg.fallbacks) if m.split("/", 1)[0] in FREE_PROVIDERS]
    if free:  # listed models are looked up exactly; unlisted ones cost litellm ~1 ms a call in pattern matching
        litellm.register_model({m: _free_model_info(m, cfg) for m in free if m not in litellm.model_cost})
    return {"local": LocalLlamaProvider(cfg.local, cfg.timeout_s), "scripted": ScriptedProvider(cfg.scripted)}


def _free_model_info(model: str, cfg: LLMConfig) -> dict[str, Any]:
    """litellm's model-info entry for one of our in-process models: free, chat, JSON-schema capable."""
    context = cfg.local.n_ctx if model.startswith("local/") else 1_000_000
    return {
        "litellm_provider": model.split("/", 1)[0],
        "mode": "chat",
        "input_cost_per_token": 0.0,
        "output_cost_per_token": 0.0,
        "cache_read_input_token_cost": 0.0,  # stated, or litellm warns that it defaults them to 0
        "cache_creation_input_token_cost": 0.0,
        "max_input_tokens": context,
        "max_output_tokens": context,
        "max_tokens": context,
        "supports_response_schema": True,
    }


def model_context_tokens(model: str) -> int | None:
    """A model's context window in tokens from litellm's model data (None when litellm does not know it)."""
    try:
        info = litellm.get_model_info(model)
    except Exception:  # litellm raises a plain Exception for a model it does not know
        return None
    tokens = info.get("max_input_tokens") or info.get("max_tokens")
    return int(tokens) if tokens else None


def request_hash(request: dict[str, Any]) -> str:
    """sha256 of a request in canonical JSON form."""
    return hashlib.sha256(json.dumps(request, sort_keys=True, default=str).encode()).hexdigest()


def schema_for_prompt(schema: dict[str, Any]) -> str:
    """The JSON schema without titles, compact, for the instruction text."""

    def strip(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if k != "title"}
        if isinstance(node, list):
            return [strip(v) for v in node]
        return node

    return json.dumps(strip(schema), separators=(",", ":"))


_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$", re.MULTILINE)


def extract_json(text: str) -> str:
    """The JSON object inside a reply: code fences and text around the outermost braces removed."""
    body = _FENCE.sub("", text.strip())
    start, end = body.find("{"), body.rfind("}")
    if start == -1 or end < start:
        return body
    return re.sub(r",\s*([}\]])", r"\1", body[start : end + 1])  # trailing commas


class LLMClient:
    """Async client every stage uses; see the module docstring for what each call goes through."""

    def __init__(self, cfg: LLMConfig, ledger: Ledger | None = None, budget: Budget | None = None) -> None:
        self.cfg = cfg
        self.ledger = ledger
        self.budget = budget
        self._ordinals: Counter[tuple[str | None, str | None, str]] = Counter()
        # a client (one session) never repeats a place and ordinal itself, so only places answered
        # before it started can replay; fresh places skip the ledger look-up
        self._replayable = ledger.answered_places() if ledger is not None else set()
        self._semaphore = asyncio.Semaphore(cfg.concurrency)
        self._queued = 0  # calls waiting for a slot of llm.concurrency
        # the structured-output mode that works, per model (an index into STRUCTURED_MODES), once one was refused
        first = 0 if cfg.structured_mode == "auto" else STRUCTURED_MODES.index(cfg.structured_mode)
        self._first_mode = first
        self._modes: dict[str, int] = {}
        self._warned_price = False
        self.cache: ResponseCache | None = None
        if cfg.cache:
            cache_dir = Path(cfg.cache_dir).expanduser() if cfg.cache_dir else default_cache_dir()
            self.cache = ResponseCache(cache_dir / "llm-cache.sqlite")
        self.handlers = register_providers(cfg)

    def calls_waiting(self) -> int:
        """Model calls waiting their turn now: for a slot of ``llm.concurrency`` or for the embedded model's thread.

        The status board shows it, so a queue that builds up is seen rather than mistaken for slow calls.
        """
        local = self.handlers.get("local")
        return self._queued + (int(getattr(local, "waiting", 0)) if local is not None else 0)

    def structured_mode(self, model: str | None = None) -> str:
        """The structured-output mode this client asks ``model`` (default: the configured model) with now."""
        return STRUCTURED_MODES[self._modes.get(model or self.cfg.model, self._first_mode)]

    def close(self) -> None:
        """Release the cache file and any loaded local model."""
        if self.cache is not None:
            self.cache.close()
        for handler in self.handlers.values():
            if hasattr(handler, "close"):
                handler.close()

    async def complete(
        self,
        messages: list[dict[str, str]],
        *,
        response_format: dict[str, Any] | None = None,
        max_tokens: int | None = None,
    ) -> Completion:
        """One chat completion through the ledger, cache, budget and retry layers."""
        request: dict[str, Any] = {
            "model": self.cfg.model,
            "messages": messages,
            "temperature": self.cfg.temperature,
            "max_tokens": max_tokens or self.cfg.max_tokens,
            "response_format": response_format,
        }
        if self.cfg.api_base:  # two servers with one model name are two models: their replies never mix
            request["api_base"] = self.cfg.api_base
        key = request_hash(request)
        ctx = current_call_context()
        ordinal = self._ordinals[(ctx.project_id, ctx.stage, key)]
        self._ordinals[(ctx.project_id, ctx.stage, key)] += 1

        reply = None
        if self.ledger is not None and (ctx.project_id, ctx.stage) in self._replayable:
            reply = self.ledger.replay(ctx.project_id, ctx.stage, key, ordinal)
        deterministic = self.cfg.temperature == 0
        if reply is None and deterministic and self.cache is not None:
            reply = self.cache.get(key)
        if reply is not None:
            done = Completion(reply, self.cfg.model, 0, 0, 0.0, 0.0, cache_hit=True)
            self._record(ctx, key, ordinal, done)
            return done

        self._queued += 1
        try:
            await self._semaphore.acquire()
        finally:
            self._queued -= 1
        try:  # reserve only once the call can start, so waiting calls hold nothing
            reservation = None
            if self.budget is not None:
                prompt_tokens = self._estimate_tokens(messages, response_format)
                reservation = await self.budget.reserve_waiting(  # waits for calls in flight that may free room
                    prompt_tokens + request["max_tokens"],
                    self._estimate_dollars(prompt_tokens, request["max_tokens"]),
                    ctx.project_id,
                )
            answered: Completion | None = None
            try:
                answered = await self._call_with_fallbacks(request, ctx, key, ordinal)
            finally:
                if self.budget is not None and reservation is not None:
                    spent = (
                        (answered.input_tokens + answered.output_tokens, answered.cost_usd) if answered else (0, 0.0)
                    )
                    self.budget.settle(reservation, *spent)
        finally:
            self._semaphore.release()
        done = answered
        if deterministic and self.cache is not None and done.finish_reason != "length":
            self.cache.put(key, self.cfg.model, done.text)
        self._record(ctx, key, ordinal, done)
        return done

    async def structured(self, messages: list[dict[str, str]], schema: type[T], *, max_tokens: int | None = None) -> T:
        """A reply parsed into ``schema``: constrained where the provider can, validated, repaired."""
        instruction, response_format = _schema_request(schema)
        asked = [{"role": "system", "content": _join_system(messages, instruction)}] + [
            m for m in messages if m["role"] != "system"
        ]
        limit = max_tokens or self.cfg.max_tokens
        problems = ""
        for attempt in range(self.cfg.repair_attempts + 1):
            done = await self.complete(asked, response_format=response_format, max_tokens=limit)
            try:
                return parse_structured(schema, done.text)
            except (ValidationError, ValueError) as exc:
                problems = _short_errors(exc)
                log.info("structured reply for %s invalid (attempt %d): %s", schema.__name__, attempt + 1, problems)
            if done.finish_reason == "length":
                limit = min(limit * 2, 4 * (max_tokens or self.cfg.max_tokens))
            asked = [
                *asked,
                {"role": "assistant", "content": done.text[-2000:]},
                {
                    "role": "user",
                    "content": f"That reply was invalid ({problems}). Reply again with corrected JSON only.",
                },
            ]
        raise StructuredOutputError(
            f"model {self.cfg.model} gave no valid {schema.__name__} after "
            f"{self.cfg.repair_attempts + 1} attempts: {problems}"
        )

    async def _call_with_fallbacks(
        self, request: dict[str, Any], ctx: CallContext, key: str, ordinal: int
    ) -> Completion:
        """Try the model, then each of ``llm.fallbacks`` in order, each with its own retries."""
        chain = [self.cfg.model, *self.cfg.fallbacks]
        failures: list[str] = []
        for position, model in enumerate(chain):
            try:
                return await self._call_model(request, ctx, key, ordinal, model)
            except _FallbackWorthy as exc:
                failures.append(f"{model}: {exc}")
                if position + 1 < len(chain):
                    log.warning("model %s failed for good (%s); falling back to %s", model, exc, chain[position + 1])
                    continue
                if len(chain) == 1:
                    raise LLMError(str(exc)) from exc
                raise LLMError(f"every model in the chain failed ({len(chain)}): " + " | ".join(failures)) from exc
        raise AssertionError("unreachable")

    async def _call_model(
        self, request: dict[str, Any], ctx: CallContext, key: str, ordinal: int, model: str
    ) -> Completion:
        """One model's answer; a structured request the server rejects is asked the next way (remembered)."""
        if request.get("response_format") is None:
            try:
                return await self._call_with_retries(request, ctx, key, ordinal, model, None)
            except _RequestRejected as exc:
                raise LLMError(str(exc)) from exc
        first = self._modes.get(model, self._first_mode)
        for index in range(first, len(STRUCTURED_MODES)):
            mode = STRUCTURED_MODES[index]
            try:
                done = await self._call_with_retries(request, ctx, key, ordinal, model, mode)
            except _RequestRejected as exc:
                if index + 1 == len(STRUCTURED_MODES):
                    raise LLMError(
                        f"{exc} (asked in every structured-output mode: {', '.join(STRUCTURED_MODES)})"
                    ) from exc
                log.warning(
                    "model %s rejected structured output as %s (%s); asking with %s instead",
                    model, mode, str(exc)[:200], STRUCTURED_MODES[index + 1],
                )  # fmt: skip
                continue
            if self._modes.get(model, self._first_mode) != index:
                log.warning("model %s: structured output is asked as %s from now on", model, mode)
            self._modes[model] = index
            return done
        raise AssertionError("unreachable")

    def _wire_request(self, request: dict[str, Any], model: str, mode: str | None) -> dict[str, Any]:
        """What litellm is sent for ``request`` in ``mode``: the response format spelt that way, cache marks."""
        wire = {k: v for k, v in request.items() if v is not None and k not in ("model", "response_format", "api_base")}
        response_format = request.get("response_format")
        if mode is not None and isinstance(response_format, dict):
            spec = response_format.get("json_schema", {})
            schema, name = spec.get("schema", {}), re.sub(r"[^A-Za-z0-9_-]", "_", str(spec.get("name") or "reply"))
            if mode == "json_schema":
                wire["response_format"] = response_format
            elif mode == "json_object":
                wire["response_format"] = {"type": "json_object", "schema": schema}
            elif mode == "tools":
                wire["tools"] = [
                    {
                        "type": "function",
                        "function": {"name": name, "description": f"Give the {name} as JSON.", "parameters": schema},
                    }
                ]
                wire["tool_choice"] = {"type": "function", "function": {"name": name}}
        elif response_format is not None:
            wire["response_format"] = response_format
        if self._marks_cache(model):
            wire["messages"] = mark_shared_prefix(wire["messages"], self.cfg.prompt_cache_min_tokens)
        return wire

    def _marks_cache(self, model: str) -> bool:
        """Whether calls to ``model`` carry cache_control marks (providers with explicit prompt caching)."""
        if not self.cfg.prompt_caching:
            return False
        if model.startswith("scripted/"):
            return self.cfg.scripted.prompt_cache == "explicit"
        return model.split("/", 1)[0] in EXPLICIT_CACHING

    async def _call_with_retries(
        self, request: dict[str, Any], ctx: CallContext, key: str, ordinal: int, model: str, mode: str | None
    ) -> Completion:
        attempts = self.cfg.max_retries + 1
        wire = self._wire_request(request, model, mode)
        # the embedded model times its calls itself, from the start of their generation (not their queue)
        limit = None if model.startswith("local/") else self.cfg.timeout_s
        for attempt in range(attempts):
            started = time.perf_counter()
            try:
                with calling_with(self.handlers):  # the routers send in-process calls to this client's handlers
                    response = await asyncio.wait_for(
                        litellm.acompletion(
                            **wire,
                            model=model,
                            api_base=self.cfg.api_base,
                            api_key=self._api_key(),
                            num_retries=0,
                            drop_params=True,
                        ),
                        timeout=limit,
                    )
                return self._completion_from(response, time.perf_counter() - started, model, mode)
            except litellm.ContextWindowExceededError as exc:  # retrying cannot help; a bigger model may
                self._record_failure(ctx, key, ordinal, "context window exceeded", time.perf_counter() - started, model)
                raise _FallbackWorthy(f"prompt too long for {model}: {str(exc)[:200]}") from exc
            except _RETRYABLE_OR_EMPTY as exc:
                if "missing credentials" in str(exc).lower():  # litellm calls this a server error; no retry helps
                    hint = f"set ${self.cfg.api_key_env}" if self.cfg.api_key_env else "set llm.api_key_env"
                    raise _FallbackWorthy(f"model {model} has no API key ({hint})") from exc
                if _is_validation_error(exc):  # a 5xx that says the request is invalid: the same request fails again
                    self._record_failure(
                        ctx, key, ordinal, _fault_name(exc), time.perf_counter() - started, model, mode
                    )
                    raise _RequestRejected(f"model {model} rejected the request: {str(exc)[:300]}") from exc
                fault = self._describe_fault(exc)
                if attempt + 1 == attempts:
                    self._record_failure(ctx, key, ordinal, fault, time.perf_counter() - started, model, mode)
                    raise _FallbackWorthy(
                        f"model {model} failed {attempts} times; last fault: {fault}. "
                        "Check the provider, raise llm.max_retries / llm.timeout_s, or add llm.fallbacks."
                    ) from exc
                delay = _retry_after(exc) or min(self.cfg.backoff_s * (2**attempt), self.cfg.max_backoff_s)
                log.warning("model %s: %s; retry %d/%d in %.1fs", model, fault, attempt + 1, attempts - 1, delay)
                await asyncio.sleep(delay)
                continue
            except (litellm.AuthenticationError, litellm.PermissionDeniedError) as exc:
                hint = f" (is ${self.cfg.api_key_env} set?)" if self.cfg.api_key_env else ""
                raise _FallbackWorthy(f"model {model} refused the credentials{hint}: {str(exc)[:200]}") from exc
            except litellm.NotFoundError as exc:
                self._record_failure(ctx, key, ordinal, type(exc).__name__, time.perf_counter() - started, model)
                raise _FallbackWorthy(f"model {model} is unknown to its provider: {str(exc)[:300]}") from exc
            except (
                litellm.BadRequestError,
                litellm.UnprocessableEntityError,
            ) as exc:  # the request is wrong: never retried
                self._record_failure(ctx, key, ordinal, _fault_name(exc), time.perf_counter() - started, model, mode)
                raise _RequestRejected(f"model {model} rejected the request: {str(exc)[:300]}") from exc
        raise AssertionError("unreachable")

    def _api_key(self) -> str | None:
        """The key from ``llm.api_key_env``; a placeholder for a server at ``llm.api_base`` when none is set
        (local servers take any key, and the OpenAI client refuses to send a request without one)."""
        key = os.environ.get(self.cfg.api_key_env) if self.cfg.api_key_env else None
        return key or ("no-key" if self.cfg.api_base else None)

    def _describe_fault(self, exc: BaseException) -> str:
        """A fault as the log and ledger name it; a refused connection is called that, with where."""
        if _connection_refused(exc):
            where = self.cfg.api_base or "the provider"
            return f"connection refused by {where} (is the server running? check llm.api_base)"
        return f"{type(exc).__name__}: {str(exc)[:200]}"

    def _completion_from(self, response: Any, latency: float, model: str, mode: str | None = None) -> Completion:
        choice = response.choices[0]
        usage = getattr(response, "usage", None)
        input_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
        output_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
        text = choice.message.content or ""
        calls = getattr(choice.message, "tool_calls", None) or []
        if mode == "tools" and calls:  # the reply is the forced tool call's arguments
            text = str(getattr(calls[0].function, "arguments", "") or "")
        finish_reason = getattr(choice, "finish_reason", None)
        if not text.strip() and finish_reason != "length":
            raise _EmptyReply(f"model {model} sent an empty reply")
        cached = min(cached_input_tokens(usage), input_tokens)
        cost, saved = self._price(response, model, input_tokens, output_tokens, cached)
        return Completion(
            text=text,
            model=model,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cost_usd=cost,
            latency_s=latency,
            cache_hit=False,
            finish_reason=finish_reason,
            cached_input_tokens=cached,
            saved_usd=saved,
            structured_mode=mode,
        )

    def _price_model(self, model: str) -> str | None:
        """The model whose litellm price a call to ``model`` is billed at (None: free)."""
        provider = model.split("/", 1)[0] if "/" in model else ""
        if provider == "scripted":
            return self.cfg.scripted.price_as
        return None if provider in FREE_PROVIDERS else model

    def _price(
        self, response: Any, model: str, input_tokens: int, output_tokens: int, cached: int = 0
    ) -> tuple[float, float]:
        """The call's cost from litellm's prices (cached reads at the cache price) and what caching saved."""
        priced = self._price_model(model)
        if priced is None:
            return 0.0, 0.0
        try:
            full = sum(
                litellm.cost_per_token(model=priced, prompt_tokens=input_tokens, completion_tokens=output_tokens)
            )
            if priced != model:  # a stand-in billed at a real model's price, with the usage it reported
                usage = getattr(response, "usage", None)
                cost = float(
                    sum(
                        litellm.cost_per_token(
                            model=priced,
                            prompt_tokens=input_tokens,
                            completion_tokens=output_tokens,
                            usage_object=usage,
                        )
                    )
                )
            else:
                cost = float(litellm.completion_cost(completion_response=response, model=model))
        except Exception as exc:  # litellm raises plain Exception for unpriced models
            if not self._warned_price:
                log.warning("no price known for %s (%s); its cost is recorded as $0", priced, exc)
                self._warned_price = True
            return 0.0, 0.0
        usage = getattr(response, "usage", None)
        written = int(getattr(usage, "cache_creation_input_tokens", 0) or 0)
        return cost, (float(full) - cost if cached or written else 0.0)  # a cache write alone saves less than 0

    def _estimate_dollars(self, prompt_tokens: int, max_tokens: int) -> float:
        """An upper estimate of a call's price: the dearest model of the chain, ``max_tokens`` out."""
        worst = 0.0
        for model in [self.cfg.model, *self.cfg.fallbacks]:
            priced = self._price_model(model)
            if priced is None:
                continue
            try:
                info = litellm.get_model_info(priced)
            except Exception:  # unpriced: recorded as $0 after the call too
                continue
            worst = max(
                worst,
                prompt_tokens * float(info.get("input_cost_per_token") or 0.0)
                + max_tokens * float(info.get("output_cost_per_token") or 0.0),
            )
        return worst

    @staticmethod
    def _estimate_tokens(messages: list[dict[str, str]], response_format: dict[str, Any] | None = None) -> int:
        """A bound of the prompt's tokens that no byte-level tokenizer exceeds (``fars.budget``)."""
        return prompt_token_bound(messages, response_format)

    def _record(self, ctx: CallContext, key: str, ordinal: int, done: Completion) -> None:
        if self.ledger is None:
            return
        self.ledger.record_call(
            CallRow(
                project_id=ctx.project_id,
                stage=ctx.stage,
                model=done.model,
                request_hash=key,
                ordinal=ordinal,
                input_tokens=done.input_tokens,
                output_tokens=done.output_tokens,
                cost_usd=done.cost_usd,
                latency_s=done.latency_s,
                cache_hit=done.cache_hit,
                response=done.text,
                cached_input_tokens=done.cached_input_tokens,
                evaluated_input_tokens=done.input_tokens - done.cached_input_tokens,
                saved_usd=done.saved_usd,
                structured_mode=done.structured_mode,
            )
        )

    def _record_failure(
        self, ctx: CallContext, key: str, ordinal: int, error: str, latency: float, model: str, mode: str | None = None
    ) -> None:
        if self.ledger is None:
            return
        self.ledger.record_call(
            CallRow(
                project_id=ctx.project_id,
                stage=ctx.stage,
                model=model,
                request_hash=key,
                ordinal=ordinal,
                input_tokens=0,
                output_tokens=0,
                cost_usd=0.0,
                latency_s=latency,
                cache_hit=False,
                response=None,
                error=error,
                structured_mode=mode,
            )
        )


def cached_input_tokens(usage: Any) -> int:
    """Input tokens a provider says its prompt cache served: OpenAI's ``prompt_tokens_details.cached_tokens``
    (litellm fills it for Anthropic, Gemini and Bedrock too), else Anthropic's ``cache_read_input_tokens``."""
    details = getattr(usage, "prompt_tokens_details", None)
    cached = getattr(details, "cached_tokens", None) if details is not None else None
    if not cached:
        cached = getattr(usage, "cache_read_input_tokens", None)
    try:
        return max(0, int(cached or 0))
    except (TypeError, ValueError):
        return 0


def mark_shared_prefix(messages: list[dict[str, Any]], min_tokens: int) -> list[dict[str, Any]]:
    """The messages with the shared prefix of the latest long user message marked for prompt caching.

    Prompts put what calls share first (the paper) and what differs last (the persona, the question),
    so the message is split at its last blank line and the part before it gets ``cache_control``: the
    provider caches everything up to there (system prompt included) and a later call with the same
    prefix reads it at the cache price. Prefixes under ``min_tokens`` (about 4 characters a token) are
    not marked: providers do not cache them, and a cache write costs more than plain input.
    """
    for index in range(len(messages) - 1, -1, -1):
        message = messages[index]
        content = message.get("content")
        if message.get("role") != "user" or not isinstance(content, str):
            continue
        cut = content.rfind("\n\n")
        if cut <= 0 or (cut + 2) // 4 < max(1, min_tokens):
            continue
        head, tail = content[: cut + 2], content[cut + 2 :]
        blocks: list[dict[str, Any]] = [{"type": "text", "text": head, "cache_control": {"type": "ephemeral"}}]
        if tail:
            blocks.append({"type": "text", "text": tail})
        return [*messages[:index], {**message, "content": blocks}, *messages[index + 1 :]]
    return messages


def _fault_name(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc)[:200]}"


def _is_validation_error(exc: BaseException) -> bool:
    """Whether a server error's body says the request was invalid (llama-cpp-python answers 500 to those)."""
    status = getattr(exc, "status_code", None)
    if status is not None and status != 500:
        return False
    if not isinstance(exc, (litellm.InternalServerError, litellm.APIError)) or _connection_refused(exc):
        return False
    text = str(exc).lower()
    return any(marker in text for marker in _VALIDATION_MARKERS)


def _connection_refused(exc: BaseException) -> bool:
    """Whether a fault is, underneath litellm's wrapping, a refused TCP connection."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ConnectionRefusedError):
            return True
        current = current.__cause__ or current.__context__
    text = str(exc).lower()
    return "connection refused" in text or "connect call failed" in text


def parse_structured(schema: type[T], text: str) -> T:
    """The reply parsed into ``schema``; raw control characters inside strings (small models emit them) allowed."""
    body = extract_json(text)
    try:
        return schema.model_validate_json(body)
    except ValidationError as exc:
        if not any(e["type"] == "json_invalid" for e in exc.errors()):
            raise
        try:
            data = json.loads(body, strict=False)
        except ValueError:
            raise exc from None
        return schema.model_validate(data)


def _schema_request(schema: type[BaseModel]) -> tuple[str, dict[str, Any]]:
    """The instruction text and a fresh ``response_format`` asking for ``schema``."""
    instruction, format_json = _schema_texts(schema)
    return instruction, json.loads(format_json)  # a fresh copy: providers may edit the schema in place


@functools.lru_cache(maxsize=256)
def _schema_texts(schema: type[BaseModel]) -> tuple[str, str]:
    """The instruction and the ``response_format`` JSON for ``schema``, built once per schema class.

    pydantic rebuilds a JSON schema on every ``model_json_schema()`` call (about 0.5 ms of CPU), and
    the stages ask for the same few schemas thousands of times in a run.
    """
    json_schema = schema.model_json_schema()
    shape = schema_for_prompt(json_schema)
    instruction = f"Reply with one JSON object and nothing else. It must follow this JSON schema: {shape}"
    response_format = {
        "type": "json_schema",
        "json_schema": {"name": schema.__name__, "schema": json_schema, "strict": False},
    }
    return instruction, json.dumps(response_format)


def _join_system(messages: list[dict[str, str]], instruction: str) -> str:
    system = [m["content"] for m in messages if m["role"] == "system"]
    return "\n\n".join([*system, instruction])


def _short_errors(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'reply'}: {e['msg']}" for e in exc.errors()[:5])
    return str(exc)[:300]


def _retry_after(exc: BaseException) -> float | None:
    """Seconds a provider asked us to wait (Retry-After header), if it said."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or {}
    try:
        value = headers.get("retry-after")
        return min(float(value), 120.0) if value is not None else None
    except (TypeError, ValueError):
        return None
