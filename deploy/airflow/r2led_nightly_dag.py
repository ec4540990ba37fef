"""Airflow example: the R2LED pipeline as one spark-submit per stage, nightly.

Each task runs `deploy/submit.sh <stage> --env <env>` (spark-submit with Delta and the r2led
wheel), so a failed stage is retried alone and the others keep their outputs: every stage is
idempotent (insert-only MERGE or overwrite of its own tables). Copy this file into the DAGs folder
of an Airflow (2.4+ or 3.x) worker that has the checkout at R2LED_HOME (`make setup wheel` done)
and Java 17. Set R2LED_ENV / R2LED_SUBMIT_OPTS in the worker environment to point at a cluster,
e.g. R2LED_SUBMIT_OPTS="--master k8s://https://<api-server>:443 --deploy-mode cluster ...".

The stage list is the `make run` order; tests check it against `r2led`'s commands without
importing Airflow.
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
# Extra arguments per stage; Jinja renders {{ ds }} to the run's logical date (YYYY-MM-DD).
STAGE_ARGS = {"score": "--date {{ ds }}"}

with DAG(
    dag_id="r2led_nightly",
    description="R2LED: raw logs → Delta tables → SIDs → retrieval → training → champion → predictions",
    schedule="15 2 * * *",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,  # stages overwrite tables: never two runs at once
    default_args={"retries": 1, "retry_delay": timedelta(minutes=10)},
    tags=["r2led", "spark"],
) as dag:
    previous = None
    for stage in STAGES:
        task = BashOperator(
            task_id=stage.replace("-", "_"),
            # Not ending in ".sh": Airflow would read such a bash_command as a template file.
            bash_command=f'"{R2LED_HOME}/deploy/submit.sh" {stage} --env {R2LED_ENV} '
                         f'{STAGE_ARGS.get(stage, "")}'.rstrip(),
            cwd=R2LED_HOME,
            append_env=True,
        )
        if previous is not None:
            previous >> task
        previous = task
