"""Airflow example: the nightly R2LED run for the DAG run's date, one spark-submit per stage.

Each task runs `deploy/submit.sh pipeline --date yesterday --as-of {{ data_interval_end | ds }}
--until <stage> --env <env>`
(spark-submit with Delta and the r2led wheel): the dated pipeline skips the stages its ledger
(`pipeline_runs`) already holds for that date, so a retried task resumes where it failed and
clearing a task re-runs only what is not done (`--force-stage` re-runs one on purpose). Every
stage is incremental and idempotent (MERGE, UPDATE or a partition overwrite). Copy this file into the DAGs folder
of an Airflow (2.4+ or 3.x) worker that has the checkout at R2LED_HOME (`make setup wheel` done)
and Java 17. Set R2LED_ENV / R2LED_SUBMIT_OPTS in the worker environment to point at a cluster,
e.g. R2LED_SUBMIT_OPTS="--master k8s://https://<api-server>:443 --deploy-mode cluster ...".

The stage list is the pipeline's order; tests check it against `r2led`'s commands without
importing Airflow. The run date is the day before the run's trigger (`data_interval_end`, the
scheduled time on the cron timetables of Airflow 2.4+ and 3.x), as for cron and the Databricks job. `{{ ds }}`
is not used: it is that day on Airflow 2's interval timetable but the trigger's own day on Airflow 3's
default cron timetable. A catch-up or backfill run gets the day before its own scheduled time.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow import DAG

try:  # Airflow 3: the standard provider
    from airflow.providers.standard.operators.bash import BashOperator
except ImportError:  # Airflow 2
    from airflow.operators.bash import BashOperator

R2LED_HOME = os.environ.get("R2LED_HOME", "/opt/r2led")
R2LED_ENV = os.environ.get("R2LED_ENV", "local")

# ingest → ... → score, one spark-submit each (names are `r2led` commands).
STAGES = [
    "ingest",
    "sequences",
    "embed-items",
    "train-codebook",
    "assign-sids",
    "collab-vectors",
    "retrieve",
    "build-training-set",
    "train",
    "promote",
    "score",
]
# `pipeline --date yesterday --as-of T` runs the day before T; Jinja renders T to the trigger's date.
AS_OF = "{{ data_interval_end | ds }}"

with DAG(
    dag_id="r2led_nightly",
    description="R2LED: raw logs → Delta tables → SIDs → retrieval → training → champion → predictions",
    schedule="15 2 * * *",
    start_date=datetime(2026, 1, 1),
    catchup=False,  # set True to backfill missed days in order (one date at a time)
    max_active_runs=1,  # dates must run in order: each rolls the split forward
    default_args={"retries": 1, "retry_delay": timedelta(minutes=10)},
    tags=["r2led", "spark"],
) as dag:
    previous = None
    for stage in STAGES:
        task = BashOperator(
            task_id=stage.replace("-", "_"),
            # Not ending in ".sh": Airflow would read such a bash_command as a template file.
            bash_command=f'"{R2LED_HOME}/deploy/submit.sh" pipeline --date yesterday --as-of {AS_OF} '
                         f'--until {stage} --env {R2LED_ENV}',
            cwd=R2LED_HOME,
            append_env=True,
        )
        if previous is not None:
            previous >> task
        previous = task
