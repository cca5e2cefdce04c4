"""Run a template's training loop plain, under torch DDP, or under DeepSpeed, with one API.

Templates stay short: they build a model and an optimizer, hand both to ``Engine.prepare`` and call
``Engine.step`` with a function that returns the loss of one micro-batch. The engine owns process
groups (gloo on CPU, NCCL on GPU), rank and device placement, gradient accumulation, clipping, bf16,
and DeepSpeed's ZeRO stages. Every numeric setting comes from one DeepSpeed-style JSON (the Hydra node
``experiment.deepspeed`` written by the Experiment stage, or built from flags), so plain, DDP and
DeepSpeed runs of one config do the same arithmetic.

Without a launcher (``python -m ...``) a DDP or DeepSpeed run is a world of one: the rendezvous
variables are set here. Under torchrun or ``deepspeed --no_local_rank`` they come from the launcher.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime
import hashlib
import json
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from experiments.metrics import Curves, Metrics, Provenance, write_metrics
from experiments.provenance import combined_sha256, config_sha256
from experiments.spec import TemplateSpec

ENGINES = ("plain", "ddp", "deepspeed")
# dense peak tensor FLOP/s by device-name fragment: (bf16/fp16, fp32). Sources: vendor data sheets (SXM parts).
PEAK_FLOPS: dict[str, tuple[float, float]] = {
    "H200": (989e12, 67e12),
    "H100": (989e12, 67e12),
    "A100": (312e12, 19.5e12),
    "L40S": (362e12, 91.6e12),
    "A10G": (70e12, 31.2e12),
    "V100": (125e12, 15.7e12),
    "RTX 4090": (165e12, 82.6e12),
}


def add_engine_args(p: argparse.ArgumentParser) -> None:
    """The flags every template's ``train.py`` shares: engine, device, numerics and the method file."""
    p.add_argument("--engine", choices=ENGINES, default="plain")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--ds_config", type=Path, default=None, help="DeepSpeed-style JSON; wins over the flags below")
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32")
    p.add_argument("--grad_accum", type=int, default=1)
    p.add_argument("--grad_clip", type=float, default=0.0, help="0: no clipping")
    p.add_argument("--zero_stage", type=int, choices=[0, 1, 2, 3], default=0)
    p.add_argument("--method", type=Path, default=None, help="a method module written against the extension point")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (GPU throughput)")


