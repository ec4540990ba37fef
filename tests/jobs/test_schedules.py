"""One date semantics for every scheduler: cron, the Airflow DAG and the Databricks job each run
`r2led pipeline` for the UTC day before their trigger. Each is resolved the way it runs: the cron
line's own shell command, the DAG's task commands rendered by Jinja as Airflow renders them, the
bundle's task parameters with Databricks' references filled in, and then `r2led pipeline`'s own
argument parser and date resolution."""

from __future__ import annotations

import datetime as dt
import re
import shlex
import subprocess
import sys
import types

import jinja2
import pytest
import yaml

from jobs.orchestration import pipeline
from jobs.orchestration.stages import STAGE_NAMES
from jobs.runtime.dates import resolve_run_date
from jobs.runtime.entrypoint import job_parser
from tests.helpers import REPO

UTC = dt.timezone.utc
TRIGGER = dt.datetime(2024, 3, 1, 2, 30, tzinfo=UTC)  # the day after a leap day
PREVIOUS_DAY = "2024-02-29"


def pipeline_day(argv: list[str], today=lambda: TRIGGER.date()) -> str:
    """The day `r2led pipeline <argv>` runs, through its real parser and resolution."""
    parser = job_parser("r2led pipeline", "")
    pipeline.add_arguments(parser)
    args = parser.parse_args(argv)
    return resolve_run_date(args.date, as_of=args.as_of, today=today)


def test_yesterday_counts_back_from_as_of_and_an_explicit_date_wins():
    assert pipeline_day(["--date", "yesterday", "--as-of", "2024-03-01"]) == "2024-02-29"
    assert pipeline_day(["--date", "yesterday", "--as-of", "2025-01-01"]) == "2024-12-31"
    assert pipeline_day(["--date", "yesterday"], today=lambda: dt.date(2024, 1, 1)) == "2023-12-31"
    assert pipeline_day(["--date", "2024-01-16", "--as-of", "2025-06-01"]) == "2024-01-16"  # a backfill


@pytest.mark.parametrize("argv", [["--date", "tomorrow"], ["--date", "Yesterday"],
                                  ["--date", "yesterday", "--as-of", "{{job.trigger.time.iso_date}}"],
                                  ["--date", "yesterday", "--as-of", "None"]])
