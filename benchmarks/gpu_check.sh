#!/usr/bin/env bash
# The GPU checks of the experiments issue, in one command, for a machine with an NVIDIA GPU and a
# Python that already has PyTorch but no network (such as a lent H100/H200 machine).
#
#   bash benchmarks/gpu_check.sh --wheels   # here, with network: the missing packages into .whl/
#   bash benchmarks/gpu_check.sh            # there: installs .whl/ into /tmp/site, then measures
#
# What it measures (and prints): the ~86M chargpt model in bf16 on one GPU, plain torch against
# DeepSpeed ZeRO-2 (tokens/s, MFU; goals MFU >= 40% on an H100, DeepSpeed within 5% of plain), and
# that a job under the sandbox still gets its GPU. Results also go to $OUT (or ./gpu-check/).
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == "--wheels" ]]; then
    # pydantic for the metrics contract and configs, deepspeed and its hjson for the ZeRO engine: the
    # versions this checkout's venv runs, as Python 3.12 wheels (the lent machines' Python)
    py=${PYTHON:-.venv/bin/python}
    mapfile -t pins < <("$py" -c "
from importlib.metadata import version
for name in ('pydantic', 'pydantic-core', 'annotated-types', 'typing-inspection', 'hjson'):
    print(f'{name}=={version(name)}')")
    grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >>.git/info/exclude
    mkdir -p .whl
    "$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl "${pins[@]}"
    # DeepSpeed ships only a source archive: build its pure-Python wheel here (no CUDA ops compiled)
    ds=$("$py" -c "from importlib.metadata import version; print(version('deepspeed'))")
    DS_BUILD_OPS=0 "$py" -m pip wheel -q --no-deps --no-build-isolation -w .whl "deepspeed==$ds"
    ls -la .whl
    exit 0
fi

out=${OUT:-gpu-check}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
    python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"
    python3 -c "import deepspeed; print('deepspeed', deepspeed.__version__)"
} 2>&1 | tee "$out/machine.txt"

# 1. throughput and MFU: plain torch against DeepSpeed ZeRO-2, bf16, one GPU
python3 benchmarks/train_throughput.py --gpu --steps "${STEPS:-200}" 2>&1 | tee "$out/train_throughput.txt"

# 2. a job started through the sandbox still gets its GPU (its device files, CUDA_VISIBLE_DEVICES,
#    and no address-space limit, under which cuInit fails)
python3 - <<'PY' 2>&1 | tee "$out/sandbox_gpu.txt"
import sys, sysconfig, tempfile
from pathlib import Path
from fars.sandbox import SandboxLimits, describe_isolation, run_sandboxed

probe = "import torch; x = torch.ones(1024, device='cuda'); print('GPU inside:', torch.cuda.get_device_name(0), float(x.sum()))"
readable = [sys.prefix, sysconfig.get_paths()["purelib"], *[p for p in sys.path if p.startswith("/tmp/site")]]
print(describe_isolation("auto"))
with tempfile.TemporaryDirectory() as tmp:
    done = run_sandboxed([sys.executable, "-c", probe], Path(tmp), SandboxLimits(wall_s=300, cpu_s=300),
                         gpus=[0], readable=readable)
print(done.exit_code, done.backend, done.limit_hit, done.stdout_tail, done.stderr_tail[-2000:])
sys.exit(0 if done.exit_code == 0 else 1)
PY
