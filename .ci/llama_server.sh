#!/usr/bin/env bash
# llama-cpp-python's OpenAI-compatible server on 127.0.0.1 with the embedded GGUF, for the model-server tests.
#
#   .ci/llama_server.sh start   start it (served as `smollm2`) and wait until it lists its model; prints its base URL
#   .ci/llama_server.sh stop    stop the server this script started
#
# The tests read the base URL from FARS_LLAMA_SERVER (.ci/run exports it); PORT (default 8765) and PYTHON
# (default .venv/bin/python, which has llama-cpp-python[server] from the dev extra) can be set.
set -euo pipefail
cd "$(dirname "$0")/.."
PORT=${PORT:-8765}
PYTHON=${PYTHON:-.venv/bin/python}
PID_FILE=${TMPDIR:-/tmp}/fars-llama-server.pid
LOG=${TMPDIR:-/tmp}/fars-llama-server.log
say() { echo "llama_server.sh: $*" >&2; }

start() {
  if [ -f "$PID_FILE" ] && kill -0 "$(cat "$PID_FILE")" 2>/dev/null; then
    say "already running (pid $(cat "$PID_FILE"))"; echo "http://127.0.0.1:$PORT/v1"; return 0
  fi
  local gguf
  gguf=$("$PYTHON" -c "from fars.llm.local import bundled_model_path; print(bundled_model_path('smollm2-135m'))")
  OMP_NUM_THREADS=1 nohup "$PYTHON" -m llama_cpp.server --model "$gguf" --model_alias smollm2 \
    --host 127.0.0.1 --port "$PORT" --n_ctx 8192 --n_threads 1 >"$LOG" 2>&1 &
  echo $! >"$PID_FILE"
  for _ in $(seq 180); do
    if "$PYTHON" -c "import httpx,sys; sys.exit(httpx.get('http://127.0.0.1:$PORT/v1/models', timeout=2).status_code != 200)" 2>/dev/null; then
      say "serving $gguf at http://127.0.0.1:$PORT/v1 (pid $(cat "$PID_FILE"), log $LOG)"
      echo "http://127.0.0.1:$PORT/v1"; return 0
    fi
    kill -0 "$(cat "$PID_FILE")" 2>/dev/null || { say "the server exited; its log:"; tail -n 20 "$LOG" >&2; exit 1; }
    sleep 1
  done
  say "no answer within 180 s; its log:"; tail -n 20 "$LOG" >&2; stop; exit 1
}

stop() {
  [ -f "$PID_FILE" ] || return 0
  local pid; pid=$(cat "$PID_FILE")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 15); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    say "stopped (pid $pid)"
  fi
  rm -f "$PID_FILE"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
