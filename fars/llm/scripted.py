"""A deterministic scripted model, registered with litellm as the custom provider ``scripted``.

It stands in for a real model in tests and benchmarks through the very same client path. Replies:
first the configured ``outputs`` in order, then, for a JSON-schema request, a valid instance made from
the schema and seeded by the request (same request, same reply), else a short sentence. Every reply
bills ``output_tokens`` output tokens; input tokens are the words of the prompt. A scripted output of
the form ``!fault:KIND`` raises a provider fault (429, 500, timeout, context) to exercise retries.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import re
import threading
import time
from typing import Any

import litellm
from litellm import CustomLLM
from litellm.types.utils import ModelResponse
from litellm.types.utils import Usage as LiteUsage

from fars.config import ScriptedModelConfig

_WORD = re.compile(r"[A-Za-z][A-Za-z\-]{2,}")


def prompt_words(messages: list[dict[str, Any]]) -> list[str]:
    """The words of all message contents, in order."""
    return [w for m in messages for w in str(m.get("content", "")).split()]


def _fault(kind: str, model: str) -> Exception:
    faults: dict[str, Exception] = {
        "429": litellm.RateLimitError("scripted rate limit", llm_provider="scripted", model=model),
        "500": litellm.InternalServerError("scripted server error", llm_provider="scripted", model=model),
        "timeout": litellm.Timeout("scripted time-out", model=model, llm_provider="scripted"),
        "context": litellm.ContextWindowExceededError(
            "scripted context overflow", model=model, llm_provider="scripted"
        ),
        "connection": litellm.APIConnectionError("scripted connection drop", llm_provider="scripted", model=model),
    }
    if kind not in faults:
        return ValueError(f"unknown scripted fault {kind!r}; known: {sorted(faults)}")
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
        self._queue = list(cfg.outputs)
        self._lock = threading.Lock()
        self.calls = 0

    def _next_scripted(self) -> str | None:
        with self._lock:
            self.calls += 1
            return self._queue.pop(0) if self._queue else None

    def reply(self, model: str, messages: list[dict[str, Any]], optional_params: dict[str, Any]) -> str:
        """The reply to a request (raises the scripted fault for ``!fault:KIND``)."""
        scripted = self._next_scripted()
        if scripted is not None:
            if scripted.startswith("!fault:"):
                raise _fault(scripted.removeprefix("!fault:"), f"scripted/{model}")
            return scripted
        seed_text = json.dumps([messages, optional_params.get("response_format")], sort_keys=True, default=str)
        rng = random.Random(hashlib.sha256(seed_text.encode()).hexdigest())
        fmt = optional_params.get("response_format")
        if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
            schema = fmt["json_schema"]["schema"]
            return json.dumps(SchemaSampler(schema, rng, prompt_words(messages)[-200:]).sample())
        words = prompt_words(messages)[-50:] or ["ok"]
        return " ".join(rng.choice(words) for _ in range(self.cfg.output_tokens))

    def _respond(
        self, model: str, messages: list, optional_params: dict, model_response: ModelResponse
    ) -> ModelResponse:
        text = self.reply(model, messages, optional_params)
        model_response.choices[0].message.content = text
        prompt_tokens = len(prompt_words(messages))
        model_response.usage = LiteUsage(  # type: ignore[attr-defined]
            prompt_tokens=prompt_tokens,
            completion_tokens=self.cfg.output_tokens,
            total_tokens=prompt_tokens + self.cfg.output_tokens,
        )
        model_response.model = f"scripted/{model}"
        model_response.created = int(time.time())
        return model_response

    def completion(  # type: ignore[override]
        self,
        model: str,
        messages: list,
        *args: Any,
        model_response: ModelResponse,
        optional_params: dict,
        **kw: Any,
    ) -> ModelResponse:
        """Blocking scripted reply."""
        if self.cfg.latency_s:
            time.sleep(self.cfg.latency_s)
        return self._respond(model, messages, optional_params, model_response)

    async def acompletion(  # type: ignore[override]
        self,
        model: str,
        messages: list,
        *args: Any,
        model_response: ModelResponse,
        optional_params: dict,
        **kw: Any,
    ) -> ModelResponse:
        """Async scripted reply after the configured latency."""
        if self.cfg.latency_s:
            await asyncio.sleep(self.cfg.latency_s)
        return self._respond(model, messages, optional_params, model_response)
