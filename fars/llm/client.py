"""The one door to the models: a thin async client over litellm.

Every call: replayed from the run's ledger if the same call already happened at the same place (a
resumed run pays nothing twice), else served from the shared response cache if deterministic (keyed
by the request and every setting that shapes its reply, ``cache_key``; a fallback's reply is stored
under the model that answered), else sent through litellm with time-outs and retries with backoff on
provider faults (an empty reply counts as one), then down the ``llm.fallbacks`` chain if the model
fails for good. Each try, retries included, reserves its bound in the budget before it is sent and
settles at what the provider billed for it: its reply's cost, or, for a try that failed but was
billed all the same (an empty reply with usage, an error with a usage block), that usage's cost,
recorded in the ledger as a billed failure with its error. Costs come from litellm's cost data
(cached input tokens at the provider's cache price); the ledger gets the model that answered, its
tokens (sent, cached, evaluated), cost and saving, latency, structured-output mode and reply, and the
caller's reason where it rejected the reply (``check``: a structured reply that does not fit).

``structured`` asks for a pydantic model and validates, repairs or re-asks. How it asks adapts to the
server (``STRUCTURED_MODES``): JSON schema first; a server that rejects the request itself (a 4xx, or
a 500 whose body is a validation error; never retried) is asked with JSON object plus the schema,
then tool calling, then plain text with extraction and repair; the mode that works is remembered
per model. Long prompts are sent with their shared prefix marked ``cache_control`` for providers
with explicit prompt caching (the part after the last blank line of a message is what varies).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import hashlib
import json
import logging
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from fars.config import LLMConfig, LocalModelConfig, ScriptedModelConfig
from fars.context import CallContext, current_call_context
from fars.llm.budget import Budget, Reservation, prompt_token_bound
from fars.llm.cache import ResponseCache, default_cache_dir
from fars.llm.providers import FREE_PROVIDERS, calling_with, install_routers
from fars.run.ledger import CallRow, Ledger
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


@dataclass(frozen=True)
class _Billed:
    """What a provider billed for one try: its tokens and their price."""

    input_tokens: int
    output_tokens: int
    cost_usd: float
    cached_input_tokens: int = 0
    saved_usd: float = 0.0

    @property
    def tokens(self) -> int:
        """Input and output tokens together (what a token budget counts)."""
        return self.input_tokens + self.output_tokens


class _EmptyReply(RuntimeError):
    """A provider answered with no content (treated as a retryable fault); ``billed``: what it charged for it."""

    def __init__(self, message: str, billed: _Billed | None = None) -> None:
        super().__init__(message)
        self.billed = billed


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
    rejected: str | None = None  # why the caller's check rejected the reply (it was paid for all the same)


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
    """The JSON schema without its ``title`` annotations, compact, for the instruction text. A field *named*
    title (a key of ``properties``) stays: stripping it too had left 'title' required with no such property,
    which the relay run's frontier model pointed out on every hypothesis and paper request."""

    def strip(node: Any, fields: bool = False) -> Any:
        if isinstance(node, dict):
            if fields:  # the keys are field names, each a schema of its own
                return {name: strip(sub) for name, sub in node.items()}
            kept = {k: v for k, v in node.items() if not (k == "title" and isinstance(v, str))}
            return {k: strip(v, fields=k in ("properties", "$defs", "definitions")) for k, v in kept.items()}
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
        self._model_files: dict[str, str] = {}  # the GGUF each local/ model loads (name and size), for cache keys
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
        check: Callable[[str], str | None] | None = None,
    ) -> Completion:
        """One chat completion through the ledger, cache, budget and retry layers.

        ``check`` judges the reply: it returns why the caller rejects it (recorded with the reply in the
        ledger and returned as ``Completion.rejected``, so a reply paid for and then asked again shows as
        a billed failure), or None to accept it.
        """
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
            reply = self.cache.get(self.cache_key(request, self.cfg.model))
        if reply is not None:
            done = Completion(reply, self.cfg.model, 0, 0, 0.0, 0.0, cache_hit=True)
            done = self._judged(done, check)
            self._record(ctx, key, ordinal, done)
            return done

        self._queued += 1
        try:
            await self._semaphore.acquire()
        finally:
            self._queued -= 1
        try:  # each try reserves its bound once it can start (``_reserve_try``), so waiting calls hold nothing
            done = await self._call_with_fallbacks(request, ctx, key, ordinal)
        finally:
            self._semaphore.release()
        if deterministic and self.cache is not None and done.finish_reason != "length":
            self.cache.put(self.cache_key(request, done.model), done.model, done.text)  # under the model that answered
        done = self._judged(done, check)
        self._record(ctx, key, ordinal, done)
        return done

    def cache_key(self, request: dict[str, Any], model: str) -> str:
        """The response cache's key of ``request`` answered by ``model``: the request with every setting
        that changes a reply, so a fallback's reply, another GGUF's or another structured-output setting's
        are never served for this one.

        The request holds the model, messages, temperature, ``max_tokens``, response format and server
        (``llm.api_base``); added here, only where they differ from the defaults (so keys made before
        them still hit): ``llm.structured_mode`` for structured requests, the embedded model's file (its
        name and size) and context size for ``local/`` models, and the scripted model's settings that
        shape its replies for ``scripted/`` models.
        """
        keyed = {**request, "model": model}
        settings: dict[str, Any] = {}
        if request.get("response_format") is not None and self.cfg.structured_mode != "auto":
            settings["structured_mode"] = self.cfg.structured_mode
        settings.update(self._model_settings(model))
        if settings:
            keyed["settings"] = settings
        return request_hash(keyed)

    def _model_settings(self, model: str) -> dict[str, Any]:
        """What of ``model``'s own configuration shapes its replies (embedded and scripted models), for cache keys."""
        provider = model.split("/", 1)[0]
        if provider == "local":
            if model not in self._model_files:
                self._model_files[model] = _gguf_identity(model, self.cfg.local.model_path)
            settings: dict[str, Any] = {"model_file": self._model_files[model]}
            if self.cfg.local.n_ctx != LocalModelConfig().n_ctx:
                settings["n_ctx"] = self.cfg.local.n_ctx
            return settings
        if provider == "scripted":
            default = ScriptedModelConfig()
            shaping = ("outputs", "routes", "routes_file", "output_tokens", "refuse_modes", "refuse_status")
            return {
                name: getattr(self.cfg.scripted, name)
                for name in shaping
                if getattr(self.cfg.scripted, name) != getattr(default, name)
            }
        return {}

    @staticmethod
    def _judged(done: Completion, check: Callable[[str], str | None] | None) -> Completion:
        """``done`` with the caller's verdict on its reply (``Completion.rejected``)."""
        rejected = check(done.text) if check is not None else None
        return done if rejected is None else dataclasses.replace(done, rejected=rejected)

    async def structured(self, messages: list[dict[str, str]], schema: type[T], *, max_tokens: int | None = None) -> T:
        """A reply parsed into ``schema``: constrained where the provider can, validated, repaired."""
        instruction, response_format = _schema_request(schema)
        asked = [{"role": "system", "content": _join_system(messages, instruction)}] + [
            m for m in messages if m["role"] != "system"
        ]
        limit = max_tokens or self.cfg.max_tokens
        problems = ""
        parsed: list[T] = []

        def check(text: str) -> str | None:  # a reply that does not fit is recorded as a billed failure
            try:
                parsed.append(parse_structured(schema, text))
            except (ValidationError, ValueError) as exc:
                return f"invalid {schema.__name__}: {_short_errors(exc)}"
            return None

        for attempt in range(self.cfg.repair_attempts + 1):
            done = await self.complete(asked, response_format=response_format, max_tokens=limit, check=check)
            if parsed:
                return parsed[-1]
            problems = (done.rejected or "").removeprefix(f"invalid {schema.__name__}: ")
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
                    model,
                    mode,
                    str(exc)[:200],
                    STRUCTURED_MODES[index + 1],
                )
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
        """One model asked up to ``llm.max_retries`` + 1 times; each try is reserved in the budget before it
        is sent and settled at what the provider billed for it, answered or not (``_billed_by``)."""
        attempts = self.cfg.max_retries + 1
        wire = self._wire_request(request, model, mode)
        # the embedded model times its calls itself, from the start of their generation (not their queue)
        limit = None if model.startswith("local/") else self.cfg.timeout_s
        for attempt in range(attempts):
            reservation = await self._reserve_try(request, wire, model, ctx.project_id)
            billed: _Billed | None = None
            started = time.perf_counter()
            try:
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
                    done = self._completion_from(response, time.perf_counter() - started, model, mode)
                except Exception as exc:
                    billed = self._billed_by(exc, model)  # a failed try the provider billed all the same
                    raise
                billed = _Billed(done.input_tokens, done.output_tokens, done.cost_usd)
                return done
            except litellm.ContextWindowExceededError as exc:  # retrying cannot help; a bigger model may
                self._record_failure(
                    ctx, key, ordinal, "context window exceeded", time.perf_counter() - started, model, billed=billed
                )
                raise _FallbackWorthy(f"prompt too long for {model}: {str(exc)[:200]}") from exc
            except _RETRYABLE_OR_EMPTY as exc:
                latency = time.perf_counter() - started
                if "missing credentials" in str(exc).lower():  # litellm calls this a server error; no retry helps
                    self._record_billed(ctx, key, ordinal, _fault_name(exc), latency, model, mode, billed)
                    hint = f"set ${self.cfg.api_key_env}" if self.cfg.api_key_env else "set llm.api_key_env"
                    raise _FallbackWorthy(f"model {model} has no API key ({hint})") from exc
                if _is_validation_error(exc):  # a 5xx that says the request is invalid: the same request fails again
                    self._record_failure(ctx, key, ordinal, _fault_name(exc), latency, model, mode, billed=billed)
                    raise _RequestRejected(f"model {model} rejected the request: {str(exc)[:300]}") from exc
                fault = self._describe_fault(exc)
                if attempt + 1 == attempts:
                    self._record_failure(ctx, key, ordinal, fault, latency, model, mode, billed=billed)
                    raise _FallbackWorthy(
                        f"model {model} failed {attempts} times; last fault: {fault}. "
                        "Check the provider, raise llm.max_retries / llm.timeout_s, or add llm.fallbacks."
                    ) from exc
                self._record_billed(ctx, key, ordinal, fault, latency, model, mode, billed)
                delay = _retry_after(exc) or min(self.cfg.backoff_s * (2**attempt), self.cfg.max_backoff_s)
                log.warning("model %s: %s; retry %d/%d in %.1fs", model, fault, attempt + 1, attempts - 1, delay)
            except (litellm.AuthenticationError, litellm.PermissionDeniedError) as exc:
                self._record_billed(
                    ctx, key, ordinal, _fault_name(exc), time.perf_counter() - started, model, mode, billed
                )
                hint = f" (is ${self.cfg.api_key_env} set?)" if self.cfg.api_key_env else ""
                raise _FallbackWorthy(f"model {model} refused the credentials{hint}: {str(exc)[:200]}") from exc
            except litellm.NotFoundError as exc:
                self._record_failure(
                    ctx, key, ordinal, type(exc).__name__, time.perf_counter() - started, model, billed=billed
                )
                raise _FallbackWorthy(f"model {model} is unknown to its provider: {str(exc)[:300]}") from exc
            except (
                litellm.BadRequestError,
                litellm.UnprocessableEntityError,
            ) as exc:  # the request is wrong: never retried
                self._record_failure(
                    ctx, key, ordinal, _fault_name(exc), time.perf_counter() - started, model, mode, billed=billed
                )
                raise _RequestRejected(f"model {model} rejected the request: {str(exc)[:300]}") from exc
            except Exception as exc:  # anything else fails the call; what it billed is still recorded
                self._record_billed(
                    ctx, key, ordinal, _fault_name(exc), time.perf_counter() - started, model, mode, billed
                )
                raise
            finally:
                if reservation is not None and self.budget is not None:
                    self.budget.settle(reservation, billed.tokens if billed else 0, billed.cost_usd if billed else 0.0)
            await asyncio.sleep(delay)  # a retry waits holding nothing of the budget
        raise AssertionError("unreachable")

    async def _reserve_try(
        self, request: dict[str, Any], wire: dict[str, Any], model: str, project_id: str | None
    ) -> Reservation | None:
        """Reserve one try's bound before it is sent: its prompt (as sent, the structured-output spelling
        included) and ``max_tokens`` out, priced at ``model``; waits while calls in flight hold the room.

        Every try is reserved, retries included, so however many calls fail and retry at once, the tries
        in flight together never promise more than the budget has left (``fars.llm.budget``).
        """
        if self.budget is None:
            return None
        spelt: dict[str, Any] | None = {k: wire[k] for k in ("response_format", "tools", "tool_choice") if k in wire}
        prompt_tokens = self._estimate_tokens(request["messages"], spelt or None)
        return await self.budget.reserve_waiting(
            prompt_tokens + request["max_tokens"],
            self._estimate_dollars(prompt_tokens, request["max_tokens"], (model,)),
            project_id,
        )

    def _billed_by(self, exc: BaseException, model: str) -> _Billed | None:
        """What the provider billed for a try that failed: an empty reply's usage, or a usage block in an
        error's body, priced from litellm's cost data; None when it billed nothing (the usual fault)."""
        if isinstance(exc, _EmptyReply):
            return exc.billed
        usage = _fault_usage(exc)
        if usage is None:
            return None
        input_tokens, output_tokens = usage
        cost, _ = self._price(None, model, input_tokens, output_tokens)
        return _Billed(input_tokens, output_tokens, cost)

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
        cached = min(cached_input_tokens(usage), input_tokens)
        if not text.strip() and finish_reason != "length":
            billed = None
            if input_tokens or output_tokens:  # some providers bill an empty reply (its usage says so)
                cost, saved = self._price(response, model, input_tokens, output_tokens, cached)
                billed = _Billed(input_tokens, output_tokens, cost, cached, saved)
            raise _EmptyReply(f"model {model} sent an empty reply", billed)
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
            if response is None:  # a billed failure: only the usage its error reported
                cost = float(full)
            elif priced != model:  # a stand-in billed at a real model's price, with the usage it reported
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

    def _estimate_dollars(self, prompt_tokens: int, max_tokens: int, models: Sequence[str] | None = None) -> float:
        """An upper estimate of a call's price: the dearest of ``models`` (default: the chain), ``max_tokens`` out."""
        worst = 0.0
        for model in [self.cfg.model, *self.cfg.fallbacks] if models is None else models:
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
        """A bound of the prompt's tokens that no byte-level tokenizer exceeds (``fars.llm.budget``)."""
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
                error=done.rejected,
            )
        )

    def _record_failure(
        self,
        ctx: CallContext,
        key: str,
        ordinal: int,
        error: str,
        latency: float,
        model: str,
        mode: str | None = None,
        *,
        billed: _Billed | None = None,
    ) -> None:
        """A failed try in the ledger: no reply, the error, and what the provider billed for it (if anything)."""
        if self.ledger is None:
            return
        paid = billed or _Billed(0, 0, 0.0)
        self.ledger.record_call(
            CallRow(
                project_id=ctx.project_id,
                stage=ctx.stage,
                model=model,
                request_hash=key,
                ordinal=ordinal,
                input_tokens=paid.input_tokens,
                output_tokens=paid.output_tokens,
                cost_usd=paid.cost_usd,
                latency_s=latency,
                cache_hit=False,
                response=None,
                error=error,
                cached_input_tokens=paid.cached_input_tokens,
                evaluated_input_tokens=paid.input_tokens - paid.cached_input_tokens,
                saved_usd=paid.saved_usd,
                structured_mode=mode,
            )
        )

    def _record_billed(
        self,
        ctx: CallContext,
        key: str,
        ordinal: int,
        error: str,
        latency: float,
        model: str,
        mode: str | None,
        billed: _Billed | None,
    ) -> None:
        """A failed try that is retried (or ends the call unrecorded) in the ledger, only if it was billed."""
        if billed is not None:
            self._record_failure(ctx, key, ordinal, error, latency, model, mode, billed=billed)


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


