# Shared by scripts/run-chat.sh and scripts/serve.sh: start the assistant's services on
# 127.0.0.1 only, wait until each answers, restart the action server and the QA service when
# they stop, and stop them all on exit. Service NAME runs the command in the array NAME_CMD
# (upper case), logs to LOG_DIR/NAME.log (a restart appends to it) and has its pid in
# LOG_DIR/NAME.pid while it runs; the restarts are logged to LOG_DIR/supervisor.log.
# Source it from the repository root after `set -euo pipefail`.
#
# Environment (defaults in brackets):
#   ACTIONS_PORT [5055]  QA_PORT [8000]  RASA_MODEL [models/horoscope.tar.gz]  LOG_DIR [var/log]
#   START_TIMEOUT [180 seconds per service]
#   RESTART_LIMIT [5]: restarts of one service within a minute before it is given up on; each
#     restart waits twice as long as the one before it in that minute: 1, 2, 4 ... seconds,
#     at most RESTART_BACKOFF_MAX [30]
#   DATABASE_URL, HOROSCOPE_API_URL, MAX_MESSAGE_CHARS and the QA_* variables are passed on (see README).

ACTIONS_PORT="${ACTIONS_PORT:-5055}"
QA_PORT="${QA_PORT:-8000}"
RASA_MODEL="${RASA_MODEL:-models/horoscope.tar.gz}"
LOG_DIR="${LOG_DIR:-var/log}"
START_TIMEOUT="${START_TIMEOUT:-180}"
RESTART_LIMIT="${RESTART_LIMIT:-5}"
RESTART_BACKOFF_MAX="${RESTART_BACKOFF_MAX:-30}"
export RASA_TELEMETRY_ENABLED="${RASA_TELEMETRY_ENABLED:-false}"
export SQLALCHEMY_SILENCE_UBER_WARNING="${SQLALCHEMY_SILENCE_UBER_WARNING:-1}"

# note MESSAGE: what happened to a service, timestamped in LOG_DIR/supervisor.log, and on the
# terminal (file descriptor TERMINAL: stderr unless the script moves it) unless NOTES_ON_TERMINAL=0.
TERMINAL=2
note() {
  if [[ -d "$LOG_DIR" ]]; then
    echo "$(date '+%F %T') $*" >>"$LOG_DIR/supervisor.log"
  fi
  if [[ "${NOTES_ON_TERMINAL:-1}" == 1 ]]; then
    echo "$*" >&"$TERMINAL"
  fi
}

