#!/usr/bin/env bash
# Set up FARS in ./.venv: PyTorch (CPU build unless FARS_TORCH says otherwise), the embedded model's
# llama.cpp runtime built portably, and the package with its test tools.
#   ./install.sh            then  .venv/bin/fars run
#   ./install.sh --system   also installs the Debian packages FARS uses when present: a TeX engine
#                           (papers as PDF), bubblewrap (the sandbox for model-written code), tmux
#                           (the live table's test in a real terminal) and
#                           Chromium (the browser tests of `fars report` and `fars view`: Playwright,
#                           installed with the test tools, drives Debian's Chromium, so no
#                           `playwright install` and no browser download); needs root or sudo
#   FARS_TORCH=torch ./install.sh     (a CUDA build of PyTorch, for GPU machines)
set -euo pipefail
cd "$(dirname "$0")"

if [ "${1:-}" = "--system" ]; then
  need=()
  command -v pdflatex >/dev/null || need+=(texlive-latex-base texlive-latex-recommended texlive-fonts-recommended)
  command -v bwrap >/dev/null || need+=(bubblewrap)
  command -v tmux >/dev/null || need+=(tmux)   # a real terminal for the live-table test
  if [ ${#need[@]} -gt 0 ] || ! command -v chromium >/dev/null; then
    SUDO=$([ "$(id -u)" = 0 ] && echo "" || echo sudo)
    $SUDO apt-get update -qq
    if [ ${#need[@]} -gt 0 ]; then
      echo "installing Debian packages: ${need[*]}"
      DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    fi
    if ! command -v chromium >/dev/null; then
      echo "installing Debian package: chromium"
      DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
    fi
  fi
fi
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${FARS_TORCH:-torch==2.13.0}
LLAMA_VERSION=0.3.36
# Portable CPU flags: a -march=native build of llama.cpp crashes on some virtualised CPUs that
# advertise AVX-512/AMX, and a cached native wheel breaks on other machines.
LLAMA_CMAKE_ARGS=${LLAMA_CMAKE_ARGS:--DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF -DLLAVA_BUILD=OFF}

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip

# llama-cpp-python has no prebuilt wheel on PyPI: build it once into .wheels/ (about 5 minutes on
# 2 cores) and reuse it on later installs.
if ! ls .wheels/llama_cpp_python-"$LLAMA_VERSION"-*.whl >/dev/null 2>&1; then
  echo "building llama-cpp-python $LLAMA_VERSION (once; about 5 minutes)..."
  CMAKE_ARGS="$LLAMA_CMAKE_ARGS" python -m pip wheel -q --no-deps --no-cache-dir -w .wheels \
    "llama-cpp-python==$LLAMA_VERSION"
fi

# DeepSpeed ships as an sdist whose build imports torch: install torch first, then build DeepSpeed
# against it without build isolation (an isolated build would pull a multi-GB CUDA torch). Its ops are
# compiled on first use (DS_BUILD_OPS=0) and cached in TORCH_EXTENSIONS_DIR.
python -m pip install -q "$TORCH_SPEC"
python -m pip show -q deepspeed >/dev/null 2>&1 || \
  DS_BUILD_OPS=0 python -m pip install -q --no-build-isolation "deepspeed>=0.16,<0.20"
python -m pip install -q --find-links .wheels "$TORCH_SPEC" "llama-cpp-python==$LLAMA_VERSION" -e ".[dev]"
# Without CUDA, DeepSpeed compiles a shared-memory collective op at a job's first multi-rank start (about 90
# CPU-seconds on 2 cores, inside that job's time limit): build it once now, where FARS's jobs look for it.
python -m fars.executor.prebuild || echo "note: DeepSpeed's CPU op was not prebuilt; the first DeepSpeed job compiles it"
echo "installed: $(.venv/bin/fars --version)"
