"""The Databricks surface: notebooks are source-format, logic-free and run top to bottom on a tiny
world; the bundle's job is a valid DAG of real `r2led` commands and existing notebooks."""

from __future__ import annotations

import ast
import importlib.metadata
import re
from pathlib import Path

import pytest
import yaml
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.cli import COMMANDS
from jobs.notebook_views.context import (STANDARD_WIDGETS, LocalDbutils, LocalWidgets, notebook_config, parse_overrides,
                                         run_date, widget_values)
from jobs.notebook_views.promotion import last_promotion
from jobs.notebook_views.refinement import refinement_view
from jobs.orchestration.stages import STAGE_NAMES
from jobs.runtime.tables import TableStore
from r2led_model.config import ConfigError, R2LEDConfig, load_config
from tests.helpers import IVY_DIR, REPO, config_in, trained_world

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.py"))
EXPECTED_NOTEBOOKS = ["01_explore_sequences.py", "02_inspect_sids.py", "03_user_retrieval.py",
                      "04_train_with_mlflow.py", "05_review_promotion.py"]
# What a DataFrame query is made of: a notebook calls a function that does it (jobs/notebook_views), so the
# tests of that function see it.
DATAFRAME_OPERATIONS = {"agg", "alias", "count", "createDataFrame", "crossJoin", "distinct", "dropDuplicates", "filter",
                        "groupBy", "join", "limit", "orderBy", "pivot", "select", "selectExpr", "sort", "union",
                        "unionByName", "where", "withColumn", "withColumnRenamed"}
HEADER = "# Databricks notebook source"
SEPARATOR = "# COMMAND ----------"
# Small and fast: the same settings for the world's pipeline and for the notebooks that train.
FAST = ("training.epochs=1", "training.batch_size=128", "training.reader_workers=1", "model.embedding_dim=8",
        "model.mlp_dims=[16]")


# ---- reading notebooks -------------------------------------------------------------------


def code_cells(path: Path) -> list[str]:
    """The notebook's Python cells, magic (`# MAGIC`) lines removed; markdown-only cells dropped."""
    text = path.read_text(encoding="utf-8")
    cells = []
    for cell in text.split(SEPARATOR):
        code = "\n".join(line for line in cell.splitlines() if not line.startswith("# MAGIC"))
        if code.replace(HEADER, "").strip():
            cells.append(code)
    return cells


