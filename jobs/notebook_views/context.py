"""What every notebook in `notebooks/` starts with: widgets → config → session.

Notebooks define no logic (design.md §2) and run no DataFrame operation of their own: what they display
comes from a function of this package (`sequences`, `sids`, `retrieval`, `refinement`, `promotion`: one
module per notebook's subject), typed and tested. `LocalWidgets` / `LocalDbutils` stand in for Databricks' `dbutils.widgets` so that the same
notebook runs on a laptop and in the tests:

    from jobs.notebook_views.context import LocalDbutils
    namespace = {"dbutils": LocalDbutils({"env": "tiny"}), "display": print}
    exec(compile(open("notebooks/01_explore_sequences.py").read(), "01", "exec"), namespace)
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from pyspark.sql import SparkSession

from jobs.runtime.dates import YESTERDAY, parse_day, resolve_run_date
from r2led_model.config import Config, ConfigError, load_config


# The widgets every notebook starts with; `env` defaults to the Databricks config, `config` is the
# path of one's own YAML (e.g. on a Volume) layered over it, as `--config` is.
STANDARD_WIDGETS: dict[str, str] = {"env": "databricks", "config": "", "date": "", "overrides": ""}


# ---- widgets --------------------------------------------------------------------------


class LocalWidgets:
    """`dbutils.widgets` off Databricks: preset `values` win over a widget's default, as job
    parameters (`base_parameters`) do on Databricks."""

    def __init__(self, values: Mapping[str, str] | None = None):
        self._preset = {k: str(v) for k, v in (values or {}).items()}
        self._values: dict[str, str] = {}

    def text(self, name: str, defaultValue: str, label: str | None = None) -> None:
        self._values[name] = self._preset.get(name, defaultValue)

    def dropdown(self, name: str, defaultValue: str, choices: Sequence[str], label: str | None = None) -> None:
        if defaultValue not in choices:
            raise ValueError(f"widget {name!r}: default {defaultValue!r} is not one of {list(choices)}")
        value = self._preset.get(name, defaultValue)
        if value not in choices:
            raise ValueError(f"widget {name!r}: value {value!r} is not one of {list(choices)}")
        self._values[name] = value

    def get(self, name: str) -> str:
        if name not in self._values:
            raise KeyError(f"no widget named {name!r}; defined: {sorted(self._values)}")
        return self._values[name]

    def getAll(self) -> dict[str, str]:  # noqa: N802 (Databricks' spelling)
        return dict(self._values)

    def removeAll(self) -> None:  # noqa: N802
        self._values.clear()


class LocalDbutils:
    """The `dbutils` a notebook sees off Databricks: only `.widgets`."""

    def __init__(self, values: Mapping[str, str] | None = None):
        self.widgets = LocalWidgets(values)


def widget_values(dbutils: Any, defaults: Mapping[str, str]) -> dict[str, str]:
    """Declare one text widget per `defaults` entry and return every widget's current value."""
    for name, default in defaults.items():
        dbutils.widgets.text(name, default, name)
    return {name: dbutils.widgets.get(name) for name in defaults}


# ---- config and session -----------------------------------------------------------------


def parse_overrides(text: str) -> list[str]:
    """`key=value` items separated by commas or newlines → the `--set` list.

    Commas inside brackets or quotes belong to the value (`model.mlp_dims=[32, 16]`); blank items
    and lines starting with `#` are skipped.
    """
    items: list[str] = []
    current: list[str] = []
    depth, quote = 0, ""
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char in "[{(":
            depth += 1
        elif char in "]})":
            depth = max(depth - 1, 0)
        elif char == "\n" or (char == "," and depth == 0):
            items.append("".join(current))
            current = []
            continue
        current.append(char)
    items.append("".join(current))
    overrides = [item.strip() for item in items if item.strip() and not item.strip().startswith("#")]
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"overrides widget: {item!r} is not key.path=value")
    return overrides


def run_date(text: str | None) -> str | None:
    """The `date` widget: empty → None (each job's default, e.g. the latest day), else YYYY-MM-DD or
    `yesterday` (as for `pipeline --date`, counted back from today in UTC: a notebook has no trigger date)."""
    if text is None or not text.strip():
        return None
    try:
        text = text.strip()
        return resolve_run_date(text) if text == YESTERDAY else parse_day(text, "date widget")
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def notebook_config(env: str, overrides_text: str = "", date: str | None = None, config_file: str = "") -> Config:
    """The widgets' config: conf/<env>.yaml ← the `config` widget's file ← overrides, printed resolved
    as every job prints it. An empty `env` is the command line's default (`local`, or `base` with a file).

    `date` is validated here (a bad one fails before any work); jobs that take a date get it from
    `run_date`.
    """
    day = run_date(date)
    config_file = config_file.strip()
    config = load_config(env.strip() or None, parse_overrides(overrides_text), config_file=config_file or None)
    tables = (f"{config.tables.catalog}.{config.tables.schema}" if config.tables.backend == "catalog"
              else config.tables.root)
    own = f", config={config_file}" if config_file else ""
    print(f"# r2led notebook: env={config.env}{own}, date={day or 'latest'}, tables at {tables}", flush=True)
    return config


def notebook_spark(config: Config) -> SparkSession:
    """The cluster's session on Databricks; a local Delta-enabled one elsewhere."""
    from jobs.runtime.spark_runtime import get_spark

    return get_spark(config)


def optional_id(text: str | None, widget: str) -> int | None:
    """An id widget: empty → None, else an integer."""
    if text is None or not text.strip():
        return None
    try:
        return int(text.strip())
    except ValueError:
        raise ConfigError(f"{widget} widget: {text!r} is not an integer id") from None