def _fault_usage(exc: BaseException) -> tuple[int, int] | None:
    """(input, output) tokens a provider's error says it billed: a ``usage`` block in the error's body
    (``body`` or the JSON of its HTTP response); None where it reports none, or only zeros."""
    bodies: list[Any] = [getattr(exc, "body", None)]
    response = getattr(exc, "response", None)
    if isinstance(response, httpx.Response):
        with contextlib.suppress(ValueError, httpx.HTTPError):
            bodies.append(response.json())
    for body in bodies:
        usage = body.get("usage") if isinstance(body, dict) else None
        if not isinstance(usage, dict):
            continue
        try:
            tokens = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
        except (TypeError, ValueError):
            continue
        if tokens[0] > 0 or tokens[1] > 0:
            return max(0, tokens[0]), max(0, tokens[1])
    return None


def _gguf_identity(model: str, model_path: str | None) -> str:
    """The GGUF an embedded model loads, as its file name and size (the same file in any folder or
    virtualenv keys alike; another quantization or model does not); the configured name if it cannot be found."""
    from fars.llm.local import LocalModelError, bundled_model_path

    try:
        path = Path(model_path) if model_path else bundled_model_path(model.split("/", 1)[1])
        return f"{path.name}:{path.stat().st_size}"
    except (LocalModelError, OSError):
        return model_path or model


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