def test_pipeline_refuses_other_keywords_and_an_unrendered_as_of(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        pipeline_day(argv)
    assert exit_.value.code == 2 and "is not a YYYY-MM-DD date" in capsys.readouterr().err


def test_cron_runs_the_previous_utc_day():
    cron = (REPO / "deploy" / "cron" / "r2led-nightly.cron").read_text(encoding="utf-8")
    (entry,) = [line for line in cron.splitlines() if re.match(r"^[\d*/,-]+\s+[\d*/,-]+\s", line)]
    assert entry.split()[:5] == ["15", "2", "*", "*", "*"]
    # The line's own command substitution for D, as cron hands it to bash (`\%` is a literal %).
    computed = re.search(r"D=\$\((date [^)]*)\)", entry).group(1).replace("\\%", "%")
    before = (dt.datetime.now(UTC).date() - dt.timedelta(days=1)).isoformat()
    day = subprocess.run(["bash", "-c", computed], capture_output=True, text=True, check=True).stdout.strip()
    after = (dt.datetime.now(UTC).date() - dt.timedelta(days=1)).isoformat()
    assert day in (before, after)
    argv = shlex.split(re.search(r"deploy/submit\.sh pipeline (.*?) >>", entry).group(1).replace("$D", day))
    assert pipeline_day(argv) == day


def _dag_tasks(monkeypatch) -> tuple[dict, list[dict]]:
    """Execute the DAG file with a stand-in `airflow` package that records the DAG and its tasks."""
    recorded: dict = {"tasks": []}

    class DAG:
        def __init__(self, **kwargs):
            recorded["dag"] = kwargs

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    class BashOperator:
        def __init__(self, **kwargs):
            recorded["tasks"].append(kwargs)

        def __rshift__(self, other):
            return other

    airflow = types.ModuleType("airflow")
    airflow.DAG = DAG
    operators = types.ModuleType("airflow.operators.bash")
    operators.BashOperator = BashOperator
    for name, module in {"airflow": airflow, "airflow.operators": types.ModuleType("airflow.operators"),
                         "airflow.operators.bash": operators}.items():
        monkeypatch.setitem(sys.modules, name, module)
    path = REPO / "deploy" / "airflow" / "r2led_nightly_dag.py"
    exec(compile(path.read_text(encoding="utf-8"), str(path), "exec"), {"__name__": "r2led_nightly_dag"})
    return recorded["dag"], recorded["tasks"]


def test_the_airflow_dag_runs_the_day_before_its_trigger(monkeypatch):
    dag, tasks = _dag_tasks(monkeypatch)
    minute, hour = (int(x) for x in dag["schedule"].split()[:2])
    trigger = TRIGGER.replace(hour=hour, minute=minute)
    # Airflow renders bash_command with Jinja; its `ds` filter formats a datetime as YYYY-MM-DD. On
    # the cron timetables of Airflow 2 (interval) and 3 (trigger), data_interval_end is the trigger time.
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    env.filters["ds"] = lambda value: value.strftime("%Y-%m-%d")
    assert [t["task_id"] for t in tasks] == [name.replace("-", "_") for name in STAGE_NAMES]
    for task in tasks:
        rendered = env.from_string(task["bash_command"]).render(data_interval_end=trigger)
        argv = shlex.split(rendered)
        assert argv[1] == "pipeline"
        assert pipeline_day(argv[2:], today=lambda: dt.date(1999, 1, 1)) == PREVIOUS_DAY, rendered


def test_the_databricks_job_runs_the_day_before_its_trigger():
    root = yaml.safe_load((REPO / "databricks.yml").read_text())
    defaults = {name: str(v.get("default", "x")) for name, v in root["variables"].items()}
    job = yaml.safe_load((REPO / "resources" / "nightly.yml").read_text())["resources"]["jobs"]["r2led_nightly"]
    assert job["schedule"]["timezone_id"] == "UTC"
    parameters = {p["name"]: p["default"] for p in job["parameters"]}
    # What Databricks substitutes at run time: job parameters and the trigger's time (no arithmetic).
    references = {"job.parameters.run_date": parameters["run_date"], "job.trigger.time.iso_date": TRIGGER.date().isoformat()}

    def fill(text: str) -> str:
        text = re.sub(r"\$\{var\.(\w+)\}", lambda m: defaults[m.group(1)], text)
        return re.sub(r"\{\{\s*([\w.]+)\s*\}\}", lambda m: references[m.group(1)], text)

    wheel = [t for t in job["tasks"] if "python_wheel_task" in t]
    assert len(wheel) == len(STAGE_NAMES)
    for task in wheel:
        argv = [fill(p) for p in task["python_wheel_task"]["parameters"]]
        assert argv[0] == "pipeline"
        assert pipeline_day(argv[1:], today=lambda: dt.date(1999, 1, 1)) == PREVIOUS_DAY, argv
    # A backfill sets run_date by hand: that day, whatever the trigger.
    references["job.parameters.run_date"] = "2024-01-16"
    assert pipeline_day([fill(p) for p in wheel[0]["python_wheel_task"]["parameters"]][1:]) == "2024-01-16"
    # The review notebook's date widget takes the same value (resolved by the notebook context).
    from jobs.notebook_views.context import run_date

    (review,) = [t for t in job["tasks"] if "notebook_task" in t]
    references["job.parameters.run_date"] = parameters["run_date"]
    widget = fill(review["notebook_task"]["base_parameters"]["date"])
    assert run_date(widget) == (dt.datetime.now(UTC).date() - dt.timedelta(days=1)).isoformat()