def test_the_notebooks_are_the_five_expected_ones():
    assert [p.name for p in NOTEBOOKS] == EXPECTED_NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_databricks_source_with_no_logic_of_its_own(path):
    text = path.read_text(encoding="utf-8")
    assert text.splitlines()[0] == HEADER
    assert text.count(SEPARATOR) >= 3
    assert "# MAGIC %md" in text
    cells = code_cells(path)
    tree = ast.parse("\n".join(cells))
    defined = [type(node).__name__ for node in ast.walk(tree)
               if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda))]
    assert defined == [], f"{path.name} defines {defined}; put logic in jobs/ or r2led_model/"
    imported = {(node.module or "").split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {a.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
    assert imported <= {"jobs", "r2led_model", "pandas"}, imported  # no pyspark: no DataFrame logic either
    operations = sorted({node.func.attr for node in ast.walk(tree) if isinstance(node, ast.Call)
                         and isinstance(node.func, ast.Attribute) and node.func.attr in DATAFRAME_OPERATIONS})
    assert operations == [], f"{path.name} calls {operations}; put them in a jobs/notebook_views function"
    # The first code cell declares the widgets, through the shared helper.
    first = ast.parse(cells[0])
    calls = [n for n in ast.walk(first) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "widget_values"]
    assert calls and isinstance(calls[0].args[0], ast.Name) and calls[0].args[0].id == "dbutils"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_first_cell_declares_env_date_and_overrides_widgets(path):
    dbutils = LocalDbutils({"env": "tiny"})
    exec(compile(code_cells(path)[0], f"{path.name}[0]", "exec"), {"dbutils": dbutils})
    declared = dbutils.widgets.getAll()
    assert {"env", "date", "overrides"} <= set(declared)
    assert declared["env"] == "tiny" and declared["date"] == "" and declared["overrides"] == ""


# ---- the helper ------------------------------------------------------------------------


def test_overrides_text_splits_on_commas_and_newlines_but_not_inside_values():
    text = 'training.epochs=2, model.mlp_dims=[32, 16]\n# a comment\nmodel.name="din"\n\n  tables.schema=x  '
    assert parse_overrides(text) == ["training.epochs=2", "model.mlp_dims=[32, 16]", 'model.name="din"',
                                     "tables.schema=x"]
    assert parse_overrides("") == []
    with pytest.raises(ConfigError, match="not key.path=value"):
        parse_overrides("training.epochs")


def test_date_widget_is_empty_or_an_iso_day():
    assert run_date("") is None and run_date("  ") is None
    assert run_date(" 2024-01-18 ") == "2024-01-18"
    with pytest.raises(ConfigError, match="YYYY-MM-DD"):
        run_date("18/01/2024")


def test_local_widgets_behave_like_dbutils_widgets():
    widgets = LocalWidgets({"env": "tiny", "action": "promote"})
    widgets.text("env", "databricks", "env")
    widgets.text("date", "", "date")
    widgets.dropdown("action", "review", ["review", "promote"], "action")
    assert (widgets.get("env"), widgets.get("date"), widgets.get("action")) == ("tiny", "", "promote")
    with pytest.raises(KeyError, match="no widget named 'user_id'"):
        widgets.get("user_id")
    with pytest.raises(ValueError, match="not one of"):
        LocalWidgets({"action": "delete"}).dropdown("action", "review", ["review", "promote"])
    assert widget_values(LocalDbutils({"overrides": "a=1"}), STANDARD_WIDGETS) == {
        "env": "databricks", "config": "", "date": "", "overrides": "a=1"}


def test_config_widget_layers_a_file_over_the_env_widget(tmp_path, capsys):
    own = tmp_path / "my.yaml"
    own.write_text("training:\n  epochs: 1\n", encoding="utf-8")
    config = notebook_config("tiny", "training.batch_size=8", "", config_file=f" {own} ")
    assert (config.env, config.spark.master, config.training.epochs, config.training.batch_size) == (
        "tiny", "local[2]", 1, 8)
    assert f"env=tiny, config={own}," in capsys.readouterr().out
    assert notebook_config("", config_file=str(own)).env == "base"  # an empty env widget: as --env unset
    own.write_text("training:\n  epochz: 1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"my\.yaml: training\.epochz: unknown config key"):
        notebook_config("tiny", config_file=str(own))


# ---- the bundle --------------------------------------------------------------------------


def load_bundle() -> tuple[dict, dict[Path, dict]]:
    root = yaml.safe_load((REPO / "databricks.yml").read_text())
    included = sorted(p for pattern in root["include"] for p in REPO.glob(pattern))
    return root, {p: yaml.safe_load(p.read_text()) for p in included}


def target_variables(target: str, given: dict[str, str] | None = None) -> dict[str, object]:
    """The bundle's variables as `databricks bundle deploy -t <target> --var k=v` resolves them: `given`
    (`--var`) over the target's values over the defaults, `${var.x}` inside a value resolved; a variable
    left without a value is an error, as the CLI makes it."""
    root, _ = load_bundle()
    declared = root["variables"]
    overrides = root["targets"][target].get("variables", {})
    values = {name: v["default"] for name, v in declared.items() if "default" in v}
    values.update(overrides)
    values.update(given or {})
    missing = set(declared) - set(values)
    assert not missing, f"target {target}: no value assigned to required variable(s) {sorted(missing)}"
    assert set(overrides) <= set(declared), set(overrides) - set(declared)

    def resolve(value: object, seen: tuple[str, ...] = ()) -> object:
        if not isinstance(value, str):
            return value

        def one(m: re.Match) -> str:
            assert m.group(1) not in seen, f"variable cycle through {m.group(1)}"
            return str(resolve(values[m.group(1)], (*seen, m.group(1))))

        whole = re.fullmatch(r"\$\{var\.(\w+)\}", value)
        if whole and not isinstance(values[whole.group(1)], str):
            return values[whole.group(1)]  # a complex variable, referenced whole
        return re.sub(r"\$\{var\.(\w+)\}", one, value)

    return {name: resolve(value) for name, value in values.items()}


def resolved_job(target: str, given: dict[str, str] | None = None) -> dict:
    """The nightly job with the target's variables filled in (Databricks' own {{...}} references left as they are)."""
    variables = target_variables(target, given)
    _, resources = load_bundle()
    (job,) = [job for doc in resources.values() for key, job in doc["resources"]["jobs"].items()
              if key == "r2led_nightly"]

    def fill(node: object) -> object:
        if isinstance(node, dict):
            return {k: fill(v) for k, v in node.items()}
        if isinstance(node, list):
            return [fill(v) for v in node]
        if isinstance(node, str):
            whole = re.fullmatch(r"\$\{var\.(\w+)\}", node)
            if whole:
                return variables[whole.group(1)]
            return re.sub(r"\$\{var\.(\w+)\}", lambda m: str(variables[m.group(1)]), node)
        return node

    return fill(job)


# Prod has no default service principal: every prod command names one, as here.
PROD_VARS = {"service_principal": "00000000-0000-0000-0000-000000000000"}


def nightly_tasks() -> tuple[Path, list[dict]]:
    _, resources = load_bundle()
    found = [(path, job) for path, doc in resources.items() for key, job in doc["resources"]["jobs"].items()
             if key == "r2led_nightly"]
    assert len(found) == 1
    path, job = found[0]
    return path, job["tasks"]


def test_bundle_declares_targets_variables_and_the_wheel_artifact():
    root, resources = load_bundle()
    assert root["bundle"]["name"] == "r2led" and resources
    assert root["targets"]["dev"]["mode"] == "development" and root["targets"]["dev"]["default"] is True
    assert root["targets"]["prod"]["mode"] == "production"
    assert {"catalog", "schema", "env", "node_type_id"} <= set(root["variables"])
    (artifact,) = root["artifacts"].values()
    assert artifact["type"] == "whl" and "wheel" in artifact["build"]
    used = {m for doc in resources.values() for m in re.findall(r"\$\{var\.(\w+)\}", yaml.safe_dump(doc))}
    assert used <= set(root["variables"]), used - set(root["variables"])


def test_nightly_job_is_scheduled_on_a_spark4_cluster():
    _, resources = load_bundle()
    job = next(doc["resources"]["jobs"]["r2led_nightly"] for doc in resources.values())
    assert job["name"] == "r2led-nightly"
    assert job["schedule"]["timezone_id"] == "UTC"
    assert len(job["schedule"]["quartz_cron_expression"].split()) in (6, 7)
    clusters = {c["job_cluster_key"]: c["new_cluster"] for c in job["job_clusters"]}
    root, _ = load_bundle()
    # An ML runtime: the standard one has no torch, and the wheel leaves torch to the runtime.
    assert root["variables"]["spark_version"]["default"] == "17.3.x-cpu-ml-scala2.13"
    assert all(t["job_cluster_key"] in clusters for t in job["tasks"])


def test_nightly_tasks_form_a_dag_of_real_commands_in_pipeline_order():
    path, tasks = nightly_tasks()
    keys = [t["task_key"] for t in tasks]
    assert len(set(keys)) == len(keys)
    for task in tasks:
        for dep in task.get("depends_on", []):
            assert dep["task_key"] in keys, f"{task['task_key']} depends on unknown {dep['task_key']}"
    stage_order = list(STAGE_NAMES)
    wheel = {t["task_key"]: t for t in tasks if "python_wheel_task" in t}
    parameters = {key: t["python_wheel_task"]["parameters"] for key, t in wheel.items()}
    assert {p[0] for p in parameters.values()} == {"pipeline"}
    # Each task is one stage of the dated run: `pipeline --date <run_date> --until <stage>`.
    assert all(p[p.index("--date") + 1] == "{{job.parameters.run_date}}" for p in parameters.values())
    command_of = {key: p[p.index("--until") + 1] for key, p in parameters.items()}
    assert set(command_of.values()) <= set(COMMANDS)
    assert sorted(command_of.values()) == sorted(stage_order), "the bundle runs every pipeline stage once"
    # Every stage's prerequisites (earlier pipeline stages) are among its transitive dependencies.
    by_key = {t["task_key"]: t for t in tasks}

    def ancestors(key: str) -> set[str]:
        direct = {d["task_key"] for d in by_key[key].get("depends_on", [])}
        return direct.union(*(ancestors(d) for d in direct)) if direct else set()

    for key, command in command_of.items():
        before = {command_of[a] for a in ancestors(key) if a in command_of}
        assert before <= set(stage_order[:stage_order.index(command)]), (key, before)
    assert {command_of[a] for a in ancestors(next(k for k, c in command_of.items() if c == "promote"))} == set(
        stage_order[:stage_order.index("promote")])
    for task in wheel.values():
        assert task["python_wheel_task"]["package_name"] == "r2led"
        assert any(lib.get("whl", "").endswith("dist/*.whl") for lib in task["libraries"])


def task_configs(job: dict) -> dict[str, object]:
    """Each task's resolved Config: a wheel task's `--env`/`--set` parameters, a notebook task's
    `env`/`overrides` widgets, loaded as the job would load them."""
    configs = {}
    for task in job["tasks"]:
        if "python_wheel_task" in task:
            params = task["python_wheel_task"]["parameters"]
            env = params[params.index("--env") + 1]
            sets = [params[i + 1] for i, p in enumerate(params) if p == "--set"]
        else:
            widgets = task["notebook_task"]["base_parameters"]
            env, sets = widgets["env"], parse_overrides(widgets["overrides"])
        configs[task["task_key"]] = load_config(env, sets)
    return configs


@pytest.mark.parametrize("target", ["dev", "prod"])
def test_wheel_entry_point_and_parameters_resolve_to_a_valid_config(target):
    (entry,) = importlib.metadata.entry_points(group="console_scripts", name="r2led")
    assert entry.value == "jobs.cli:main"
    job = resolved_job(target, PROD_VARS if target == "prod" else None)
    schema = {"dev": "r2led_dev", "prod": "r2led"}[target]
    assert all(t["python_wheel_task"]["entry_point"] == entry.name for t in job["tasks"] if "python_wheel_task" in t)
    for key, config in task_configs(job).items():
        assert (config.tables.backend, config.tables.catalog, config.tables.schema) == ("catalog", "main", schema), key


def test_dev_and_prod_write_to_disjoint_models_experiments_and_volumes():
    """A dev run can neither move prod's champion alias nor write prod's experiments, codebooks or checkpoints."""
    where = {}
    for target, given in {"dev": None, "prod": PROD_VARS}.items():
        configs = task_configs(resolved_job(target, given))
        places = {(c.tables.catalog, c.tables.schema, c.registry.model_name, c.mlflow.experiment_prefix,
                   c.codebook.store_dir, c.training.checkpoint_dir) for c in configs.values()}
        assert len(places) == 1, f"{target}: tasks disagree on where they write: {places}"  # incl. the notebook
        where[target] = places.pop()
    assert where["prod"] == ("main", "r2led", "main.r2led.r2led_ctr", "/Shared/r2led",
                             "/Volumes/main/r2led/artifacts/codebooks", "/Volumes/main/r2led/artifacts/checkpoints")
    assert where["dev"] == ("main", "r2led_dev", "main.r2led_dev.r2led_ctr", "/Shared/r2led_dev",
                            "/Volumes/main/r2led_dev/artifacts/codebooks",
                            "/Volumes/main/r2led_dev/artifacts/checkpoints")
    dev, prod = where["dev"], where["prod"]
    assert (dev[0], dev[1]) != (prod[0], prod[1])
    for d, p in zip(dev[2:], prod[2:]):
        assert d != p and not d.startswith(p + "/") and not p.startswith(d + "/"), (d, p)
    # Prod's paths are the ones conf/databricks.yaml names, so the switch to variables moved nothing.
    base = load_config("databricks", [])
    assert prod[2:] == (base.registry.model_name, base.mlflow.experiment_prefix, base.codebook.store_dir,
                        base.training.checkpoint_dir)


def test_a_schema_given_on_the_command_line_moves_every_write_with_it():
    config = task_configs(resolved_job("dev", {"schema": "r2led_alice"}))["train"]
    assert (config.registry.model_name, config.mlflow.experiment_prefix, config.codebook.store_dir) == (
        "main.r2led_alice.r2led_ctr", "/Shared/r2led_alice", "/Volumes/main/r2led_alice/artifacts/codebooks")


def test_dev_schedule_is_paused_and_prod_runs_as_a_service_principal_with_its_own_alerts():
    root, _ = load_bundle()
    dev, prod = resolved_job("dev"), resolved_job("prod", PROD_VARS)
    assert dev["schedule"]["pause_status"] == "PAUSED"
    assert prod["schedule"]["pause_status"] == "UNPAUSED"
    assert dev["schedule"]["quartz_cron_expression"] == prod["schedule"]["quartz_cron_expression"]
    # Failure emails are a list from a variable: empty unless the target (or --var) names addresses.
    assert dev["email_notifications"]["on_failure"] == []
    assert isinstance(prod["email_notifications"]["on_failure"], list)
    mailed = resolved_job("prod", {**PROD_VARS, "failure_emails": ["oncall@example.com"]})
    assert mailed["email_notifications"]["on_failure"] == ["oncall@example.com"]
    # Prod runs as the service principal, which has no default: a prod deploy without one fails.
    assert root["targets"]["prod"]["run_as"] == {"service_principal_name": "${var.service_principal}"}
    assert target_variables("prod", PROD_VARS)["service_principal"] == PROD_VARS["service_principal"]
    with pytest.raises(AssertionError, match="required variable.*service_principal"):
        target_variables("prod")
    assert "run_as" not in root["targets"]["dev"]


def test_every_task_retries_after_a_pause():
    """Retries are safe: each task is `pipeline --date D --until STAGE`, which skips the stages already done."""
    _, tasks = nightly_tasks()
    for task in tasks:
        assert task.get("max_retries", 0) >= 1, task["task_key"]
        assert task.get("min_retry_interval_millis", 0) >= 60_000, task["task_key"]
        if "python_wheel_task" in task:
            params = task["python_wheel_task"]["parameters"]
            assert params[0] == "pipeline" and "--until" in params and "--date" in params, task["task_key"]


def test_notebook_tasks_point_at_existing_notebooks_with_the_standard_widgets():
    path, tasks = nightly_tasks()
    notebook_tasks = [t for t in tasks if "notebook_task" in t]
    assert notebook_tasks
    for task in notebook_tasks:
        notebook = (path.parent / task["notebook_task"]["notebook_path"]).resolve()
        assert notebook.is_file() and notebook in NOTEBOOKS
        assert {"env", "date", "overrides"} <= set(task["notebook_task"]["base_parameters"])
    # A notebook task overrides the same keys, to the same values, as the wheel tasks.
    params = next(t["python_wheel_task"]["parameters"] for t in tasks if "python_wheel_task" in t)
    sets = [params[i + 1] for i, p in enumerate(params) if p == "--set"]
    for task in notebook_tasks:
        assert parse_overrides(task["notebook_task"]["base_parameters"]["overrides"]) == sets
    review = next(t for t in notebook_tasks if t["notebook_task"]["notebook_path"].endswith("05_review_promotion.py"))
    assert [d["task_key"] for d in review["depends_on"]] == ["promote"]


# ---- running the notebooks on a tiny world ----------------------------------------------------


@pytest.fixture(scope="module")
def world(spark, tiny_tables, tmp_path_factory) -> Path:
    return trained_world(spark, tiny_tables, tmp_path_factory.mktemp("notebooks") / "workspace", *FAST)


class Displayed(list):
    """`display` off Databricks: materialise what a notebook shows (as Databricks would) and keep it."""

    def __call__(self, value) -> None:
        import matplotlib.pyplot as plt

        if isinstance(value, DataFrame):
            value = value.limit(20).toPandas()
        elif hasattr(value, "savefig"):
            plt.close(value)
        self.append(value)


def run_notebook(name: str, spark, root: Path, **widgets: str) -> dict:
    """Execute every code cell of notebooks/<name> in one namespace, as Databricks would."""
    path = REPO / "notebooks" / name
    overrides = "\n".join([f"workspace.root={root}", f"spark.ivy_dir={IVY_DIR}", *FAST])
    namespace = {"dbutils": LocalDbutils({"env": "tiny", "overrides": overrides, **widgets}),
                 "display": Displayed(), "spark": spark}
    for index, cell in enumerate(code_cells(path)):
        exec(compile(cell, f"{name}[cell {index}]", "exec"), namespace)
    return namespace


def test_01_explore_sequences_counts_what_the_tables_hold(spark, world):
    ns = run_notebook("01_explore_sequences.py", spark, world, date="2024-01-18")
    store = TableStore(spark, config_in(world).tables)
    counts = ns["counts"].toPandas().set_index("table")["rows"].to_dict()
    assert counts == {t: store.read(t).count() for t in ("events", "samples", "user_sequences")}
    per_split = ns["splits"].toPandas().set_index("split")["samples"].to_dict()
    assert sum(per_split.values()) == counts["samples"] and set(per_split) == {"train", "valid", "test"}
    buckets = ns["hist_len"].toPandas()
    assert {s: int(buckets[s].sum()) for s in ("train", "valid", "test")} == per_split
    day = store.read("events").where(F.col("event_date") == "2024-01-18").count()
    assert int(ns["day_events"].toPandas()["count"].sum()) == day > 0  # the day's events, per behaviour
    assert len(ns["display"]) == 6


def test_02_inspect_sids_reports_the_current_codebook(spark, world):
    ns = run_notebook("02_inspect_sids.py", spark, world)
    report = ns["report"]
    assert report.codebook_version.startswith("cb-")
    assert report.metrics["num_items"] == TableStore(spark, config_in(world).tables).read("item_sids").count()
    assert not ns["prefixes"].empty and set(ns["prefixes"]["level"]) <= set(range(1, report.levels + 1))
    assert "collision_rate_after_dedup" in set(ns["metrics"]["metric"])
    assert any(hasattr(shown, "savefig") for shown in ns["display"])


def test_03_user_retrieval_shows_one_sample_of_one_user(spark, world):
    ns = run_notebook("03_user_retrieval.py", spark, world)
    store = TableStore(spark, config_in(world).tables)
    first_user = store.read("route_candidates").agg(F.min("user_id")).first()[0]
    candidates = ns["candidates"].toPandas()
    assert ns["user_id"] == first_user and not candidates.empty
    assert set(candidates["user_id"]) == {first_user} and candidates["sample_id"].nunique() == 1
    # Every candidate is the behaviour stored at its position in the user's sequence.
    stored = store.read("user_sequences").where(F.col("user_id") == first_user).first()["item_ids"]
    assert all(stored[p] == i for p, i in zip(candidates["position"], candidates["item_id"]))
    # Mixed retrieval: route sid<l> only keeps behaviours sharing the target's first l codes.
    semantic = candidates[candidates["route"].str.startswith("sid")]
    assert not semantic.empty
    assert (semantic["shared_prefix"] >= semantic["route"].str[3:].astype(int)).all()
    assert len(ns["display"][-1]) == 1  # the sample's training_examples row

    # A chosen user and sample are honoured.
    sample = store.read("route_candidates").orderBy(F.desc("user_id"), "sample_id").first()
    chosen = run_notebook("03_user_retrieval.py", spark, world, user_id=str(sample["user_id"]),
                          sample_id=str(sample["sample_id"]))["candidates"].toPandas()
    assert set(chosen["sample_id"]) <= {sample["sample_id"]} and set(chosen["user_id"]) <= {sample["user_id"]}


def test_04_train_registers_a_new_version_with_metrics(spark, world):
    ns = run_notebook("04_train_with_mlflow.py", spark, world)
    result = ns["result"]
    assert int(result.version) >= 2  # the world's pipeline registered version 1
    assert result.run_id and 0.0 <= result.test["auc"] <= 1.0
    assert list(ns["metrics"]["split"]) == ["valid", "test"]
    # R2LED's refinement by target warmth: the buckets in their order, every test row in one of them.
    view = refinement_view(result.diagnostics)
    assert set(view["warmth"]) <= {"0", "1-4", "5-19", "20+"} and view["rows"].sum() == result.test["n"]
    # The default SID-level fusion (`gate: sum`) is one mix for every item: there is no per-item weight to show.
    assert R2LEDConfig().gate == "sum" and view["gate_id_weight"].isna().all()


def test_05_review_shows_the_recorded_decision_and_promote_records_a_new_one(spark, world):
    reviewed = run_notebook("05_review_promotion.py", spark, world)["decision"]
    # The world's pipeline promoted its first version: there was no champion.
    assert reviewed.promoted is True and reviewed.challenger_version == "1"
    assert reviewed.champion_version is None and reviewed.reason.startswith("no champion yet; test auc")
    assert "min_first_metric" in reviewed.reason
    assert "challenger_test_auc" in reviewed.metrics

    ns = run_notebook("05_review_promotion.py", spark, world, action="promote")
    decided = ns["decision"]
    assert isinstance(decided.promoted, bool) and decided.reason
    assert decided.champion_version == "1"
    # Same seed, same data: a retrained model cannot beat the champion (or it is the champion).
    assert decided.promoted is False
    assert ns["registry"].champion == "1" and ns["registry"].challenger == decided.challenger_version
    again = last_promotion(config_in(world, *FAST))
    assert (again.promoted, again.reason, again.challenger_version) == (
        decided.promoted, decided.reason, decided.challenger_version)
