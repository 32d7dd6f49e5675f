#!/usr/bin/env bash
# Start the background services the assistant needs, chat in the terminal,
# and stop the services when the chat ends (/stop, Ctrl-D or Ctrl-C).
# The action server and the QA service are restarted when they stop (see
# scripts/lib/services.sh; logged to LOG_DIR/supervisor.log); if Rasa stops
# without the chat ending, or the action server keeps stopping, it says so and exits.
# Environment: RASA_PORT [5005], and those of scripts/lib/services.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/services.sh

RASA_PORT="${RASA_PORT:-5005}"
check_ports RASA_PORT

echo "Starting the QA service and the action server (logs in $LOG_DIR/) ..."
start_service qa
start_service actions
wait_for_service actions
wait_for_service qa

echo "Opening the chat. Type /stop or press Ctrl-D to leave."
# From here on the terminal is the conversation's. What the supervisor does goes only to
# LOG_DIR/supervisor.log, and so does what bash says on stderr (such as "Killed" when a
# service dies of a signal); an error that ends the chat still reaches the terminal.
NOTES_ON_TERMINAL=0
exec {TERMINAL}>&2 2>>"$LOG_DIR/supervisor.log"
# Rasa's terminal chat is `rasa run` with a channel named cmdline; this one limits the length of
# messages (addons/message_limit.py), which `rasa shell` cannot. Its server listens on 127.0.0.1.
# Rasa's log and its dependencies' warnings go to LOG_DIR/rasa.log; the chat stays on the terminal.
# A background command reads /dev/null unless told otherwise: this one reads the keyboard.
exec {keyboard}<&0
.venv-rasa/bin/rasa run --connector addons.message_limit.LengthLimitedShellInput \
  --model "$RASA_MODEL" --endpoints "$ENDPOINTS" --interface 127.0.0.1 --port "$RASA_PORT" \
  <&"$keyboard" 2>"$LOG_DIR/rasa.log" &
track_service rasa $!
supervise
if [[ "$STOPPED" != rasa || "$STOPPED_STATUS" != 0 ]]; then
  echo >&"$TERMINAL" # off the chat's prompt line
  fail_stopped
fi
