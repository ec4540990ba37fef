"""`r2led benchmark retrieval`: samples/s of multi-route retrieval as the history length T grows.

For each T in `--lengths` (default 100, 1000, 10000): `--users` users with T stored behaviours
and `--samples-per-user` samples each (seeded random worlds with SIDs, 64-bit SimHash words and
ties, from `naive_retrieval.random_user_case`). In one run, on the same data:
  * Spark: `retrieve.build_route_candidates` over Parquet inputs (co-group by user, numpy kernel
    per user), results discarded through the noop sink;
  * numpy: the same work in one process: read the same Parquet, attach features, sort by user,
    run the same partition function (`kernel_only_s` also times the bare kernel on in-memory arrays);
  * naive: the per-row pure-Python implementation, on the first user's samples (it is slow).
Spark and numpy are each timed `--repeats` times (default 2) and the fastest counts: the first
Spark run also pays JVM warm-up and Python worker starts. Prints JSON lines and a table; appends
to `<benchmark.output_dir>/retrieval.jsonl`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
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

from jobs.benchmarks.naive_retrieval import naive_retrieve_routes, random_user_case
from jobs.entrypoint import spark_job_main
from jobs.retrieve import build_route_candidates, candidates_for_partition
from r2led_model.config import Config
from r2led_model.retrieval import RoutePlan, Targets, retrieve_routes

log = logging.getLogger(__name__)

LEVELS, BITS, CATALOGUE = 3, 64, 4000


def _world(users: int, length: int, per_user: int):
    cases = [random_user_case(seed=1000 * length + u, stored=length, samples=per_user, levels=LEVELS, alphabet=8,
                              bits=BITS, catalogue=CATALOGUE) for u in range(users)]
    # Item ids are global: user u's local item i becomes u·CATALOGUE + i, with that user's features.
    features, sequences, samples = [], [], []
    for u, (history, targets) in enumerate(cases):
        offset = u * CATALOGUE
        for ids, codes, words, cats in ((history.item_ids, history.sid_codes, history.signatures, history.categories),
                                        (targets.item_ids, targets.sid_codes, targets.signatures, targets.categories)):
            for i, c, w, g in zip(ids, codes, words, cats):
                features.append((int(offset + i), [int(x) for x in c], [int(x) for x in w.view(np.int64)], int(g)))
        sequences.append((u, [int(offset + i) for i in history.item_ids], history.ts.tolist(), history.dropped))
        for s, (item, ts, hist_len) in enumerate(zip(targets.item_ids, targets.ts, targets.hist_len)):
            samples.append((u * 1_000_000 + s, u, int(offset + item), int(ts), int(hist_len), "train"))
    features = pd.DataFrame(features, columns=["item_id", "semantic_codes", "signature", "category_id"]).drop_duplicates(
        "item_id")
    return cases, features, sequences, samples


def best_of(repeats: int, work) -> float:
    """The fastest of `repeats` timed calls of `work()`, in seconds."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return min(times)


