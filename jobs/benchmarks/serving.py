"""`r2led benchmark serving`: the raw-id served model over REST, and `score --candidates`, each beside the
single-process reference of the same work, measured in the same run.

The model: R2LED (`model.*` of the config) with freshly initialised weights, the tables' item lookups and
serving catalogue, registered in the benchmark's own registry (`<benchmark.output_dir>/serving/mlflow.db`,
never the user's). Timings do not depend on the weights; the tables are the env's (`user_sequences`,
`item_index`, SIDs, collaborative vectors, `training_examples` for the feature spec).

REST, per history length T (default 100, 1,000 and 10,000): `mlflow models serve` (one worker) on a
loopback port answers `requests` requests sent one after another, each one candidate whose history is T
catalogue items an hour apart (the registered catalogue keeps up to max(T) behaviours, so every T is read
whole): requests/s and p50/p99 latency. Reference: the same requests through the loaded pyfunc in this
process, one after another (the same work without HTTP and JSON).

Candidates: `pairs` (user, item) pairs drawn with a fixed seed (users with a stored sequence, items of
item_index) are written as Parquet and scored as of one time by `score_candidates` (Spark: read, retrieve,
assemble, score, write `candidate_scores`). Reference: the same pairs in one process: the pairs and the
stored sequences read with pyarrow, each distinct pair once (as score --candidates scores it), its history
its user's whole stored sequence, through the served model's code (`serving.scorer`), a chunk at a time.
Both must give the same scores (printed as the largest difference).

Prints one JSON line per measurement and a table; appends the lines to `<benchmark.output_dir>/serving.jsonl`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import shutil
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyspark.sql import SparkSession

from jobs.registry.serving_catalog import serving_catalog
from jobs.runtime.entrypoint import spark_job_main
from jobs.runtime.tables import TableStore
from jobs.training.training_data import data_versions, feature_spec, item_lookup_arrays
from r2led_model.config import Config
from r2led_model.models import build_model
from r2led_model.serving.requests import RawRequests
from r2led_model.sorted_lookup import locate
from r2led_model.tracking.bundle import ModelBundle

log = logging.getLogger(__name__)

LENGTHS = (100, 1000, 10_000)
REQUESTS = 200  # timed requests per history length
WARM_UP = 5  # untimed requests first (model load, first allocations)
PAIRS = 1_000_000
CHUNK = 20_000  # pairs per call of the single-process reference
MODEL_NAME = "r2led_serving_bench"
HOUR = 3600


def register_model(config: Config, store: TableStore, max_history: int) -> tuple[Config, str]:
    """(the config whose registry holds it, models:/ URI) of an untrained R2LED registered with the tables'
    lookups and a catalogue that keeps up to `max_history` behaviours."""
    from r2led_model.tracking.mlflow_model import log_ctr_model
    from r2led_model.tracking.runs import tracked_run

    folder = Path(config.benchmark.output_dir).resolve() / "serving"
    folder.mkdir(parents=True, exist_ok=True)
    config = dataclasses.replace(
        config, mlflow=dataclasses.replace(config.mlflow, tracking_uri=f"sqlite:///{folder}/mlflow.db",
                                           registry_uri=None, artifact_root=str(folder / "mlartifacts")),
        registry=dataclasses.replace(config.registry, model_name=MODEL_NAME))
    spec = feature_spec(store, config)
    model = build_model(config.model.name, spec=spec, config=config.model)
    model.item_lookup.set(*item_lookup_arrays(store))
    catalog = serving_catalog(store, config)
    catalog = dataclasses.replace(catalog, settings=dataclasses.replace(
        catalog.settings, max_stored=max(catalog.settings.max_stored, max_history)))
    bundle = ModelBundle(config.model, spec, data_versions(store), model.state_dict())
    with tracked_run(config, "benchmark-serving"):
        registered = log_ctr_model(bundle, {}, MODEL_NAME, tags={"benchmark": "serving"}, catalog=catalog)
    return config, f"models:/{MODEL_NAME}/{registered.version}"


def length_requests(item_ids: np.ndarray, length: int, count: int, seed: int) -> list[dict]:
    """`count` requests whose history is `length` random catalogue items an hour apart, as JSON records."""
    rng = np.random.default_rng(seed)
    now = 1_750_000_000
    times = (now - HOUR * np.arange(length, 0, -1)).tolist()  # (T,) oldest first, the last an hour ago
    return [{"item_id": int(rng.choice(item_ids)), "request_ts": now,
             "history_item_ids": rng.choice(item_ids, size=length).tolist(), "history_ts": times}
            for _ in range(count)]


def latency_summary(seconds: Sequence[float], prefix: str) -> dict:
    ms = np.asarray(seconds) * 1000  # (n,)
    return {f"{prefix}_requests_per_s": round(len(ms) / (ms.sum() / 1000), 1),
            f"{prefix}_p50_ms": round(float(np.percentile(ms, 50)), 2),
            f"{prefix}_p99_ms": round(float(np.percentile(ms, 99)), 2)}


def benchmark_rest(config: Config, uri: str, item_ids: np.ndarray, lengths: Sequence[int], count: int,
                   seed: int, folder: Path) -> list[dict]:
    """Per history length: REST requests one after another, then the same requests in this process."""
    import mlflow
    import requests as http

    from jobs.registry.local_server import served_model
    from r2led_model.tracking.runs import configure

    configure(config.mlflow)
    loaded = mlflow.pyfunc.load_model(uri)
    results = []
    with served_model(uri, tracking_uri=mlflow.get_tracking_uri(), registry_uri=mlflow.get_registry_uri(),
                      log_path=folder / "serve.log") as base, http.Session() as session:
        for length in lengths:
            records = length_requests(item_ids, length, WARM_UP + count, seed + length)
            rest, local, read = [], [], 0
            for i, record in enumerate(records):
                started = time.perf_counter()
                answer = session.post(f"{base}/invocations", json={"dataframe_records": [record]}, timeout=120)
                elapsed = time.perf_counter() - started
                if answer.status_code != 200:
                    raise RuntimeError(f"the served model refused a request: {answer.text[:500]}")
                served_score = answer.json()["predictions"][0]["score"]
                started = time.perf_counter()
                here = loaded.predict(pd.DataFrame([record]))
                local_elapsed = time.perf_counter() - started
                if abs(float(here["score"][0]) - served_score) > 1e-6:
                    raise RuntimeError(f"T={length}: REST scored {served_score}, the loaded model {here['score'][0]}")
                read = int(here["history_length"][0])
                if i >= WARM_UP:
                    rest.append(elapsed)
                    local.append(local_elapsed)
            result = {"bench": "serving_rest", "history_length": length, "history_read": read, "requests": count,
                      **latency_summary(rest, "rest"), **latency_summary(local, "in_process")}
            result["rest_over_in_process_p50"] = round(result["rest_p50_ms"] / result["in_process_p50_ms"], 2)
            print(json.dumps(result), flush=True)
            results.append(result)
    return results


def draw_pairs(store: TableStore, items: np.ndarray, pairs: int, seed: int) -> pa.Table:
    """`pairs` (user_id, item_id) pairs: users with a stored sequence and `items` (item_index's), drawn uniformly."""
    users = store.read("user_sequences").select("user_id").toArrow()["user_id"].to_numpy()
    rng = np.random.default_rng(seed)
    return pa.table({"user_id": rng.choice(users, size=pairs), "item_id": rng.choice(items, size=pairs)})


def candidates_reference(store: TableStore, pairs_path: Path, uri_config: Config, uri: str,
                         as_of: int) -> pd.Series:
    """The score --candidates work in one process: read the pairs (each distinct pair once) and the stored
    sequences with pyarrow, and score each pair against its user's whole stored sequence through the served
    model's code."""
    import mlflow

    from r2led_model.tracking.runs import configure

    configure(uri_config.mlflow)
    served = mlflow.pyfunc.load_model(uri).unwrap_python_model()
    pairs = pq.read_table(pairs_path).group_by(["user_id", "item_id"]).aggregate([])  # a pair listed twice is one
    files = [f.removeprefix("file:") for f in store.active_files("user_sequences")]  # a local run: plain paths
    sequences = pq.read_table(files, columns=["user_id", "item_ids", "ts"])
    users = sequences["user_id"].to_numpy()
    lengths = pc.list_value_length(sequences["item_ids"]).fill_null(0).to_numpy().astype(np.int64)  # (U,)
    starts = np.r_[0, np.cumsum(lengths)]  # (U + 1,)
    flat_items = sequences["item_ids"].combine_chunks().flatten().to_numpy()  # (N,)
    flat_ts = sequences["ts"].combine_chunks().flatten().to_numpy()  # (N,)
    by_user = np.argsort(users)
    scores = []
    for first in range(0, pairs.num_rows, CHUNK):
        chunk = pairs.slice(first, CHUNK)
        slot, _ = locate(users[by_user], chunk["user_id"].to_numpy())  # (S,): drawn users all have a sequence
        owner = by_user[slot]  # (S,)
        counts = lengths[owner]  # (S,)
        out_starts = np.r_[0, np.cumsum(counts)]  # (S + 1,)
        rows = np.repeat(starts[owner] - out_starts[:-1], counts) + np.arange(out_starts[-1])  # (M,)
        requests = RawRequests(item_ids=chunk["item_id"].to_numpy().astype(np.int64),
                               request_ts=np.full(chunk.num_rows, as_of, dtype=np.int64),
                               history_item_ids=flat_items[rows].astype(np.int64),
                               history_ts=flat_ts[rows].astype(np.int64), starts=out_starts.astype(np.int64))
        scores.append(served.score_requests(requests)["score"].to_numpy())
    return pd.Series(np.concatenate(scores), index=pd.MultiIndex.from_arrays(
        [pairs["user_id"].to_numpy(), pairs["item_id"].to_numpy()]))


def benchmark_candidates(spark: SparkSession, config: Config, store: TableStore, uri_config: Config, uri: str,
                         item_ids: np.ndarray, pairs: int, seed: int, folder: Path) -> dict:
    from jobs.registry.score_candidates import CandidateSource, score_candidates

    drawn = draw_pairs(store, item_ids, pairs, seed)
    path = folder / "pairs.parquet"
    pq.write_table(drawn, path)
    as_of = int(time.time())
    started = time.perf_counter()
    result = score_candidates(spark, dataclasses.replace(config, mlflow=uri_config.mlflow),
                              CandidateSource(path=str(path), format="parquet"), model_uri=uri,
                              run_id="benchmark-serving", as_of=as_of)
    spark_s = time.perf_counter() - started
    started = time.perf_counter()
    reference = candidates_reference(store, path, uri_config, uri, as_of)
    reference_s = time.perf_counter() - started
    written = (store.read("candidate_scores").where("run_id = 'benchmark-serving'")
               .select("user_id", "item_id", "score").toPandas().set_index(["user_id", "item_id"])["score"])
    difference = float(np.abs(written.loc[reference.index].to_numpy() - reference.to_numpy()).max())
    out = {"bench": "serving_candidates", "pairs": pairs, "distinct_pairs": result.scored,
           "spark_s": round(spark_s, 2), "reference_s": round(reference_s, 2),
           "spark_pairs_per_s": round(pairs / spark_s, 1), "reference_pairs_per_s": round(pairs / reference_s, 1),
           "spark_over_reference_time": round(spark_s / reference_s, 2), "max_abs_score_difference": difference}
    print(json.dumps(out), flush=True)
    return out


def format_table(results: Sequence[dict]) -> str:
    lines = []
    rest = [r for r in results if r["bench"] == "serving_rest"]
    if rest:
        header = (f"{'T':>7} {'read':>6} {'REST req/s':>11} {'p50 ms':>8} {'p99 ms':>8} {'in-proc req/s':>14} "
                  f"{'p50 ms':>8} {'p99 ms':>8} {'REST÷in-proc p50':>17}")
        lines += [header, "-" * len(header)]
        lines += [f"{r['history_length']:>7,} {r['history_read']:>6,} {r['rest_requests_per_s']:>11,} "
                  f"{r['rest_p50_ms']:>8} {r['rest_p99_ms']:>8} {r['in_process_requests_per_s']:>14,} "
                  f"{r['in_process_p50_ms']:>8} {r['in_process_p99_ms']:>8} {r['rest_over_in_process_p50']:>17.2f}"
                  for r in rest]
    for r in results:
        if r["bench"] == "serving_candidates":
            lines.append(f"score --candidates: {r['pairs']:,} pairs in {r['spark_s']} s ({r['spark_pairs_per_s']:,} "
                         f"pairs/s); single-process reference {r['reference_s']} s ({r['reference_pairs_per_s']:,} "
                         f"pairs/s); Spark ÷ reference time {r['spark_over_reference_time']:.2f}; largest score "
                         f"difference {r['max_abs_score_difference']:.2e}")
    return "\n".join(lines)


def run(spark: SparkSession, config: Config, *, lengths: Sequence[int] = LENGTHS, requests: int = REQUESTS,
        pairs: int = PAIRS, seed: int = 0) -> list[dict]:
    store = TableStore(spark, config.tables)
    folder = Path(config.benchmark.output_dir).resolve() / "serving"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    uri_config, uri = register_model(config, store, max(lengths, default=0))
    item_ids = store.read("item_index").select("item_id").toArrow()["item_id"].to_numpy()
    results = benchmark_rest(uri_config, uri, item_ids, lengths, requests, seed, folder) if lengths else []
    if pairs:
        results.append(benchmark_candidates(spark, config, store, uri_config, uri, item_ids, pairs, seed, folder))
    with open(Path(config.benchmark.output_dir) / "serving.jsonl", "a", encoding="utf-8") as sink:
        for result in results:
            sink.write(json.dumps(result) + "\n")
    print(format_table(results), flush=True)
    return results


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lengths", type=int, nargs="+", default=list(LENGTHS),
                        help="history lengths T of the REST part")
    parser.add_argument("--requests", type=int, default=REQUESTS, help="timed requests per history length")
    parser.add_argument("--pairs", type=int, default=PAIRS, help="candidate pairs of the score --candidates part "
                        "(0 skips it)")
    parser.add_argument("--seed", type=int, default=0)


def main(argv: Sequence[str] | None = None) -> int:
    return spark_job_main(argv, "benchmark serving", "Served-model latency and score --candidates throughput.", run,
                          _add_arguments)


if __name__ == "__main__":
    sys.exit(main())
