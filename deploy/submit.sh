#!/usr/bin/env bash
# Run one r2led job through spark-submit: Delta enabled on the command line, the project wheel on
# the Python path of the driver and every executor, the job in `spark.mode=submit`.
#
#   deploy/submit.sh <command> [job arguments...]
#   deploy/submit.sh ingest --env tiny --set workspace.root=/data/r2led
#   deploy/submit.sh report sids --env local
#
# <command> is any `r2led` command (ingest, sequences, generate, embed-items, ..., pipeline, report
# <name>, benchmark <name>). The main script is jobs/cli.py, which imports the job module by its
# package name: running jobs/<job>.py itself makes it `__main__`, and a pandas UDF that refers to a
# module-level cache (generate's `_world`) then cannot be unpickled on the executors.
#
# Environment (all optional):
#   SPARK_SUBMIT        the spark-submit to run (default: .venv/bin/, else $SPARK_HOME/bin/, else PATH)
#   PYSPARK_PYTHON      driver and executor Python (default: .venv/bin/python, else python3 on PATH)
#   R2LED_WHEEL         wheel for --py-files (default: the newest dist/r2led-*.whl; build it with `make wheel`);
#                       `installed`: no --py-files, the r2led installed in PYSPARK_PYTHON's environment
#                       serves driver and executors (the image's default: its venv holds the wheel)
#   R2LED_MAIN          main script (default: jobs/cli.py here; local:///app/jobs/cli.py for k8s cluster mode)
#   R2LED_IVY_DIR       Ivy cache for the Delta jars (default: workspace/ivy2)
#   R2LED_CONF_DIR      conf/ folder (default: conf/ here, so edits to conf/ apply without a rebuild;
#                       unset, the loader extracts the YAML packaged inside the wheel)
#   R2LED_DELTA_PACKAGE Maven coordinate of Delta (default below: matches pyspark 4.0 and delta-spark 4.4.0)
#   R2LED_SUBMIT_OPTS   extra spark-submit options, split on spaces,
#                       e.g. "--master k8s://https://host:443 --deploy-mode cluster"
#   R2LED_SUBMIT_DRY_RUN=1  print the command (one argument per line) instead of running it
#
# Inside the image this script is the ENTRYPOINT. Spark on Kubernetes starts driver and executor
# pods from the same image with `driver ...` / `executor` as arguments; those are handed to Spark
# the way Spark's own image entrypoint does.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Spark's Scala 2.13 build for Spark 4.0 and the delta-spark pin of requirements/constraints.txt.
DELTA_PACKAGE="${R2LED_DELTA_PACKAGE:-io.delta:delta-spark_4.0_2.13:4.4.0}"

first_of() {  # the first argument that names an executable file
  local candidate
  for candidate in "$@"; do
    if [[ -n "$candidate" && -x "$candidate" ]]; then echo "$candidate"; return 0; fi
  done
  return 1
}

SPARK_SUBMIT="${SPARK_SUBMIT:-$(first_of "$HERE/.venv/bin/spark-submit" "${SPARK_HOME:-}/bin/spark-submit" \
  "$(command -v spark-submit || true)")}" || { echo "submit.sh: no spark-submit found; set SPARK_SUBMIT" >&2; exit 2; }

case "${1:-}" in
  driver)  # Kubernetes driver pod: spark-submit in client mode inside the pod.
    shift
    exec "$SPARK_SUBMIT" --deploy-mode client --conf "spark.driver.bindAddress=${SPARK_DRIVER_BIND_ADDRESS:-0.0.0.0}" "$@"
    ;;
  executor)  # Kubernetes executor pod: the executor backend on Spark's jars.
    shift
    SPARK_HOME="${SPARK_HOME:?SPARK_HOME must be set in the image}"
    mapfile -t java_opts < <(env | grep '^SPARK_JAVA_OPT_' | sort -t_ -k4 -n | sed 's/^[^=]*=//')
    exec "${JAVA_HOME:?}/bin/java" "${java_opts[@]}" \
      -Xms"$SPARK_EXECUTOR_MEMORY" -Xmx"$SPARK_EXECUTOR_MEMORY" \
      -cp "${SPARK_CONF_DIR:-$SPARK_HOME/conf}:$SPARK_HOME/jars/*${SPARK_EXTRA_CLASSPATH:+:$SPARK_EXTRA_CLASSPATH}" \
      org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend \
      --driver-url "$SPARK_DRIVER_URL" --executor-id "$SPARK_EXECUTOR_ID" --cores "$SPARK_EXECUTOR_CORES" \
      --app-id "$SPARK_APPLICATION_ID" --hostname "$SPARK_EXECUTOR_POD_IP" \
      --resourceProfileId "$SPARK_RESOURCE_PROFILE_ID" --podName "$SPARK_EXECUTOR_POD_NAME"
    ;;
  "" | -h | --help)
    sed -n '2,/^set -euo/{/^set -euo/d;p;}' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    [[ -n "${1:-}" ]] && exit 0 || exit 2
    ;;
esac

PYSPARK_PYTHON="${PYSPARK_PYTHON:-$(first_of "$HERE/.venv/bin/python" "$(command -v python3 || true)")}"
export PYSPARK_PYTHON
export PYSPARK_DRIVER_PYTHON="${PYSPARK_DRIVER_PYTHON:-$PYSPARK_PYTHON}"
export SPARK_LOCAL_IP="${SPARK_LOCAL_IP:-127.0.0.1}"
if [[ -z "${R2LED_CONF_DIR:-}" && -f "$HERE/conf/base.yaml" ]]; then
  export R2LED_CONF_DIR="$HERE/conf"
fi

if [[ -z "${R2LED_WHEEL:-}" ]]; then
  R2LED_WHEEL="$(ls -t "$HERE"/dist/r2led-*-py3-none-any.whl 2>/dev/null | head -n 1 || true)"
  [[ -n "$R2LED_WHEEL" ]] || { echo "submit.sh: no dist/r2led-*.whl; run 'make wheel' or set R2LED_WHEEL" >&2; exit 2; }
fi
py_files=(--py-files "$R2LED_WHEEL")
[[ "$R2LED_WHEEL" == installed ]] && py_files=()

# Word splitting of R2LED_SUBMIT_OPTS is intended: it holds several options.
# shellcheck disable=SC2206
extra_opts=(${R2LED_SUBMIT_OPTS:-})
cmd=(
  "$SPARK_SUBMIT"
  --name "r2led-$1"
  --packages "$DELTA_PACKAGE"
  --conf "spark.jars.ivy=${R2LED_IVY_DIR:-$HERE/workspace/ivy2}"
  --conf spark.sql.extensions=io.delta.sql.DeltaSparkSessionExtension
  --conf spark.sql.catalog.spark_catalog=org.apache.spark.sql.delta.catalog.DeltaCatalog
  "${extra_opts[@]}"
  "${py_files[@]}"
  "${R2LED_MAIN:-$HERE/jobs/cli.py}"
  "$@"
  --set spark.mode=submit
)
if [[ "${R2LED_SUBMIT_DRY_RUN:-0}" == "1" ]]; then
  printf '%s\n' "${cmd[@]}"
  exit 0
fi
exec "${cmd[@]}"
