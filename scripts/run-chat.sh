#!/usr/bin/env bash
# Start the background services the assistant needs, chat in the terminal,
# and stop the services when the chat ends (Ctrl-D, /stop, or Ctrl-C).
set -euo pipefail
cd "$(dirname "$0")/.."

ACTIONS_PORT="${ACTIONS_PORT:-5055}"
mkdir -p var/log
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

# wait_for NAME URL SECONDS: poll a health URL until it answers.
wait_for() {
  local name=$1 url=$2 seconds=$3
  for _ in $(seq "$seconds"); do
    if .venv-rasa/bin/python -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)" "$url" 2>/dev/null; then
      return 0
    fi
    sleep 1
  done
  echo "error: the $name did not start within ${seconds}s; see var/log/" >&2
  exit 1
}

echo "Starting the action server (log: var/log/actions.log) ..."
.venv-rasa/bin/rasa run actions --actions actions --port "$ACTIONS_PORT" > var/log/actions.log 2>&1 &
pids+=($!)
wait_for "action server" "http://127.0.0.1:${ACTIONS_PORT}/health" 120

echo "Opening the chat. Type /stop or press Ctrl-D to leave."
.venv-rasa/bin/rasa shell --model models/horoscope.tar.gz --endpoints endpoints.yml --credentials credentials.yml
