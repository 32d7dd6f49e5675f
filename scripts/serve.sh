#!/usr/bin/env bash
# Start the web chat: the QA service, the action server, Rasa with its REST channel
# (no HTTP API) and a static server for web/, all on 127.0.0.1. Waits until each one
# answers, prints the chat URL, and stops them all on Ctrl-C or as soon as Rasa, the
# action server or the web server exits. The QA service exiting only logs a warning:
# the bot then says it cannot answer questions right now, and the rest of the chat works.
#
# Environment (defaults in brackets): RASA_PORT [5005]  WEB_PORT [8080], and those of
# scripts/lib/services.sh (ACTIONS_PORT, QA_PORT, RASA_MODEL, LOG_DIR, START_TIMEOUT).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/services.sh

RASA_PORT="${RASA_PORT:-5005}"
WEB_PORT="${WEB_PORT:-8080}"
check_ports RASA_PORT WEB_PORT

echo "Starting the QA service, the action server, Rasa and the web server (logs in $LOG_DIR/) ..."
start_qa_service
start_action_server
start_service web \
  .venv/bin/python -m http.server --bind 127.0.0.1 --directory web "$WEB_PORT"
web_pid=$LAST_PID
start_service rasa \
  .venv-rasa/bin/rasa run --model "$RASA_MODEL" --credentials credentials.yml \
  --endpoints "$ENDPOINTS" --interface 127.0.0.1 --port "$RASA_PORT" \
  --cors "http://127.0.0.1:${WEB_PORT}" "http://localhost:${WEB_PORT}"
rasa_pid=$LAST_PID

wait_for_action_server
wait_for_qa_service
wait_for "web server" "$web_pid" "http://127.0.0.1:${WEB_PORT}/" "$LOG_DIR/web.log"
# Rasa answers on / only once the model is loaded.
wait_for "Rasa server" "$rasa_pid" "http://127.0.0.1:${RASA_PORT}/" "$LOG_DIR/rasa.log"

echo "Chat ready: http://127.0.0.1:${WEB_PORT}/?rasa=http://127.0.0.1:${RASA_PORT}"
echo "Press Ctrl-C to stop."
while true; do
  status=0 exited_pid=""
  wait -n -p exited_pid "${SERVICE_PIDS[@]}" || status=$?
  case "$exited_pid" in
    "$QA_PID") ;;
    "$ACTIONS_PID") fail "the action server stopped (exit status $status); see $LOG_DIR/actions.log" ;;
    "$rasa_pid") fail "the Rasa server stopped (exit status $status); see $LOG_DIR/rasa.log" ;;
    "$web_pid") fail "the web server stopped (exit status $status); see $LOG_DIR/web.log" ;;
    *) fail "a service stopped (exit status $status); see the logs in $LOG_DIR/" ;;
  esac
  forget_service qa "$QA_PID"
  echo "warning: the QA service stopped (exit status $status); until it is restarted the bot" \
    "says it cannot answer questions right now; see $LOG_DIR/qa.log" >&2
done
