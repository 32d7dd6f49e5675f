#!/usr/bin/env bash
# Start the background services the assistant needs, chat in the terminal,
# and stop the services when the chat ends (/stop, Ctrl-D or Ctrl-C).
# Environment: see scripts/lib/services.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/services.sh

echo "Starting the QA service and the action server (logs in $LOG_DIR/) ..."
start_qa_service
start_action_server
wait_for_action_server
wait_for_qa_service

echo "Opening the chat. Type /stop or press Ctrl-D to leave."
.venv-rasa/bin/rasa shell --model "$RASA_MODEL" --endpoints "$ENDPOINTS" --credentials credentials.yml
