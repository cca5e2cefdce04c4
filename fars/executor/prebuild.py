"""Compile, once at install time, the op DeepSpeed would otherwise compile inside a job.

On a machine without CUDA, DeepSpeed's torch backend builds its shared-memory collective op
(``deepspeed_shm_comm``, C++) the first time a multi-rank job starts: about 90 CPU-seconds on 2 cores,
spent inside that job's time limit while its other ranks wait. ``python -m fars.executor.prebuild`` (run by
``install.sh``) builds it into ``torch_extensions_dir()``, the cache every FARS job is given, so jobs load it.
With CUDA, or where DeepSpeed is absent or reports the op incompatible, it does nothing. Exit 1 when the
build fails (no C++ compiler, say): jobs then compile it on first use, as before.
"""

from __future__ import annotations

import os
import sys

from fars.executor.launch import tool_path, torch_extensions_dir


def main() -> int:
    try:
        import torch
    except ImportError:
        return 0
    if torch.cuda.is_available():
        return 0  # the op is for CPU ranks; GPU jobs use NCCL
    try:
        import deepspeed.ops
        from deepspeed.accelerator import get_accelerator
    except ImportError:
        return 0
    os.environ["TORCH_EXTENSIONS_DIR"] = torch_extensions_dir()
    os.environ["PATH"] = tool_path()  # the ninja the jobs will use (see tool_path), activated venv or not
    builder = get_accelerator().create_op_builder("ShareMemCommBuilder")
    if builder is None or not deepspeed.ops.__compatible_ops__.get(builder.NAME, False):
        return 0  # DeepSpeed itself would not build it either
    try:
        builder.load(verbose=False)
    except Exception as exc:  # a missing compiler or header: say so, and let the first job try
        print(f"could not prebuild DeepSpeed's {builder.NAME} op: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(f"prebuilt DeepSpeed's {builder.NAME} op in {torch_extensions_dir()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