fail() {
  NOTES_ON_TERMINAL=1 note "error: $*"
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
[[ "$RESTART_LIMIT" =~ ^[0-9]+$ ]] || fail "RESTART_LIMIT must be a whole number, got '$RESTART_LIMIT'"
[[ "$RESTART_BACKOFF_MAX" =~ ^[1-9][0-9]*$ ]] ||
  fail "RESTART_BACKOFF_MAX must be a whole number of seconds, got '$RESTART_BACKOFF_MAX'"
[[ -f "$RASA_MODEL" ]] || fail "no trained model at $RASA_MODEL; train one with: make train"

# rasa run actions has no --interface option; its Sanic server binds SANIC_HOST (else 0.0.0.0).
ACTIONS_CMD=(env SANIC_HOST=127.0.0.1 .venv-rasa/bin/rasa run actions --actions actions --port "$ACTIONS_PORT")
# The index is built from data/knowledge when missing or outdated, then the index and the reader load.
QA_CMD=(.venv/bin/python -m retrieval serve --host 127.0.0.1 --port "$QA_PORT")
declare -A SERVICE_TITLE=([actions]="action server" [qa]="QA service" [rasa]="Rasa server" [web]="web server")
# What answers once a service is ready; the scripts add theirs.
declare -A READY_URL=(
  [actions]="http://127.0.0.1:${ACTIONS_PORT}/health"
  [qa]="http://127.0.0.1:${QA_PORT}/readyz"
)
# Started again when they stop; the chat goes on without the optional ones once given up on.
RESTARTABLE=(actions qa)
OPTIONAL=(qa)

mkdir -p "$LOG_DIR"
RUN_DIR="$(mktemp -d)"
declare -A SERVICE_PID=()
declare -A RESTART_TIMES=()
stop_services() {
  local name pids=("${SERVICE_PID[@]}")
  if ((${#pids[@]})); then
    kill "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
  fi
  for name in "${!SERVICE_PID[@]}"; do
    rm -f "$LOG_DIR/$name.pid"
  done
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

# track_service NAME PID: PID is service NAME now: supervised, stopped on exit, in LOG_DIR/NAME.pid
# (for ops, and for tests that stop one service).
track_service() {
  SERVICE_PID[$1]=$2
  echo "$2" >"$LOG_DIR/$1.pid"
}

# start_service NAME [DELAY]: run NAME_CMD in the background, logging to LOG_DIR/NAME.log. After a
# DELAY (a restart) the log is appended to, and the pid is that of the service from the start.
start_service() {
  local name=$1 delay=${2:-0} log="$LOG_DIR/$1.log"
  local -n command="${name^^}_CMD"
  if ((delay)); then
    echo "--- $(date '+%F %T') ${0##*/} restarts the ${SERVICE_TITLE[$name]} in ${delay}s" >>"$log"
    (
      trap 'kill "$timer" 2>/dev/null; exit 143' TERM
      sleep "$delay" &
      timer=$!
      wait "$timer"
      exec "${command[@]}"
    ) >>"$log" 2>&1 &
  else
    "${command[@]}" >"$log" 2>&1 &
  fi
  track_service "$name" $!
}

# answers URL: true when an HTTP GET of URL succeeds within 2 seconds.
answers() {
  .venv-rasa/bin/python -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)" "$1" \
    2>/dev/null
}

# wait_for_service NAME: poll NAME's ready URL until it answers; give up early if the service died.
wait_for_service() {
  local name=$1 title=${SERVICE_TITLE[$1]} log="$LOG_DIR/$1.log"
  local deadline=$((SECONDS + START_TIMEOUT))
  until answers "${READY_URL[$name]}"; do
    if ! kill -0 "${SERVICE_PID[$name]}" 2>/dev/null; then
      echo "error: the $title stopped while starting; the end of $log:" >&2
      tail -n 20 "$log" >&2
      exit 1
    fi
    ((SECONDS < deadline)) || fail "the $title did not answer within ${START_TIMEOUT}s; see $log"
    sleep 1
  done
}

# restart_later NAME STATUS: start NAME again after its backoff; false when it was restarted
# RESTART_LIMIT times within the last minute already, so that one that cannot start does not spin.
restart_later() {
  local name=$1 status=$2 title=${SERVICE_TITLE[$1]} time recent=()
  for time in ${RESTART_TIMES[$name]:-}; do
    if ((EPOCHSECONDS - time < 60)); then
      recent+=("$time")
    fi
  done
  if ((${#recent[@]} >= RESTART_LIMIT)); then
    note "error: the $title stopped (exit status $status) after ${#recent[@]} restarts within a minute;" \
      "it is not restarted again; see $LOG_DIR/$name.log"
    return 1
  fi
  local delay=1 earlier
  for earlier in "${recent[@]}"; do
    ((delay = 2 * delay < RESTART_BACKOFF_MAX ? 2 * delay : RESTART_BACKOFF_MAX))
  done
  RESTART_TIMES[$name]="${recent[*]} $EPOCHSECONDS"
  note "warning: the $title stopped (exit status $status); restarting it in ${delay}s" \
    "(restart $((${#recent[@]} + 1)) of at most $RESTART_LIMIT a minute); see $LOG_DIR/$name.log"
  start_service "$name" "$delay"
}

# find_stopped: STOPPED is the name of a service that has exited and STOPPED_STATUS its exit
# status, or STOPPED is empty when all run. Bash reaps its children as they exit; `wait -n`
# misses one reaped before it is called, `wait PID` still has its status.
find_stopped() {
  local name
  STOPPED=""
  for name in "${!SERVICE_PID[@]}"; do
    if ! kill -0 "${SERVICE_PID[$name]}" 2>/dev/null; then
      STOPPED=$name STOPPED_STATUS=0
      wait "${SERVICE_PID[$name]}" || STOPPED_STATUS=$?
      return
    fi
  done
}

# supervise: check the services every second, restarting the restartable ones that stopped.
# Returns when another service stops, or a restartable one that is not optional is given up on,
# with STOPPED (its name) and STOPPED_STATUS (its exit status). The chat goes on without an
# optional one given up on.
supervise() {
  while ((${#SERVICE_PID[@]})); do
    find_stopped
    if [[ -z "$STOPPED" ]]; then
      sleep 1 &
      wait $! # a signal ends this wait at once, unlike a sleep in the foreground
      continue
    fi
    unset "SERVICE_PID[$STOPPED]"
    rm -f "$LOG_DIR/$STOPPED.pid"
    [[ " ${RESTARTABLE[*]} " == *" $STOPPED "* ]] || return 0
    restart_later "$STOPPED" "$STOPPED_STATUS" && continue
    [[ " ${OPTIONAL[*]} " == *" $STOPPED "* ]] || return 0
    note "warning: the chat goes on without the ${SERVICE_TITLE[$STOPPED]} until the services are started again"
  done
}

# fail_stopped: exit with the error for the service that supervise returned on.
fail_stopped() {
  [[ -n "$STOPPED" ]] || fail "a service stopped (exit status $STOPPED_STATUS); see the logs in $LOG_DIR/"
  fail "the ${SERVICE_TITLE[$STOPPED]} stopped (exit status $STOPPED_STATUS); see $LOG_DIR/$STOPPED.log"
}
