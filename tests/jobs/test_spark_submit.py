"""Jobs run through a real `spark-submit`: Delta from --packages, the code from the wheel on --py-files.

The wheel is built once into a temp folder (the `make wheel` command). Then, on the tiny config
in one temp workspace: `generate` through deploy/submit.sh, and `ingest` and `sequences` with the
plain command `spark-submit ... jobs/<job>.py --env tiny --set spark.mode=submit`. The outcomes
are read back through Delta with the session fixture.

Under spark-submit the Python driver's stderr is merged into spark-submit's stdout (PythonRunner),
so log lines and config errors are looked for in both streams.
"""

from __future__ import annotations

import ast
import re
import subprocess
import zipfile
from pathlib import Path

import pytest

from jobs.cli import COMMANDS
from jobs.runtime.spark_runtime import _adopt_submitted_session
from tests.helpers import IVY_DIR, REPO
from tests.spark_submit_support import (
    DELTA_PACKAGE,
    build_wheel,
    submit_job,
    submit_sh,
    tail,
)

@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("wheel-src"))


@pytest.fixture(scope="module")
def submitted(wheel, tmp_path_factory) -> dict:
    """generate (submit.sh) → ingest → sequences (plain spark-submit) in one temp workspace."""
    root = tmp_path_factory.mktemp("submit-workspace")
    runs: dict[str, subprocess.CompletedProcess] = {}
    runs["generate"] = submit_sh(wheel, root, "generate", "--env", "tiny",
                                 "--set", f"workspace.root={root}", "--set", f"spark.ivy_dir={IVY_DIR}")
    if runs["generate"].returncode == 0:
        runs["ingest"] = submit_job("ingest", wheel, root)
    if runs.get("ingest") and runs["ingest"].returncode == 0:
        runs["sequences"] = submit_job("sequences", wheel, root)
    return {"root": root, "runs": runs}


def _succeeded(submitted: dict, job: str) -> subprocess.CompletedProcess:
    result = submitted["runs"].get(job)
    assert result is not None, f"{job} did not run: an earlier job failed"
    assert result.returncode == 0, f"spark-submit {job} exited {result.returncode}:\n{tail(result)}"
    return result


def _reported_events(result: subprocess.CompletedProcess) -> int:
    match = re.search(r"synthetic world at .*: [\d,]+ users, [\d,]+ items, ([\d,]+) events",
                      result.stdout + result.stderr)
    assert match, f"generate did not report its event count:\n{tail(result)}"
    return int(match.group(1).replace(",", ""))


def test_the_wheel_ships_conf_and_every_job(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"r2led_model/conf/base.yaml", "r2led_model/conf/tiny.yaml"} <= names
    job_files = {f"{module.replace('.', '/')}.py" for module, _ in COMMANDS.values()}
    assert {"jobs/cli.py", "jobs/runtime/spark_runtime.py"} | job_files <= names


@pytest.mark.slow  # a spark-submit each (JVM start + Ivy resolve): tens of seconds
def test_generate_through_submit_sh_writes_the_events_it_reports(submitted):
    result = _succeeded(submitted, "generate")
    events = _reported_events(result)
    csv_files = list((submitted["root"] / "raw" / "synthetic" / "events").glob("event_date=*/part-*.csv"))
    lines = sum(len(f.read_text().splitlines()) for f in csv_files)
    assert events > 0 and lines == events


@pytest.mark.slow  # a spark-submit each (JVM start + Ivy resolve): tens of seconds
def test_ingest_loads_every_generated_event_into_delta(submitted, spark):
    _succeeded(submitted, "ingest")
    events = _reported_events(submitted["runs"]["generate"])
    tables = submitted["root"] / "tables"
    loaded = spark.read.format("delta").load(str(tables / "events"))
    assert loaded.count() == events
    assert loaded.select("user_id").distinct().count() == 60  # synthetic.num_users in conf/tiny.yaml
    assert spark.read.format("delta").load(str(tables / "events_rejected")).count() == 0
    history = spark.sql(f"DESCRIBE HISTORY delta.`{tables / 'events'}`").collect()
    assert len(history) >= 1  # a Delta log, not plain Parquet


