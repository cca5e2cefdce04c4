"""The one door to the models: a thin async client over litellm.

Every call: replayed from the run's ledger if the same call already happened at the same place (a
resumed run pays nothing twice), else served from the shared response cache if deterministic, else
checked against the budget (its estimate reserved, then settled at its actual cost), sent through
litellm with time-outs and retries with backoff on provider faults (an empty reply counts as one),
then down the ``llm.fallbacks`` chain if the model fails for good, priced from litellm's cost data,
and written to the ledger with the model that answered, its tokens, cost, latency and reply.
``structured`` asks for a pydantic model as a JSON schema and validates, repairs or re-asks.
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

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network look-up at import
import litellm

log = logging.getLogger(__name__)
T = TypeVar("T", bound=BaseModel)

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


class StructuredOutputError(LLMError):
    """The model's reply did not match the requested schema even after repair."""


class _FallbackWorthy(LLMError):
    """One model failed for good in a way another model might not (faults, context, credentials)."""


class _EmptyReply(RuntimeError):
    """A provider answered with no content (treated as a retryable fault)."""


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
    return {"local": LocalLlamaProvider(cfg.local), "scripted": ScriptedProvider(cfg.scripted)}


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
        self._warned_price = False
        self.cache: ResponseCache | None = None
        if cfg.cache:
            cache_dir = Path(cfg.cache_dir).expanduser() if cfg.cache_dir else default_cache_dir()
            self.cache = ResponseCache(cache_dir / "llm-cache.sqlite")
        self.handlers = register_providers(cfg)

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

        async with self._semaphore:  # reserve only once the call can start, so waiting calls hold nothing
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
                return await self._call_with_retries(request, ctx, key, ordinal, model)
            except _FallbackWorthy as exc:
                failures.append(f"{model}: {exc}")
                if position + 1 < len(chain):
                    log.warning("model %s failed for good (%s); falling back to %s", model, exc, chain[position + 1])
                    continue
                if len(chain) == 1:
                    raise LLMError(str(exc)) from exc
                raise LLMError(f"every model in the chain failed ({len(chain)}): " + " | ".join(failures)) from exc
        raise AssertionError("unreachable")

    async def _call_with_retries(
        self, request: dict[str, Any], ctx: CallContext, key: str, ordinal: int, model: str
    ) -> Completion:
        attempts = self.cfg.max_retries + 1
        for attempt in range(attempts):
            started = time.perf_counter()
            try:
                with calling_with(self.handlers):  # the routers send in-process calls to this client's handlers
                    response = await asyncio.wait_for(
                        litellm.acompletion(
                            **{k: v for k, v in request.items() if v is not None and k not in ("model", "api_base")},
                            model=model,
                            api_base=self.cfg.api_base,
                            api_key=os.environ.get(self.cfg.api_key_env) if self.cfg.api_key_env else None,
                            num_retries=0,
                            drop_params=True,
                        ),
                        timeout=self.cfg.timeout_s,
                    )
                return self._completion_from(response, time.perf_counter() - started, model)
            except _RETRYABLE_OR_EMPTY as exc:
                fault = f"{type(exc).__name__}: {str(exc)[:200]}"
                if attempt + 1 == attempts:
                    self._record_failure(ctx, key, ordinal, fault, time.perf_counter() - started, model)
                    raise _FallbackWorthy(
                        f"model {model} failed {attempts} times; last fault: {fault}. "
                        "Check the provider, raise llm.max_retries / llm.timeout_s, or add llm.fallbacks."
                    ) from exc
                delay = _retry_after(exc) or self.cfg.backoff_s * (2**attempt)
                log.warning("model %s: %s; retry %d/%d in %.1fs", model, fault, attempt + 1, attempts - 1, delay)
                await asyncio.sleep(delay)
                continue
            except litellm.ContextWindowExceededError as exc:  # retrying cannot help; a bigger model may
                self._record_failure(ctx, key, ordinal, "context window exceeded", time.perf_counter() - started, model)
                raise _FallbackWorthy(f"prompt too long for {model}: {str(exc)[:200]}") from exc
            except (litellm.AuthenticationError, litellm.PermissionDeniedError) as exc:
                hint = f" (is ${self.cfg.api_key_env} set?)" if self.cfg.api_key_env else ""
                raise _FallbackWorthy(f"model {model} refused the credentials{hint}: {str(exc)[:200]}") from exc
            except litellm.NotFoundError as exc:
                self._record_failure(ctx, key, ordinal, type(exc).__name__, time.perf_counter() - started, model)
                raise _FallbackWorthy(f"model {model} is unknown to its provider: {str(exc)[:300]}") from exc
            except litellm.BadRequestError as exc:  # the request itself is wrong: no model will take it
                self._record_failure(ctx, key, ordinal, type(exc).__name__, time.perf_counter() - started, model)
                raise LLMError(f"model {model} rejected the request: {str(exc)[:300]}") from exc
        raise AssertionError("unreachable")

    def _completion_from(self, response: Any, latency: float, model: str) -> Completion:
        choice = response.choices[0]
        usage = getattr(response, "usage", None)
        input_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
        output_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
        text = choice.message.content or ""
        finish_reason = getattr(choice, "finish_reason", None)
        if not text.strip() and finish_reason != "length":
            raise _EmptyReply(f"model {model} sent an empty reply")
        return Completion(
            text=text,
            model=model,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cost_usd=self._price(response, model, input_tokens, output_tokens),
            latency_s=latency,
            cache_hit=False,
            finish_reason=finish_reason,
        )

    def _price_model(self, model: str) -> str | None:
        """The model whose litellm price a call to ``model`` is billed at (None: free)."""
        provider = model.split("/", 1)[0] if "/" in model else ""
        if provider == "scripted":
            return self.cfg.scripted.price_as
        return None if provider in FREE_PROVIDERS else model

    def _price(self, response: Any, model: str, input_tokens: int, output_tokens: int) -> float:
        priced = self._price_model(model)
        if priced is None:
            return 0.0
        try:
            if priced != model:  # a stand-in billed at a real model's price
                prompt_usd, completion_usd = litellm.cost_per_token(
                    model=priced, prompt_tokens=input_tokens, completion_tokens=output_tokens
                )
                return float(prompt_usd + completion_usd)
            return float(litellm.completion_cost(completion_response=response, model=model))
        except Exception as exc:  # litellm raises plain Exception for unpriced models
            if not self._warned_price:
                log.warning("no price known for %s (%s); its cost is recorded as $0", priced, exc)
                self._warned_price = True
            return 0.0

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
            )
        )

    def _record_failure(self, ctx: CallContext, key: str, ordinal: int, error: str, latency: float, model: str) -> None:
        if self.ledger is None:
            return
        self.ledger.record_call(
            CallRow(
                ctx.project_id,
                ctx.stage,
                model,
                key,
                ordinal,
                0,
                0,
                0.0,
                latency,
                False,
                None,
                error,
            )
        )


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
