"""`r2led benchmark retrieval`: samples/s of multi-route retrieval as the history length T grows.

For each T in `--lengths` (default 100, 1000, 10000): `--users` users (default `DEFAULT_USERS`)
with T stored behaviours and `--samples-per-user` samples each, drawn from one shared catalogue of
seeded random items with SIDs, 64-bit SimHash words and categories (`write_world`). In one run, on
the same data:
  * spark: `retrieve.build_route_candidates` over Parquet inputs (users' sequences and samples
    meet in a hash partition; the numpy kernel runs once per task), results discarded through the
    noop sink;
  * spark floor: the same job with a kernel that ranks nothing (`rank_nothing`): what reading,
    shuffling, Arrow both ways and the output columns cost alone, i.e. the most Spark could reach
    here with a free kernel;
  * numpy: the same work in one process: read the same Parquet, build the same feature lookup and
    run the same partition function over every user (`kernel_only_s` also times the bare kernel,
    `retrieve_routes_many`, on in-memory arrays);
  * naive: the per-row pure-Python implementation, on the first user's samples (it is slow).
Spark, the floor and numpy are each timed `--repeats` times (default 2) and the fastest counts:
the first Spark run also pays JVM warm-up and Python worker starts. Prints JSON lines and a table; appends
to `<benchmark.output_dir>/retrieval.jsonl`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import SparkSession

from jobs.retrieval.retrieve import RankKernel, build_route_candidates, candidates_for_partition
from jobs.runtime.entrypoint import spark_job_main
from jobs.sequences.user_partitions import as_partition_sequences
from r2led_model.arrow_arrays import list_column
from r2led_model.config import Config
from r2led_model.retrieval.item_feature_lookup import ItemFeatureLookup
from r2led_model.retrieval.multi_route import (Histories, RouteCandidates, RoutePlan, Targets, UserHistory,
                                               retrieve_routes_many)
from r2led_model.retrieval.naive import in_memory, naive_retrieve_routes, random_catalogue, random_user_case

log = logging.getLogger(__name__)

LEVELS, BITS, CATALOGUE = 3, 64, 100_000
FILES_PER_TABLE = 4
# Users per history length T: enough samples that each T takes the single process a few seconds,
# so that Spark's fixed cost per job (scheduling, a shuffle, collecting the item features) is
# not what the ratio measures.
DEFAULT_USERS = {100: 4000, 1000: 600, 10000: 100}
SAMPLES_PER_USER = 100
REPEATS = 2  # Spark and the single-process path are timed this many times each; the fastest counts


def write_world(folder: Path, users: int, length: int, per_user: int) -> list[tuple[UserHistory, Targets]]:
    """Seeded random users drawn from one shared catalogue (`random_user_case`), written as Parquet
    under `folder`: features/ (every catalogue item), sequences/ and samples/, in the columns of the
    job's inputs. Returns each user's case."""
    catalogue = random_catalogue(length, CATALOGUE, levels=LEVELS, alphabet=8, bits=BITS)
    cases = [random_user_case(seed=1000 * length + u, stored=length, samples=per_user, catalogue=catalogue)
             for u in range(users)]
    features = pa.table({
        "item_id": np.arange(len(catalogue), dtype=np.int64),
        "semantic_codes": list_column(catalogue.codes.astype(np.int32)),
        "signature": list_column(catalogue.signatures.view(np.int64)),
        "category_id": catalogue.categories.astype(np.int64)})
    histories, targets, owner = in_memory(cases)
    offsets = pa.array(np.r_[0, np.cumsum(histories.lengths)].astype(np.int32))
    sequences = pa.table({
        "user_id": np.arange(users, dtype=np.int64),
        "item_ids": pa.ListArray.from_arrays(offsets, pa.array(histories.item_ids.astype(np.int64))),
        "ts": pa.ListArray.from_arrays(offsets, pa.array(histories.ts.astype(np.int64))),
        "dropped": histories.dropped})
    samples = pa.table({
        "sample_id": owner * 1_000_000 + np.tile(np.arange(per_user, dtype=np.int64), users),
        "user_id": owner,
        "item_id": targets.item_ids.astype(np.int64),
        "ts": targets.ts.astype(np.int64),
        "hist_len": targets.hist_len.astype(np.int64),
        "split": pa.array(["train"] * (users * per_user))})
    for name, table in (("features", features), ("sequences", sequences), ("samples", samples)):
        shutil.rmtree(folder / name, ignore_errors=True)
        (folder / name).mkdir(parents=True)
        # Several files, as a table has: Spark scans them in parallel.
        size = -(-table.num_rows // FILES_PER_TABLE)
        for part in range(FILES_PER_TABLE):
            pq.write_table(table.slice(part * size, size), folder / name / f"part-{part}.parquet")
    return cases


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
    cases = write_world(folder, users, length, per_user)
    total = users * per_user
    words = (BITS + 63) // 64

    def spark_job(rank: RankKernel = retrieve_routes_many) -> None:
        build_route_candidates(spark, spark.read.parquet(str(folder / "samples")),
                               spark.read.parquet(str(folder / "sequences")),
                               lambda: spark.read.parquet(str(folder / "features")), plan, LEVELS, words, rank
                               ).write.format("noop").mode("overwrite").save()

    # Best of `repeats` for both paths: the first Spark run also pays JVM warm-up and Python worker starts.
    spark_s = best_of(repeats, spark_job)
    spark_floor_s = best_of(repeats, lambda: spark_job(rank_nothing))
    numpy_s = best_of(repeats, lambda: single_process(folder, plan, words))

    histories, targets, owner = in_memory(cases)
    started = time.perf_counter()
    retrieve_routes_many(histories, targets, owner, plan)
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

    rates = {"spark": total / spark_s, "spark_floor": total / spark_floor_s, "numpy": total / numpy_s,
             "naive": count / naive_s}
    return {"bench": "retrieval", "history_length": length, "users": users, "samples": total, "repeats": repeats,
            "routes": list(plan.route_names), "k": config.retrieval.k,
            "spark_s": round(spark_s, 2), "spark_floor_s": round(spark_floor_s, 2), "numpy_s": round(numpy_s, 3),
            "kernel_only_s": round(kernel_s, 3),
            "naive_s": round(naive_s, 2),
            "naive_samples": count, **{f"{k}_samples_per_s": round(v) for k, v in rates.items()},
            "spark_over_numpy": round(numpy_s and spark_s / numpy_s, 2),
            "numpy_over_naive_speed": round(rates["numpy"] / rates["naive"], 1),
            "spark_over_naive_speed": round(rates["spark"] / rates["naive"], 1),
            "spark_floor_over_naive_speed": round(rates["spark_floor"] / rates["naive"], 1), "cores": os.cpu_count()}


def rank_nothing(histories: Histories, targets: Targets, owner: np.ndarray,
                 plan: RoutePlan) -> dict[str, RouteCandidates]:
    """A kernel that finds nothing, so that a Spark run with it times everything but the ranking:
    reading, shuffling, Arrow both ways and building the output columns (`spark_floor_s`)."""
    return {r.name: RouteCandidates.empty(len(targets), r.k) for r in plan.routes}


def single_process(folder: Path, plan: RoutePlan, words: int) -> int:
    """The Spark job's work in one process: read the same Parquet inputs, collect the item features
    the same way and run the same partition function (`retrieve.candidates_for_partition`) once over
    every user."""
    features = ItemFeatureLookup.from_arrow(pq.read_table(folder / "features"), LEVELS, words)
    out = candidates_for_partition(as_partition_sequences(pq.read_table(folder / "sequences")),
                                   pq.read_table(folder / "samples"), features, plan)
    return 0 if out is None else out.num_rows


def format_table(results: Sequence[dict]) -> str:
    header = (f"{'T':>7} {'samples':>8} {'spark/s':>9} {'numpy/s':>9} {'naive/s':>8} {'spark÷numpy time':>17} "
              f"{'numpy×naive':>12} {'spark×naive':>12} {'floor×naive':>12}")
    lines = [header, "-" * len(header)]
    for r in results:
        lines.append(f"{r['history_length']:>7,} {r['samples']:>8,} {r['spark_samples_per_s']:>9,} "
                     f"{r['numpy_samples_per_s']:>9,} {r['naive_samples_per_s']:>8,} {r['spark_over_numpy']:>17.2f} "
                     f"{r['numpy_over_naive_speed']:>12.1f} {r['spark_over_naive_speed']:>12.1f} "
                     f"{r['spark_floor_over_naive_speed']:>12.1f}")
    if len(results) > 1:
        first, last = results[0], results[-1]
        growth = (first["numpy_samples_per_s"] / last["numpy_samples_per_s"]) / (
            last["history_length"] / first["history_length"])
        lines.append(f"numpy cost per sample grows {growth:.2f}x per unit of T from T={first['history_length']:,} "
                     f"to T={last['history_length']:,} (1.00 = linear)")
    return "\n".join(lines)


def run(spark: SparkSession, config: Config, *, lengths: Sequence[int] | None = None, users: int | None = None,
        samples_per_user: int = SAMPLES_PER_USER, repeats: int = REPEATS) -> list[dict]:
    """Samples/s at each history length in `lengths` (default: those of DEFAULT_USERS), for `users`
    users each (default: DEFAULT_USERS's count, so that every T takes seconds)."""
    out = Path(config.benchmark.output_dir)
    results = []
    for length in lengths or tuple(DEFAULT_USERS):
        length_users = users or DEFAULT_USERS.get(length) or max(1, DEFAULT_USERS[1000] * 1000 // length)
        result = benchmark_length(spark, config, length, length_users, samples_per_user,
                                  out / "retrieval" / f"T{length}", repeats=repeats)
        print(json.dumps(result), flush=True)
        results.append(result)
    with open(out / "retrieval.jsonl", "a", encoding="utf-8") as sink:
        for result in results:
            sink.write(json.dumps(result) + "\n")
    print(format_table(results), flush=True)
    return results


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lengths", type=int, nargs="+", default=None, help="history lengths T")
    parser.add_argument("--users", type=int, default=None,
                        help=f"users per history length (default: {DEFAULT_USERS}, so that every T takes seconds)")
    parser.add_argument("--samples-per-user", type=int, default=SAMPLES_PER_USER)
    parser.add_argument("--repeats", type=int, default=REPEATS,
                        help="time Spark and the single-process path this many times each; report the fastest")


def main(argv: Sequence[str] | None = None) -> int:
    return spark_job_main(argv, "benchmark retrieval", "Retrieval samples/s vs history length.", run, _add_arguments)


if __name__ == "__main__":
    sys.exit(main())