@pytest.mark.slow  # a spark-submit each (JVM start + Ivy resolve): tens of seconds
def test_sequences_keeps_every_behaviour_of_every_user(submitted, spark):
    _succeeded(submitted, "sequences")
    tables = submitted["root"] / "tables"
    events = spark.read.format("delta").load(str(tables / "events"))
    sequences = spark.read.format("delta").load(str(tables / "user_sequences"))
    assert sequences.count() == events.select("user_id").distinct().count()
    stored = sequences.selectExpr("sum(length + dropped) AS n").first()["n"]
    assert stored == events.count()
    assert spark.read.format("delta").load(str(tables / "samples")).count() > 0


@pytest.mark.slow  # a spark-submit each (JVM start + Ivy resolve): tens of seconds
def test_a_bad_set_key_exits_2_and_names_the_key(wheel, tmp_path):
    result = submit_job("ingest", wheel, tmp_path, "--set", "sequences.no_such_key=1")
    assert result.returncode == 2, tail(result)
    assert "sequences.no_such_key" in result.stdout + result.stderr
    assert not (tmp_path / "tables").exists()


def test_submit_sh_builds_the_documented_command(wheel, tmp_path):
    result = submit_sh(wheel, tmp_path, "report", "sids", "--env", "tiny", R2LED_SUBMIT_DRY_RUN="1")
    assert result.returncode == 0, tail(result)
    args = result.stdout.splitlines()
    assert args[0].endswith("spark-submit")
    assert args[args.index("--packages") + 1] == DELTA_PACKAGE
    confs = {args[i + 1] for i, a in enumerate(args) if a == "--conf"}
    assert {"spark.sql.extensions=io.delta.sql.DeltaSparkSessionExtension",
            "spark.sql.catalog.spark_catalog=org.apache.spark.sql.delta.catalog.DeltaCatalog",
            f"spark.jars.ivy={IVY_DIR}"} <= confs
    assert args[args.index("--py-files") + 1] == str(wheel)
    main = args.index(str(REPO / "jobs" / "cli.py"))
    # The command and its arguments follow the main script; spark.mode=submit is the last --set.
    assert args[main + 1:] == ["report", "sids", "--env", "tiny", "--set", "spark.mode=submit"]


def test_submit_mode_without_delta_names_the_missing_confs():
    class Conf:
        def get(self, key, default=None):
            return {"spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension"}.get(key, default)

    class Session:
        conf = Conf()

    from tests.helpers import config_in

    with pytest.raises(RuntimeError, match="--conf spark.sql.catalog.spark_catalog=org.apache.spark.sql.delta"):
        _adopt_submitted_session(Session(), config_in(Path("/nonexistent"), "spark.mode=submit"))


def test_airflow_dag_and_cron_run_r2led_commands_through_submit_sh():
    dag = ast.parse((REPO / "deploy" / "airflow" / "r2led_nightly_dag.py").read_text(encoding="utf-8"))
    stages = next(ast.literal_eval(node.value) for node in dag.body
                  if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "STAGES")
    assert stages and set(stages) <= set(COMMANDS), set(stages) - set(COMMANDS)
    assert stages[0] == "ingest" and stages[-1] == "score"
    cron = (REPO / "deploy" / "cron" / "r2led-nightly.cron").read_text(encoding="utf-8")
    entries = [line for line in cron.splitlines() if re.match(r"^[\d*/,-]+\s+[\d*/,-]+\s", line)]
    assert len(entries) == 1
    for entry in entries:
        command = re.search(r"deploy/submit\.sh (\S+) --date \"\$D\"", entry)
        assert command and command.group(1) == "pipeline"
        assert "%" not in entry.replace("\\%", "")  # cron reads a bare % as a newline
