#!/usr/bin/env bash
# Run the assistant scaled out, all on 127.0.0.1: RASA_INSTANCES Rasa instances behind nginx,
# sharing Rasa's SQL tracker store on PostgreSQL and a Redis lock store (endpoints-cluster.yml,
# addons/lock_store.py), two action-server replicas behind nginx, and the QA service.
# nginx on CLUSTER_PORT serves the web chat (web/) and the REST channel of every instance:
#   http://127.0.0.1:CLUSTER_PORT/?rasa=http://127.0.0.1:CLUSTER_PORT
# PostgreSQL, Redis and nginx are Debian's packages (apt-get install postgresql redis-server
# nginx); their data and the logs live in CLUSTER_DIR. The Rasa instances, the action servers,
# Redis and the QA service are restarted when they stop (scripts/lib/services.sh); nginx
# fails over to the other instances meanwhile. PostgreSQL runs on its own (pg_ctl): while it
# is down, messages fail with an error and no trace, and the conversations go on once it is
# back. Ctrl-C stops everything, PostgreSQL included. The ports of every part are written to
# CLUSTER_DIR/cluster.json.
#
# Environment (defaults in brackets): RASA_INSTANCES [2]  CLUSTER_PORT [5005]  CLUSTER_DIR
# [var/cluster]  CLUSTER_LOCK_STORE [addons.lock_store.AtomicRedisLockStore; `redis` for
# Rasa's own], and those of scripts/lib/services.sh (RASA_MODEL, START_TIMEOUT, RESTART_LIMIT,
# QA_* ...). Every other port is a free one.
set -euo pipefail
cd "$(dirname "$0")/.."

RASA_INSTANCES="${RASA_INSTANCES:-2}"
CLUSTER_PORT="${CLUSTER_PORT:-5005}"
CLUSTER_DIR="${CLUSTER_DIR:-var/cluster}"
export CLUSTER_LOCK_STORE="${CLUSTER_LOCK_STORE:-addons.lock_store.AtomicRedisLockStore}"
[[ "$RASA_INSTANCES" =~ ^[1-9][0-9]?$ ]] || {
  echo "error: RASA_INSTANCES must be a whole number from 1 to 99, got '$RASA_INSTANCES'" >&2
  exit 1
}
CLUSTER=(.venv-rasa/bin/python scripts/cluster.py)
"${CLUSTER[@]}" check-binaries
mkdir -p "$CLUSTER_DIR"
CLUSTER_DIR="$(cd "$CLUSTER_DIR" && pwd)"
export LOG_DIR="${LOG_DIR:-$CLUSTER_DIR/log}"

# Free ports: QA, actions front (nginx), two action replicas, PostgreSQL, Redis, each Rasa instance.
read -r QA_PORT ACTIONS_PORT ACTIONS1_PORT ACTIONS2_PORT PG_PORT REDIS_PORT RASA_PORTS \
  <<<"$("${CLUSTER[@]}" ports $((6 + RASA_INSTANCES)))"
read -r -a RASA_PORTS <<<"$RASA_PORTS"
export QA_PORT ACTIONS_PORT REDIS_PORT
source scripts/lib/services.sh
check_ports CLUSTER_PORT

export CLUSTER_ACTIONS_URL="http://127.0.0.1:${ACTIONS_PORT}/webhook"
export DATABASE_URL="postgresql://postgres@127.0.0.1:${PG_PORT}/assistant"
ENDPOINTS=endpoints-cluster.yml
stop_cluster() {
  stop_services
  "${CLUSTER[@]}" postgres-stop "$CLUSTER_DIR/postgres" "$PG_PORT" || true
}
trap stop_cluster EXIT

"${CLUSTER[@]}" nginx-config "$CLUSTER_DIR/nginx" "$CLUSTER_PORT" "$ACTIONS_PORT" \
  --rasa "${RASA_PORTS[@]}" --actions "$ACTIONS1_PORT" "$ACTIONS2_PORT"
mkdir -p "$CLUSTER_DIR/redis"
# The lock queue is kept on disk, so a restarted Redis still knows whose turn it is.
REDIS_CMD=(
  "$("${CLUSTER[@]}" which redis-server)" --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$CLUSTER_DIR/redis"
  --save "" --appendonly yes --appendfsync always
)
NGINX_CMD=("$("${CLUSTER[@]}" which nginx)" -p "$CLUSTER_DIR/nginx" -e "$CLUSTER_DIR/nginx/error.log"
  -c "$CLUSTER_DIR/nginx/nginx.conf" -g "daemon off;")
SERVICE_TITLE+=([redis]="Redis server" [nginx]="nginx")
READY_URL+=([redis]="" [nginx]="http://127.0.0.1:${CLUSTER_PORT}/health")
RESTARTABLE=(qa redis)
SERVICES=(nginx qa redis)
for replica in 1 2; do
  port_name="ACTIONS${replica}_PORT"
  declare -a "ACTIONS${replica}_CMD=(env SANIC_HOST=127.0.0.1 .venv-rasa/bin/rasa run actions --actions actions
    --port ${!port_name})"
  SERVICE_TITLE[actions$replica]="action server $replica"
  READY_URL[actions$replica]="http://127.0.0.1:${!port_name}/health"
  RESTARTABLE+=("actions$replica")
  SERVICES+=("actions$replica")
done
for ((i = 1; i <= RASA_INSTANCES; i++)); do
  port=${RASA_PORTS[i - 1]}
  declare -a "RASA${i}_CMD=(.venv-rasa/bin/rasa run --model $RASA_MODEL --credentials credentials.yml
    --endpoints $ENDPOINTS --interface 127.0.0.1 --port $port)"
  SERVICE_TITLE[rasa$i]="Rasa instance $i"
  READY_URL[rasa$i]="http://127.0.0.1:${port}/"
  RESTARTABLE+=("rasa$i")
  SERVICES+=("rasa$i")
done

echo "Starting PostgreSQL (data in $CLUSTER_DIR/postgres) ..."
"${CLUSTER[@]}" postgres-start "$CLUSTER_DIR/postgres" "$PG_PORT"
# Created once here: several processes creating the same tables at once collide.
"${CLUSTER[@]}" create-schema "$DATABASE_URL" 2>>"$LOG_DIR/schema.log"
echo "Starting Redis, nginx, the QA service, 2 action servers and $RASA_INSTANCES Rasa instances" \
  "(logs in $LOG_DIR/) ..."
for service in "${SERVICES[@]}"; do
  start_service "$service"
done
for service in "${SERVICES[@]}"; do
  [[ -z "${READY_URL[$service]}" ]] || wait_for_service "$service"
done

"${CLUSTER[@]}" describe "$CLUSTER_DIR/cluster.json" url="http://127.0.0.1:${CLUSTER_PORT}" \
  rasa_ports="${RASA_PORTS[*]}" actions_url="http://127.0.0.1:${ACTIONS_PORT}" \
  actions_ports="$ACTIONS1_PORT $ACTIONS2_PORT" qa_url="http://127.0.0.1:${QA_PORT}" \
  postgres_port="$PG_PORT" redis_port="$REDIS_PORT" database_url="$DATABASE_URL" log_dir="$LOG_DIR"
echo "Cluster ready: http://127.0.0.1:${CLUSTER_PORT}/?rasa=http://127.0.0.1:${CLUSTER_PORT}"
echo "Press Ctrl-C to stop."
supervise
fail_stopped