def numerics_config(args: argparse.Namespace) -> dict[str, Any]:
    """The DeepSpeed-style JSON of a run: from ``--ds_config`` if given, else from the flags."""
    if args.ds_config is not None:
        try:
            loaded = json.loads(Path(args.ds_config).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise SystemExit(f"--ds_config {args.ds_config}: cannot read it as JSON ({exc})") from None
        return dict(loaded)
    return {
        "gradient_accumulation_steps": args.grad_accum,
        "gradient_clipping": args.grad_clip,
        "bf16": {"enabled": args.precision == "bf16"},
        "fp16": {"enabled": args.precision == "fp16"},
        "zero_optimization": {"stage": args.zero_stage},
    }


def precision_of(ds: dict[str, Any]) -> str:
    """'bf16', 'fp16' or 'fp32' as the JSON enables them."""
    if ds.get("bf16", {}).get("enabled"):
        return "bf16"
    if ds.get("fp16", {}).get("enabled"):
        return "fp16"
    return "fp32"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def peak_flops(device_name: str, precision: str) -> float | None:
    """Dense peak FLOP/s of one device by its name, or None when the device is not in the table."""
    for fragment, (half, single) in PEAK_FLOPS.items():
        if fragment.lower() in device_name.lower():
            return half if precision in ("bf16", "fp16") else single
    return None


def model_flops_utilization(
    flops_per_token: float, tokens_per_s: float, device_name: str, precision: str, world_size: int
) -> float | None:
    """Achieved model FLOP/s over the peak of all devices used; None when the peak is unknown."""
    peak = peak_flops(device_name, precision)
    if peak is None or tokens_per_s <= 0:
        return None
    return flops_per_token * tokens_per_s / (peak * world_size)


def code_provenance(template_dir: Path, method: Path | None) -> dict[str, str]:
    """sha256 of every file that shapes a run: the template's Python files, this engine, the shared modules it
    trains with (metrics, schedules, the method's loader), the method."""
    shared = [Path(__file__).with_name(name) for name in ("metrics.py", "schedules.py", "extension.py")]
    files = [*sorted(template_dir.glob("*.py")), Path(__file__), *shared]
    if method is not None:
        files.append(method)
    return {f"{p.parent.name}/{p.name}": hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


class Engine:
    """Process group, device, wrapping and the optimizer step of one rank."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.name: str = args.engine
        self.ds = numerics_config(args)
        self.precision = precision_of(self.ds)
        if args.device == "cuda" and not torch.cuda.is_available():
            raise SystemExit(
                "--device cuda: no CUDA device is visible here; use --device cpu or check CUDA_VISIBLE_DEVICES"
            )
        if args.device == "cpu" and self.precision == "fp16":
            raise SystemExit("fp16 on CPU is not supported (no fp16 kernels or loss scaling there); use bf16 or fp32")
        self.grad_accum = int(self.ds.get("gradient_accumulation_steps") or 1)
        self.grad_clip = float(self.ds.get("gradient_clipping") or 0.0)
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
        self.distributed = self.name != "plain"
        if self.distributed:
            for key, value in (("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1"), ("MASTER_ADDR", "127.0.0.1")):
                os.environ.setdefault(key, value)
            os.environ.setdefault("MASTER_PORT", str(_free_port()))
        self.rank = int(os.environ.get("RANK", "0"))
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if not self.distributed and self.world_size > 1:
            raise SystemExit(f"--engine plain cannot run {self.world_size} ranks; use --engine ddp or deepspeed")
        if args.device == "cuda":
            torch.cuda.set_device(self.local_rank)
            self.device = torch.device("cuda", self.local_rank)
        else:
            self.device = torch.device("cpu")
        if self.distributed:
            backend = "nccl" if self.device.type == "cuda" else "gloo"
            timeout = datetime.timedelta(minutes=10)
            if self.name == "deepspeed":
                import deepspeed

                deepspeed.init_distributed(dist_backend=backend, timeout=timeout)
            else:
                dist.init_process_group(backend=backend, timeout=timeout)
        self.module: nn.Module | None = None  # what forward and evaluation call
        self._wrapped: Any = None
        self._optimizer: torch.optim.Optimizer | None = None

    @property
    def main(self) -> bool:
        """Whether this is rank 0, the rank that writes files."""
        return self.rank == 0

    def micro_batch(self, batch_size: int) -> int:
        """Examples per rank per micro-batch: the JSON's value, else the batch split over ranks and steps."""
        fixed = self.ds.get("train_micro_batch_size_per_gpu")
        if fixed:
            return int(fixed)
        return max(1, batch_size // (self.world_size * self.grad_accum))

    def prepare(
        self, model: nn.Module, optimizer: torch.optim.Optimizer, batch_size: int, *, compile: bool = False
    ) -> nn.Module:
        """Move, wrap and remember the model and optimizer; return the module to call forward on.

        ``compile`` runs ``torch.compile`` (DeepSpeed: its engine's ``compile``) for GPU throughput.
        """
        model = model.to(self.device)
        if compile and self.name != "deepspeed":
            model = torch.compile(model)  # type: ignore[assignment]  # typed as a Callable; on a Module, an OptimizedModule
        if self.name == "deepspeed":
            import deepspeed

            ds = copy.deepcopy(self.ds)
            micro = self.micro_batch(batch_size)
            ds.update(
                train_micro_batch_size_per_gpu=micro,
                gradient_accumulation_steps=self.grad_accum,
                train_batch_size=micro * self.grad_accum * self.world_size,
                zero_allow_untested_optimizer=True,  # a plain torch optimizer: no fused op to compile
            )
            ds.setdefault("steps_per_print", 10**9)
            engine, opt, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, config=ds)
            if compile:
                engine.compile()
            self._wrapped, self._optimizer, self.module = engine, opt, engine
        elif self.name == "ddp":
            ids = [self.local_rank] if self.device.type == "cuda" else None
            self._wrapped = nn.parallel.DistributedDataParallel(model, device_ids=ids)
            self._optimizer, self.module = optimizer, self._wrapped
        else:
            self._wrapped, self._optimizer, self.module = model, optimizer, model
        return self.module

    def set_lr(self, lr: float) -> None:
        """Set the learning rate of every parameter group (for schedules)."""
        if self._optimizer is None:
            raise RuntimeError("Engine.set_lr called before Engine.prepare")
        for group in self._optimizer.param_groups:
            group["lr"] = lr

    def autocast(self) -> contextlib.AbstractContextManager[None]:
        """bf16 autocast for plain and DDP runs in bf16 (DeepSpeed casts the model itself)."""
        if self.name != "deepspeed" and self.precision == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def step(self, micro_loss: Callable[[int], torch.Tensor]) -> float:
        """One optimizer step over ``grad_accum`` micro-batches; returns their mean loss on this rank."""
        if self._wrapped is None or self._optimizer is None:
            raise RuntimeError("Engine.step called before Engine.prepare")
        total = 0.0
        if self.name == "deepspeed":
            for i in range(self.grad_accum):
                loss = micro_loss(i)
                self._wrapped.backward(loss)
                self._wrapped.step()  # steps the optimizer at the accumulation boundary only
                total += float(loss.detach())
            return total / self.grad_accum
        for i in range(self.grad_accum):
            last = i == self.grad_accum - 1
            sync = contextlib.nullcontext() if last or self.name != "ddp" else self._wrapped.no_sync()
            with sync:
                with self.autocast():
                    loss = micro_loss(i)
                (loss / self.grad_accum).backward()
            total += float(loss.detach())
        if self.grad_clip > 0:
            nn.utils.clip_grad_norm_(self._wrapped.parameters(), self.grad_clip)
        self._optimizer.step()
        self._optimizer.zero_grad(set_to_none=True)
        return total / self.grad_accum

    def mean(self, value: float) -> float:
        """The mean of a number over all ranks."""
        if not self.distributed or self.world_size == 1:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return float(t.item()) / self.world_size

    def device_name(self) -> str:
        """'cpu' or the CUDA device's name (used to look up its peak FLOP/s)."""
        return torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "cpu"

    def synchronize(self) -> None:
        """Wait for queued device work (so wall times are real on GPU)."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def report(
        self,
        args: argparse.Namespace,
        spec: TemplateSpec,
        config: dict[str, float | int | str],
        curves: dict[str, list[Any]],
        final: dict[str, float],
        *,
        wall_s: float,
        train_s: float,
        examples: int,
        tokens: int,
        parameters: int,
        flops_per_token: float,
        template_dir: Path,
    ) -> Metrics:
        """Build this run's ``Metrics`` and write it from rank 0.

        Throughput counts training time only (``train_s``, evaluation excluded), summed over ranks.
        """
        examples_per_s = self.mean(examples / max(train_s, 1e-9)) * self.world_size
        tokens_per_s = self.mean(tokens / max(train_s, 1e-9)) * self.world_size
        name = self.device_name()
        files = code_provenance(template_dir, args.method)
        metrics = Metrics(
            template=spec.name,
            engine=self.name,
            device=self.device.type,
            world_size=self.world_size,
            precision=self.precision,
            seed=args.seed,
            steps=args.steps,
            config=config,
            metric=spec.metric,
            final=final,
            curves=Curves(**curves),
            wall_s=wall_s,
            examples_per_s=examples_per_s,
            tokens_per_s=tokens_per_s,
            flops_per_token=flops_per_token,
            mfu=model_flops_utilization(flops_per_token, tokens_per_s, name, self.precision, self.world_size)
            if self.device.type == "cuda"
            else None,
            device_name=name,
            method=files.get(f"{args.method.parent.name}/{args.method.name}") if args.method else None,
            parameters=parameters,
            provenance=Provenance(
                code_sha256=combined_sha256(files),
                config_sha256=config_sha256({**config, "numerics": json.dumps(self.ds, sort_keys=True)}),
                files=files,
                torch=torch.__version__,
            ),
        )
        if self.main:
            write_metrics(metrics, args.out_dir)
        return metrics

    def close(self) -> None:
        """Leave the process group cleanly: barrier, then destroy (a rank may abort at exit otherwise)."""
        if self.distributed and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()


@contextlib.contextmanager
def evaluating(module: nn.Module) -> Iterator[None]:
    """Evaluation mode without gradients, back to training mode afterwards."""
    module.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        module.train()
