"""`r2led score --date YYYY-MM-DD`: the registered model under `registry.score_alias` (champion by
default) scores that day's samples from `training_examples` into `predictions`.

The alias is resolved once, to a version number N, and the model is loaded from `models:/NAME/N`:
every prediction row names the version that computed it, even if promote moves the alias while
this job runs. The weights travel to the executors as a broadcast bundle, so each Python worker
rebuilds the model once, holding today's item lookups (`item_index`: the rows it was trained with and
those of items indexed since). Scoring refuses examples built with another codebook or
collaborative-vector version than the model's, a different feature spec, or item lookups that differ
from the model's on the items it knows. A re-run replaces that date's partition.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from dataclasses import dataclass
from typing import Iterator, Sequence

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.runtime.dates import date_argument, parse_day
from jobs.runtime.entrypoint import spark_job_main
from jobs.runtime.spark_progress import stage_progress
from jobs.runtime.tables import TableStore
from jobs.training.training_data import data_versions, feature_spec, item_lookup_arrays
from r2led_model.bundle import ModelBundle, frame_arrays, predict_arrays
from r2led_model.config import Config

log = logging.getLogger(__name__)

_WORKER_MODELS: dict[str, object] = {}  # one rebuilt model per Python worker and model version


class ScoreVersionError(RuntimeError):
    """The model was trained on other feature versions than the examples to score."""


@dataclass
class ScoreResult:
    score_date: str
    model_name: str
    model_version: str
    rows: int
    mean_score: float


def score_frame(spark: SparkSession, rows: DataFrame, bundle: ModelBundle, model_name: str,
                model_version: str, score_date: str) -> DataFrame:
    """(sample_id, user_id, item_id, ts, features…) → predictions rows."""

    payload = spark.sparkContext.broadcast(bundle.to_bytes())
    columns = bundle.narrow_columns
    key = f"{model_name}/{model_version}"

    def score_batches(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        import numpy as np

        if key not in _WORKER_MODELS:
            _WORKER_MODELS[key] = ModelBundle.from_bytes(payload.value).build()
        task = _WORKER_MODELS[key]
        for frame in batches:
            inputs = frame_arrays(frame, columns)
            yield pd.DataFrame({
                "sample_id": frame["sample_id"], "user_id": frame["user_id"], "item_id": frame["item_id"],
                "ts": frame["ts"], "score": predict_arrays(task, inputs) if len(frame) else np.empty(0),
                "model_name": model_name, "model_version": model_version, "score_date": score_date})

    schema = ("sample_id BIGINT, user_id BIGINT, item_id BIGINT, ts BIGINT, score DOUBLE, model_name STRING, "
              "model_version STRING, score_date STRING")
    return rows.select("sample_id", "user_id", "item_id", "ts", *columns).mapInPandas(score_batches, schema)


def latest_date(examples: DataFrame) -> str:
    found = examples.agg(F.max(F.to_date(F.from_unixtime("ts")))).first()[0]
    if found is None:
        raise LookupError("training_examples is empty: nothing to score")
    return found.isoformat()


def resolve_model(config: Config, model_uri: str | None = None) -> tuple[str, str]:
    """(registered name, version number) to score with: `registry.score_alias` of `registry.model_name`
    by default, or a `models:/NAME/N` / `models:/NAME@ALIAS` URI. An alias is read exactly once."""
    from r2led_model.mlflow_model import model_version

    if model_uri is None:
        name, alias, version = config.registry.model_name, config.registry.score_alias, None
    else:
        match = _MODEL_URI.fullmatch(model_uri.rstrip("/"))
        if match is None:
            raise ValueError(f"--model-uri {model_uri!r}: expected models:/NAME/VERSION or models:/NAME@ALIAS")
        name, version, alias = match["name"], match["version"], match["alias"]
    if version is not None:
        return name, version
    registered = model_version(config.mlflow, name, alias=alias)
    if registered is None:
        raise LookupError(f"{name!r} has no version with alias {alias!r}; run `r2led promote` first")
    return name, registered.version


_MODEL_URI = re.compile(r"models:/(?P<name>[^/@]+)(?:/(?P<version>\d+)|@(?P<alias>[\w-]+))")


def score(spark: SparkSession, config: Config, date: str | None = None, model_uri: str | None = None) -> ScoreResult:
    """Score the samples of `date` (validated YYYY-MM-DD; default: the latest day) into `predictions`."""
    from r2led_model.mlflow_model import load_bundle

    # The day ends up in the replaceWhere predicate: only a parsed date (or the table's own latest) may.
    date = parse_day(date) if date is not None else None
    store = TableStore(spark, config.tables)
    name, version = resolve_model(config, model_uri)
    model_uri = f"models:/{name}/{version}"
    bundle = load_bundle(config.mlflow, model_uri)
    category, sid = item_lookup_arrays(store)
    problems = bundle.incompatibilities(feature_spec(store, config), data_versions(store), (category, sid))
    if problems:
        raise ScoreVersionError(f"refusing to score with {model_uri}: " + "; ".join(problems))
    # The model reads today's lookups: those it was trained with, and the rows of items indexed since.
    bundle = bundle.with_item_lookup(category, sid)
    examples = store.read("training_examples")
    day = date or latest_date(examples)
    rows = (examples.where(F.to_date(F.from_unixtime("ts")) == F.lit(day).cast("date"))
            .join(store.read("samples").select("sample_id", "item_id"), "sample_id"))
    with stage_progress(spark, "score"):
        store.overwrite_partitions("predictions", score_frame(spark, rows, bundle, name, version, day),
                                   where=f"score_date = '{day}'")
    written = store.read("predictions").where(F.col("score_date") == day)
    stats = written.agg(F.count("*").alias("rows"), F.avg("score").alias("mean")).first()
    result = ScoreResult(day, name, version, int(stats["rows"]), float(stats["mean"] or 0.0))
    log.info("predictions for %s: %d rows from %s version %s (mean score %.4f)", day, result.rows, name, version,
             result.mean_score)
    return result


def run(spark: SparkSession, config: Config, *, date: str | None = None, model_uri: str | None = None) -> ScoreResult:
    result = score(spark, config, date=date, model_uri=model_uri)
    print(f"scored {result.rows:,} samples of {result.score_date} with {result.model_name} version "
          f"{result.model_version}: mean score {result.mean_score:.4f}", flush=True)
    return result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--date", type=date_argument, default=None,
                        help="the day whose samples to score, YYYY-MM-DD (default: latest)")
    parser.add_argument("--model-uri", default=None,
                        help="a models:/NAME/VERSION URI instead of the registry.score_alias version")


def main(argv: Sequence[str] | None = None) -> int:
    return spark_job_main(argv, "score", "Score a day's samples with the champion into predictions.", run,
                          add_arguments)


if __name__ == "__main__":
    sys.exit(main())
