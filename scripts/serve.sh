#!/usr/bin/env bash
# Start the web chat: the QA service, the action server, Rasa with its REST channel
# (no HTTP API) and a static server for web/, all on 127.0.0.1. Waits until each one
# answers, prints the chat URL, and runs until Ctrl-C. The action server and the QA service
# are restarted when they stop (scripts/lib/services.sh: backoff, at most RESTART_LIMIT
# times a minute); while the QA service is down the bot says it cannot answer questions
# right now. If Rasa or the web server stops, or the action server keeps stopping, it says
# so and stops them all.
#
# Environment (defaults in brackets): RASA_PORT [5005]  WEB_PORT [8080], and those of
# scripts/lib/services.sh (ACTIONS_PORT, QA_PORT, RASA_MODEL, LOG_DIR, START_TIMEOUT, RESTART_LIMIT).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/services.sh

RASA_PORT="${RASA_PORT:-5005}"
WEB_PORT="${WEB_PORT:-8080}"
check_ports RASA_PORT WEB_PORT

WEB_CMD=(.venv/bin/python -m http.server --bind 127.0.0.1 --directory web "$WEB_PORT")
# The REST channel with the message length limit, from credentials.yml.
RASA_CMD=(
  .venv-rasa/bin/rasa run --model "$RASA_MODEL" --credentials credentials.yml
  --endpoints "$ENDPOINTS" --interface 127.0.0.1 --port "$RASA_PORT"
  --cors "http://127.0.0.1:${WEB_PORT}" "http://localhost:${WEB_PORT}"
)
READY_URL[web]="http://127.0.0.1:${WEB_PORT}/"
# Rasa answers on / only once the model is loaded.
READY_URL[rasa]="http://127.0.0.1:${RASA_PORT}/"

echo "Starting the QA service, the action server, Rasa and the web server (logs in $LOG_DIR/) ..."
for service in qa actions web rasa; do
  start_service "$service"
done
for service in actions qa web rasa; do
  wait_for_service "$service"
done

echo "Chat ready: http://127.0.0.1:${WEB_PORT}/?rasa=http://127.0.0.1:${RASA_PORT}"
echo "Press Ctrl-C to stop."
supervise
fail_stopped
