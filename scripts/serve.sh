#!/usr/bin/env bash
# Start the web chat: the QA service, the action server, Rasa with its REST channel
# (no HTTP API) and a static server for web/, all on 127.0.0.1. Waits until each one
# answers, prints the chat URL, and stops them all on Ctrl-C or as soon as one exits.
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
start_service "$LOG_DIR/web.log" \
  .venv/bin/python -m http.server --bind 127.0.0.1 --directory web "$WEB_PORT"
web_pid=$LAST_PID
start_service "$LOG_DIR/rasa.log" \
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
status=0
wait -n "${SERVICE_PIDS[@]}" || status=$?
fail "a service stopped (exit status $status); see the logs in $LOG_DIR/"
