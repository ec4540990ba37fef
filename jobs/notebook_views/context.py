"""What a notebook in `notebooks/` calls: widgets → config → session, plus the few read-only
views the notebooks display that are not a job of their own.

Notebooks define no logic (design.md §2); anything beyond a display query lives here, typed and
tested. `LocalWidgets` / `LocalDbutils` stand in for Databricks' `dbutils.widgets` so that the same
notebook runs on a laptop and in the tests:

    from jobs.notebook_views.context import LocalDbutils
    namespace = {"dbutils": LocalDbutils({"env": "tiny"}), "display": print}
    exec(compile(open("notebooks/01_explore_sequences.py").read(), "01", "exec"), namespace)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import pandas as pd
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.registry.promote import CHALLENGER, CHAMPION, PREVIOUS_CHAMPION, PromotionDecision
from jobs.retrieval.table_shapes import candidate_column, candidate_routes
from jobs.runtime.dates import YESTERDAY, parse_day, resolve_run_date
from jobs.runtime.tables import TableStore
from r2led_model.config import Config, ConfigError, load_config
from r2led_model.sid_report import SidReport


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


# ---- views the notebooks display ----------------------------------------------------------


def hist_len_buckets(samples: DataFrame) -> DataFrame:
    """Samples per power-of-two `hist_len` bucket (0, 1, 2-3, 4-7, ...) and split."""
    bucket = F.when(F.col("hist_len") <= 0, F.lit(0)).otherwise(
        F.pow(F.lit(2), F.floor(F.log2(F.col("hist_len")))).cast("long"))
    return (samples.withColumn("hist_len_from", bucket).groupBy("hist_len_from")
            .pivot("split", ["train", "valid", "test"]).count().na.fill(0).orderBy("hist_len_from"))


def sid_prefix_examples(report: SidReport) -> pd.DataFrame:
    """The report's biggest prefixes per level, one row each: level, prefix, items, example texts."""
    rows = [{"level": int(level), "prefix": str(entry["prefix"]), "items": entry["items"],
             "examples": " | ".join(entry["texts"])}
            for level, entries in report.to_dict()["examples"].items() for entry in entries]
    return pd.DataFrame(rows, columns=["level", "prefix", "items", "examples"])


def sid_metrics_frame(report: SidReport) -> pd.DataFrame:
    """The report's scalar metrics (usage, perplexity, collisions, NMI) as metric/value rows."""
    values = {**report.metrics, "collision_rate_after_dedup": report.collision_rate_after_dedup,
              **{f"nmi {name}": value for name, value in report.nmi.items()}}
    return pd.DataFrame({"metric": list(values), "value": [float(v) for v in values.values()]})


def optional_id(text: str | None, widget: str) -> int | None:
    """An id widget: empty → None, else an integer."""
    if text is None or not text.strip():
        return None
    try:
        return int(text.strip())
    except ValueError:
        raise ConfigError(f"{widget} widget: {text!r} is not an integer id") from None


def resolve_user_id(spark: SparkSession, config: Config, text: str | None) -> int:
    """The `user_id` widget: a user id, or empty → the smallest user id that has route candidates."""
    chosen = optional_id(text, "user_id")
    if chosen is not None:
        return chosen
    first = TableStore(spark, config.tables).read("route_candidates").agg(F.min("user_id")).first()[0]
    if first is None:
        raise LookupError("route_candidates is empty: run `r2led retrieve` first")
    return int(first)


def _shared_prefix(a: str, b: str) -> Column:
    """How many leading codes two equal-length code arrays share."""
    equal = F.zip_with(F.col(a), F.col(b), lambda x, y: x == y)
    first_diff = F.array_position(equal, False)
    return F.when(F.col(a).isNull() | F.col(b).isNull(), F.lit(None)).when(
        first_diff == 0, F.size(equal)).otherwise(first_diff - 1).cast("int")


def pick_sample(spark: SparkSession, config: Config, user_id: int) -> int:
    """The user's sample with the most retrieved candidates (ties: the newest, then the smallest id)."""
    candidates = TableStore(spark, config.tables).read("route_candidates").where(F.col("user_id") == user_id)
    pools = [F.coalesce(F.col(candidate_column(r, "pool")), F.lit(0)) for r in candidate_routes(candidates.columns)]
    total = pools[0]
    for pool in pools[1:]:
        total = total + pool
    row = candidates.withColumn("total_pool", total).orderBy(
        F.desc("total_pool"), F.desc("ts"), "sample_id").select("sample_id").first()
    if row is None:
        raise LookupError(f"user {user_id} has no samples in route_candidates")
    return int(row[0])