def benchmark_length(spark: SparkSession, config: Config, length: int, users: int, per_user: int, folder: Path,
                     repeats: int = 2) -> dict:
    plan = RoutePlan.from_config(config.retrieval, LEVELS)
    cases, features, sequences, samples = _world(users, length, per_user)
    folder.mkdir(parents=True, exist_ok=True)
    spark.createDataFrame(features).write.mode("overwrite").parquet(str(folder / "features"))
    spark.createDataFrame(sequences, "user_id BIGINT, item_ids ARRAY<BIGINT>, ts ARRAY<BIGINT>, dropped BIGINT").write.mode(
        "overwrite").parquet(str(folder / "sequences"))
    spark.createDataFrame(samples, "sample_id BIGINT, user_id BIGINT, item_id BIGINT, ts BIGINT, hist_len BIGINT, "
                                   "split STRING").write.mode("overwrite").parquet(str(folder / "samples"))
    total = len(samples)
    words = (BITS + 63) // 64

    def spark_job() -> None:
        build_route_candidates(spark, spark.read.parquet(str(folder / "samples")),
                               spark.read.parquet(str(folder / "sequences")),
                               lambda: spark.read.parquet(str(folder / "features")), plan, LEVELS, words
                               ).write.format("noop").mode("overwrite").save()

    # Best of `repeats` for both paths: the first Spark run also pays JVM warm-up and Python worker starts.
    spark_s = best_of(repeats, spark_job)
    numpy_s = best_of(repeats, lambda: single_process(folder, plan, words))

    started = time.perf_counter()
    for history, targets in cases:
        retrieve_routes(history, targets, plan)
    kernel_s = time.perf_counter() - started

    # The naive path on part of the first user's samples: enough for a stable rate.
    history, targets = cases[0]
    count = int(min(per_user, max(4, 40_000 // length)))
    subset = Targets(item_ids=targets.item_ids[:count], hist_len=targets.hist_len[:count],
                     sid_codes=targets.sid_codes[:count], signatures=targets.signatures[:count],
                     categories=targets.categories[:count], ts=targets.ts[:count])
    started = time.perf_counter()
    naive_retrieve_routes(history, subset, plan)
    naive_s = time.perf_counter() - started

    rates = {"spark": total / spark_s, "numpy": total / numpy_s, "naive": count / naive_s}
    return {"bench": "retrieval", "history_length": length, "users": users, "samples": total, "repeats": repeats,
            "routes": list(plan.route_names), "k": config.retrieval.k,
            "spark_s": round(spark_s, 2), "numpy_s": round(numpy_s, 3), "kernel_only_s": round(kernel_s, 3),
            "naive_s": round(naive_s, 2),
            "naive_samples": count, **{f"{k}_samples_per_s": round(v) for k, v in rates.items()},
            "spark_over_numpy": round(numpy_s and spark_s / numpy_s, 2),
            "numpy_over_naive_speed": round(rates["numpy"] / rates["naive"], 1),
            "spark_over_naive_speed": round(rates["spark"] / rates["naive"], 1), "cores": os.cpu_count()}


def single_process(folder: Path, plan: RoutePlan, words: int) -> int:
    """The Spark job's work in one process: read the same Parquet inputs, attach item features, lay
    behaviours and samples out sorted by user as the job does, and run the same partition function
    (`retrieve.candidates_for_partition`) once over everything."""
    features = pq.read_table(folder / "features")
    sequences = pq.read_table(folder / "sequences")
    samples = pq.read_table(folder / "samples")
    feature_ids = features["item_id"].to_numpy()
    by_id = np.argsort(feature_ids)

    def feature_rows(ids: np.ndarray) -> np.ndarray:
        return by_id[np.searchsorted(feature_ids, ids, sorter=by_id)]

    lengths = pc.list_value_length(sequences["item_ids"]).to_numpy()
    n_hist, n_samples = int(lengths.sum()), samples.num_rows
    item = np.concatenate([sequences["item_ids"].combine_chunks().flatten().to_numpy(), samples["item_id"].to_numpy()])
    columns = {
        "user_id": np.concatenate([np.repeat(sequences["user_id"].to_numpy(), lengths), samples["user_id"].to_numpy()]),
        "item_id": item,
        "ts": np.concatenate([sequences["ts"].combine_chunks().flatten().to_numpy(), samples["ts"].to_numpy()]),
        "dropped": np.concatenate([np.repeat(sequences["dropped"].to_numpy(), lengths), np.zeros(n_samples, np.int64)]),
        "position": np.concatenate([np.concatenate([np.arange(n) for n in lengths]), -np.ones(n_samples, np.int64)]),
        "sample_id": np.concatenate([np.zeros(n_hist, np.int64), samples["sample_id"].to_numpy()]),
        "hist_len": np.concatenate([np.zeros(n_hist, np.int64), samples["hist_len"].to_numpy()]),
        "is_sample": np.r_[np.zeros(n_hist, bool), np.ones(n_samples, bool)],
    }
    order = np.lexsort((columns["sample_id"], columns["position"], columns["is_sample"], columns["user_id"]))
    rows = feature_rows(item[order])
    table = pa.table({
        **{name: values[order] for name, values in columns.items()},
        "split": pa.concat_arrays([pa.array([""] * n_hist), samples["split"].combine_chunks()]).take(pa.array(order)),
        **{name: features[name].take(pa.array(rows)) for name in ("semantic_codes", "signature", "category_id")},
    })
    out = candidates_for_partition(table, plan, LEVELS, words)
    return 0 if out is None else out.num_rows


def format_table(results: Sequence[dict]) -> str:
    header = (f"{'T':>7} {'samples':>8} {'spark/s':>9} {'numpy/s':>9} {'naive/s':>8} {'spark÷numpy time':>17} "
              f"{'numpy×naive':>12} {'spark×naive':>12}")
    lines = [header, "-" * len(header)]
    for r in results:
        lines.append(f"{r['history_length']:>7,} {r['samples']:>8,} {r['spark_samples_per_s']:>9,} "
                     f"{r['numpy_samples_per_s']:>9,} {r['naive_samples_per_s']:>8,} {r['spark_over_numpy']:>17.2f} "
                     f"{r['numpy_over_naive_speed']:>12.1f} {r['spark_over_naive_speed']:>12.1f}")
    if len(results) > 1:
        first, last = results[0], results[-1]
        growth = (first["numpy_samples_per_s"] / last["numpy_samples_per_s"]) / (
            last["history_length"] / first["history_length"])
        lines.append(f"numpy cost per sample grows {growth:.2f}x per unit of T from T={first['history_length']:,} "
                     f"to T={last['history_length']:,} (1.00 = linear)")
    return "\n".join(lines)


def run(spark: SparkSession, config: Config, args: argparse.Namespace | None = None) -> list[dict]:
    out = Path(config.benchmark.output_dir)
    results = []
    for length in getattr(args, "lengths", None) or (100, 1000, 10000):
        result = benchmark_length(spark, config, length, args.users, args.samples_per_user,
                                  out / "retrieval" / f"T{length}", repeats=args.repeats)
        print(json.dumps(result), flush=True)
        results.append(result)
    with open(out / "retrieval.jsonl", "a", encoding="utf-8") as sink:
        for result in results:
            sink.write(json.dumps(result) + "\n")
    print(format_table(results), flush=True)
    return results


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lengths", type=int, nargs="+", default=None, help="history lengths T")
    parser.add_argument("--users", type=int, default=40)
    parser.add_argument("--samples-per-user", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=2,
                        help="time Spark and the single-process path this many times each; report the fastest")


def main(argv: Sequence[str] | None = None) -> int:
    return spark_job_main(argv, "benchmark retrieval", "Retrieval samples/s vs history length.", run, _add_arguments)


if __name__ == "__main__":
    sys.exit(main())
