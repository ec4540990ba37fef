#!/usr/bin/env bash
# A Spark standalone cluster on this machine, from the installed pyspark distribution: one master and
# R2LED_CLUSTER_WORKERS workers (default 2) on 127.0.0.1, each worker with one core and bounded memory,
# so executors are separate JVMs (and separate Python workers) as on a real cluster.
#
#   deploy/cluster.sh up      start the master and workers; prints the master URL
#   deploy/cluster.sh down    stop every process `up` started, by the pids it recorded
#   deploy/cluster.sh status  the master's view (JSON of /json on its web UI)
#
# Everything lives in R2LED_CLUSTER_DIR (default workspace/cluster): pids/, logs/, and each worker's
# work folder work-<n>/ (one folder per application and executor, with its stdout/stderr).
#
# Environment (all optional):
#   R2LED_CLUSTER_DIR       state folder (default: workspace/cluster)
#   R2LED_CLUSTER_PORT      master port (default 7077); the web UIs use 8080 (master), 8081.. (workers)
#   R2LED_CLUSTER_UI_PORT   master web UI port (default 8080)
#   R2LED_CLUSTER_WORKERS   number of workers (default 2)
#   R2LED_WORKER_MEMORY     memory each worker offers its executors (default 2g)
#   R2LED_WORKER_TIMEOUT_S  seconds without a heartbeat before the master drops a worker (default 60)
#   SPARK_HOME              the Spark distribution (default: the pyspark package in .venv)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="${R2LED_CLUSTER_DIR:-$HERE/workspace/cluster}"
PORT="${R2LED_CLUSTER_PORT:-7077}"
UI_PORT="${R2LED_CLUSTER_UI_PORT:-8080}"
WORKERS="${R2LED_CLUSTER_WORKERS:-2}"
MEMORY="${R2LED_WORKER_MEMORY:-2g}"
HOST=127.0.0.1
PYTHON="${PYSPARK_PYTHON:-$HERE/.venv/bin/python}"
if [[ -z "${SPARK_HOME:-}" ]]; then
  SPARK_HOME="$("$PYTHON" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')"
fi
export SPARK_HOME
# Daemons bind to the loopback only; their own scratch stays in the state folder.
export SPARK_LOCAL_IP="$HOST" SPARK_LOCAL_DIRS="$DIR/local" SPARK_LOG_DIR="$DIR/logs"
# Executors start Python workers with this interpreter (the project's environment).
export PYSPARK_PYTHON="$PYTHON"
# A worker that stops heartbeating is dropped after this long (Spark's default 60 s). Workers read it
# too: they heartbeat every quarter of it, so master and workers must agree.
TIMEOUT_OPT="-Dspark.worker.timeout=${R2LED_WORKER_TIMEOUT_S:-60}"
export SPARK_MASTER_OPTS="${SPARK_MASTER_OPTS:-} $TIMEOUT_OPT" SPARK_WORKER_OPTS="${SPARK_WORKER_OPTS:-} $TIMEOUT_OPT"

alive() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

wait_for_port() {  # port, seconds
  local deadline=$((SECONDS + $2))
  until "$PYTHON" - "$1" <<'EOF' 2>/dev/null
import socket, sys
socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1).close()
EOF
  do
    if (( SECONDS > deadline )); then return 1; fi
    sleep 0.5
  done
}

start() {  # name, log, class, args...
  local name="$1" log="$2"; shift 2
  if alive "$DIR/pids/$name.pid"; then echo "cluster: $name already running (pid $(cat "$DIR/pids/$name.pid"))"; return; fi
  # setsid: the daemon leaves this shell's process group, so `down` (not a terminal hang-up) stops it.
  setsid "$SPARK_HOME/bin/spark-class" "$@" >"$log" 2>&1 < /dev/null &
  echo $! > "$DIR/pids/$name.pid"
}

up() {
  mkdir -p "$DIR/pids" "$DIR/logs" "$DIR/local"
  start master "$DIR/logs/master.log" org.apache.spark.deploy.master.Master \
    --host "$HOST" --port "$PORT" --webui-port "$UI_PORT"
  wait_for_port "$PORT" 60 || { echo "cluster: the master did not open port $PORT; see $DIR/logs/master.log" >&2; exit 1; }
  for n in $(seq 1 "$WORKERS"); do
    mkdir -p "$DIR/work-$n"
    start "worker-$n" "$DIR/logs/worker-$n.log" org.apache.spark.deploy.worker.Worker \
      --host "$HOST" --cores 1 --memory "$MEMORY" --work-dir "$DIR/work-$n" --webui-port $((UI_PORT + n)) \
      "spark://$HOST:$PORT"
  done
  # Ready when the master lists every worker ALIVE.
  local deadline=$((SECONDS + 90))
  until [[ "$(alive_workers)" -ge "$WORKERS" ]]; do
    if (( SECONDS > deadline )); then
      echo "cluster: $(alive_workers) of $WORKERS workers registered; see $DIR/logs/" >&2; exit 1
    fi
    sleep 1
  done
  echo "spark://$HOST:$PORT"
}

alive_workers() {
  "$PYTHON" - "$UI_PORT" <<'EOF' 2>/dev/null || echo 0
import json, sys, urllib.request
state = json.load(urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/json", timeout=2))
print(sum(1 for w in state.get("workers", []) if w.get("state") == "ALIVE"))
EOF
}

stop_pid() {  # pid file: TERM the daemon and its children (executors), then KILL what is left
  local file="$1" pid
  [[ -f "$file" ]] || return 0
  pid="$(cat "$file")"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  rm -f "$file"
}

down() {
  # Workers first (each takes its executors with it: same process group), then the master.
  for file in "$DIR"/pids/worker-*.pid; do stop_pid "$file"; done
  stop_pid "$DIR/pids/master.pid"
  echo "cluster: stopped"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) "$PYTHON" -c "import sys, urllib.request; sys.stdout.write(urllib.request.urlopen('http://127.0.0.1:$UI_PORT/json').read().decode())" ;;
  *) sed -n '2,/^set -euo/{/^set -euo/d;p;}' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