def user_retrieval(spark: SparkSession, config: Config, user_id: int, sample_id: int | None = None) -> DataFrame:
    """One sample's retrieved behaviours, one row per (route, rank).

    Columns: sample_id, user_id, split, route, rank (0 = best), position (into the user's stored
    sequence), item_id, codes (its SID), target_item_id, target_codes, shared_prefix (leading SID
    codes in common with the target), category_id, text. `sample_id` defaults to `pick_sample`.
    """
    store = TableStore(spark, config.tables)
    candidates = store.read("route_candidates")
    if sample_id is None:
        sample_id = pick_sample(spark, config, user_id)
    row = candidates.where((F.col("sample_id") == sample_id) & (F.col("user_id") == user_id))
    target = store.read("samples").where(F.col("sample_id") == sample_id).select(
        "sample_id", F.col("item_id").alias("target_item_id"), "label")
    per_route = [
        row.select("sample_id", "user_id", "split", F.lit(route).alias("route"),
                   F.posexplode(F.arrays_zip(F.col(candidate_column(route, "pos")).alias("position"),
                                             F.col(candidate_column(route, "item")).alias("item_id"),
                                             F.col(candidate_column(route, "mask")).alias("mask")))
                   .alias("rank", "slot"))
        for route in candidate_routes(candidates.columns)
    ]
    exploded = per_route[0]
    for frame in per_route[1:]:
        exploded = exploded.unionByName(frame)
    sids = store.read("item_sids").select("item_id", "codes", "semantic_codes")
    items = store.read("items").select("item_id", "category_id", "text")
    found = (exploded.where(F.col("slot.mask"))
             .select("sample_id", "user_id", "split", "route", "rank", F.col("slot.position").alias("position"),
                     F.col("slot.item_id").alias("item_id"))
             .join(target, "sample_id")
             .join(sids, "item_id", "left")
             .join(sids.select(F.col("item_id").alias("target_item_id"), F.col("codes").alias("target_codes"),
                               F.col("semantic_codes").alias("target_semantic")), "target_item_id", "left")
             .join(items, "item_id", "left")
             .withColumn("shared_prefix", _shared_prefix("semantic_codes", "target_semantic")))
    return found.select("sample_id", "user_id", "split", "label", "route", "rank", "position", "item_id", "codes",
                        "target_item_id", "target_codes", "shared_prefix", "category_id", "text"
                        ).orderBy("route", "rank")


@dataclass(frozen=True)
class RegistryState:
    """Who holds the registry aliases now, with each version's tags."""

    model_name: str
    champion: str | None
    challenger: str | None
    previous_champion: str | None
    tags: dict[str, dict[str, str]]


def registry_state(config: Config) -> RegistryState:
    from r2led_model.mlflow_model import model_version

    name = config.registry.model_name
    held = {alias: model_version(config.mlflow, name, alias=alias)
            for alias in (CHAMPION, CHALLENGER, PREVIOUS_CHAMPION)}
    version = {alias: found.version if found else None for alias, found in held.items()}
    return RegistryState(name, version[CHAMPION], version[CHALLENGER], version[PREVIOUS_CHAMPION],
                         {v.version: v.tags for v in held.values() if v is not None})


def last_promotion(config: Config) -> PromotionDecision:
    """The decision `r2led promote` last recorded on the challenger's tags (no re-scoring).

    Metrics are the test numbers each version was registered with (`test_*` tags), which are not
    the same-rows comparison promote ran; run the notebook with action=promote for that.
    """
    state = registry_state(config)
    if state.challenger is None:
        raise LookupError(f"{state.model_name!r} has no challenger: run `r2led promote` first")
    tags = state.tags[state.challenger]
    if "promotion" not in tags:
        raise LookupError(f"{state.model_name} version {state.challenger} carries no promotion decision")
    promoted = tags["promotion"] == "promoted"
    # PromotionDecision.champion_version is the champion *before* the decision.
    before = state.previous_champion if promoted else state.champion
    metrics = {f"challenger_{k}": float(v) for k, v in tags.items() if k.startswith("test_")}
    if before is not None and before != state.challenger:
        metrics.update({f"champion_{k}": float(v) for k, v in state.tags[before].items() if k.startswith("test_")})
    return PromotionDecision(promoted=promoted, reason=tags.get("promotion_reason", ""),
                             challenger_version=state.challenger, champion_version=before, metrics=metrics)


def promotion_decision(spark: SparkSession, config: Config, action: str) -> PromotionDecision:
    """`review`: the recorded decision (`last_promotion`); `promote`: run `jobs.registry.promote.promote` now."""
    from jobs.registry.promote import promote

    if action == "promote":
        return promote(spark, config)
    if action == "review":
        return last_promotion(config)
    raise ConfigError(f"action widget: {action!r} is not 'review' or 'promote'")


# ---- R2LED's refinement --------------------------------------------------------------


def refinement_view(diagnostics: Mapping[str, Any] | None, family: str = "warmth") -> pd.DataFrame:
    """One row per value of a segment family of R2LED's diagnostics (`TrainResult.diagnostics`): test rows,
    the gate's mean ID weight, each route's fusion weight and the weights' entropy. Empty for other models."""
    values = (diagnostics or {}).get("by_segment", {}).get(family, {})
    return pd.DataFrame([{family: value, "rows": d["rows"],
                          "gate_id_weight": d.get("gate_id_weight", {}).get("mean"),
                          **{f"weight_{route}": w for route, w in d["route_weight"].items()},
                          "route_entropy": d["route_entropy"]} for value, d in values.items()])
