# Shared by scripts/run-chat.sh and scripts/serve.sh: start the assistant's
# background services on 127.0.0.1, wait until each answers, stop them all on exit.
# Each service NAME logs to LOG_DIR/NAME.log and its pid is in LOG_DIR/NAME.pid while it runs.
# Source it from the repository root after `set -euo pipefail`.
#
# Environment (defaults in brackets):
#   ACTIONS_PORT [5055]  QA_PORT [8000]  RASA_MODEL [models/horoscope.tar.gz]  LOG_DIR [var/log]
#   START_TIMEOUT [180 seconds per service]
#   DATABASE_URL, HOROSCOPE_API_URL and the QA_* variables are passed on (see README).

ACTIONS_PORT="${ACTIONS_PORT:-5055}"
QA_PORT="${QA_PORT:-8000}"
RASA_MODEL="${RASA_MODEL:-models/horoscope.tar.gz}"
LOG_DIR="${LOG_DIR:-var/log}"
START_TIMEOUT="${START_TIMEOUT:-180}"
export RASA_TELEMETRY_ENABLED="${RASA_TELEMETRY_ENABLED:-false}"
export SQLALCHEMY_SILENCE_UBER_WARNING="${SQLALCHEMY_SILENCE_UBER_WARNING:-1}"

fail() {
  echo "error: $*" >&2
  exit 1
}

# check_ports NAME...: each named variable must hold a port number.
check_ports() {
  local name value
  for name in "$@"; do
    value="${!name}"
    [[ "$value" =~ ^[0-9]{1,5}$ ]] && ((value > 0 && value <= 65535)) ||
      fail "$name must be a port number from 1 to 65535, got '$value'"
  done
}

check_ports ACTIONS_PORT QA_PORT
# The action server hands open questions to the QA service started here.
export QA_SERVICE_URL="http://127.0.0.1:${QA_PORT}"
[[ "$START_TIMEOUT" =~ ^[1-9][0-9]*$ ]] || fail "START_TIMEOUT must be a whole number of seconds, got '$START_TIMEOUT'"
[[ -f "$RASA_MODEL" ]] || fail "no trained model at $RASA_MODEL; train one with: make train"

mkdir -p "$LOG_DIR"
RUN_DIR="$(mktemp -d)"
SERVICE_PIDS=()
PID_FILES=()
stop_services() {
  if ((${#SERVICE_PIDS[@]})); then
    kill "${SERVICE_PIDS[@]}" 2>/dev/null || true
    wait "${SERVICE_PIDS[@]}" 2>/dev/null || true
  fi
  if ((${#PID_FILES[@]})); then
    rm -f "${PID_FILES[@]}"
  fi
  rm -rf "$RUN_DIR"
}
trap stop_services EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# endpoints.yml with the action server's URL on ACTIONS_PORT (Rasa's endpoint file
# cannot give an environment variable a default); everything else unchanged.
ENDPOINTS="$RUN_DIR/endpoints.yml"
.venv-rasa/bin/python - endpoints.yml "$ENDPOINTS" "http://127.0.0.1:${ACTIONS_PORT}/webhook" <<'PY'
import sys

import yaml

source, target, action_url = sys.argv[1:]
with open(source, encoding="utf-8") as file:
    endpoints = yaml.safe_load(file) or {}
endpoints["action_endpoint"] = {**(endpoints.get("action_endpoint") or {}), "url": action_url}
with open(target, "w", encoding="utf-8") as file:
    yaml.safe_dump(endpoints, file, sort_keys=False)
PY

# start_service NAME COMMAND...: run COMMAND in the background, logging to LOG_DIR/NAME.log,
# its pid in LOG_DIR/NAME.pid (for ops, and for tests that stop one service). Sets LAST_PID.
start_service() {
  local name=$1
  shift
  "$@" >"$LOG_DIR/$name.log" 2>&1 &
  LAST_PID=$!
  SERVICE_PIDS+=("$LAST_PID")
  echo "$LAST_PID" >"$LOG_DIR/$name.pid"
  PID_FILES+=("$LOG_DIR/$name.pid")
}

# forget_service NAME PID: the service exited and was reaped; it is no longer stopped on exit
# and its pid file goes (the pid may belong to another process by then).
forget_service() {
  local name=$1 gone=$2 pid kept=()
  for pid in "${SERVICE_PIDS[@]}"; do
    [[ "$pid" == "$gone" ]] || kept+=("$pid")
  done
  SERVICE_PIDS=("${kept[@]}")
  rm -f "$LOG_DIR/$name.pid"
}

# wait_for NAME PID URL LOG: poll URL until it answers; give up early if the process died.
wait_for() {
  local name=$1 pid=$2 url=$3 log=$4
  local deadline=$((SECONDS + START_TIMEOUT))
  until .venv-rasa/bin/python -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)" "$url" 2>/dev/null; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "error: the $name stopped while starting; the end of $log:" >&2
      tail -n 20 "$log" >&2
      exit 1
    fi
    ((SECONDS < deadline)) || fail "the $name did not answer within ${START_TIMEOUT}s; see $log"
    sleep 1
  done
}

# start_action_server, later wait_for_action_server: other services can start in between.
start_action_server() {
  start_service actions \
    .venv-rasa/bin/rasa run actions --actions actions --port "$ACTIONS_PORT"
  ACTIONS_PID=$LAST_PID
}

wait_for_action_server() {
  wait_for "action server" "$ACTIONS_PID" "http://127.0.0.1:${ACTIONS_PORT}/health" "$LOG_DIR/actions.log"
}

# start_qa_service, later wait_for_qa_service: the index is built from data/knowledge
# when missing or outdated, then the index and the reader load; ready means both are.
start_qa_service() {
  start_service qa .venv/bin/python -m retrieval serve --host 127.0.0.1 --port "$QA_PORT"
  QA_PID=$LAST_PID
}

wait_for_qa_service() {
  wait_for "QA service" "$QA_PID" "http://127.0.0.1:${QA_PORT}/readyz" "$LOG_DIR/qa.log"
}
