"""`r2led benchmark sequences`: ingest + sequence build throughput, Spark beside a single-process
reference on the same synthetic data in the same run.

After an untimed warm-up, for each size in `benchmark.sequence_sizes` (or `--sizes`): generate raw logs (not timed), time
Spark's `ingest.run` + `sequences.run` into fresh Delta tables, time the pyarrow/pandas reference
of the same transform, and check both agree on the counts. Prints one JSON line per size and a
table; appends the JSON lines to `<benchmark.output_dir>/sequences.jsonl`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import platform
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Sequence

from pyspark.sql import SparkSession

from jobs.benchmarks.reference_sequences import run_reference
from jobs.ingest import generate, ingest
from jobs.runtime.entrypoint import spark_job_main
from jobs.runtime.tables import TableStore
from jobs.sequences import sequences
from r2led_model.config import Config, SyntheticSourceConfig, TablesConfig

log = logging.getLogger(__name__)

WARM_UP_EVENTS = 20_000


def _sized_config(config: Config, folder: Path) -> Config:
    """The same config, reading and writing only inside this size's benchmark folder, with a
    time split at 80% / 90% of the synthetic window (whatever split the env sets for its data)."""
    start = dt.date.fromisoformat(config.synthetic.start_date)
    cut = lambda share: (start + dt.timedelta(days=int(config.synthetic.days * share))).isoformat()  # noqa: E731
    split = replace(config.sequences.split, mode="time", valid_from=cut(0.8), test_from=cut(0.9))
    return replace(
        config,
        source=replace(config.source, kind="synthetic", synthetic=SyntheticSourceConfig(path=str(folder / "raw"))),
        tables=TablesConfig(backend="path", root=str(folder / "tables")),
        sequences=replace(config.sequences, split=split),
    )


def benchmark_size(spark: SparkSession, config: Config, events: int, folder: Path) -> dict:
    sized = _sized_config(config, folder)
    generated = generate.run(spark, sized, events=events)
    shutil.rmtree(folder / "tables", ignore_errors=True)
    shutil.rmtree(folder / "reference", ignore_errors=True)

    started = time.perf_counter()
    ingested = ingest.run(spark, sized)
    built = sequences.run(spark, sized)
    spark_s = time.perf_counter() - started

    started = time.perf_counter()
    reference = run_reference(sized, folder / "raw" / "events", folder / "reference")
    reference_s = time.perf_counter() - started

    store = TableStore(spark, sized.tables)
    spark_events = store.read("events").count()
    spark_samples = sum(built.samples_by_split.values())
    agree = (reference.rows_read == ingested.rows_read and reference.events == spark_events
             and reference.users == built.users
             and reference.samples - reference.sampled_negatives == spark_samples - built.sampled_negatives)
    return {
        "bench": "sequences",
        "events": generated.events,
        "users": built.users,
        "samples": spark_samples,
        "spark_s": round(spark_s, 2),
        "reference_s": round(reference_s, 2),
        "spark_events_per_s": round(generated.events / spark_s),
        "reference_events_per_s": round(generated.events / reference_s),
        "spark_over_reference": round(spark_s / reference_s, 2),
        "counts_agree": agree,
        "cores": os.cpu_count(),
        "master": spark.sparkContext.master,
        "python": platform.python_version(),
    }


def run(spark: SparkSession, config: Config, *, sizes: Sequence[int] | None = None) -> list[dict]:
    """Ingest + sequences at each event count in `sizes` (default: benchmark.sequence_sizes)."""
    sizes = tuple(sizes or config.benchmark.sequence_sizes)
    out_dir = Path(config.benchmark.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # Untimed warm-up: the first Spark jobs of a JVM pay class loading and JIT compilation.
    benchmark_size(spark, config, WARM_UP_EVENTS, out_dir / "sequences" / "warm-up")
    results = []
    for events in sizes:
        result = benchmark_size(spark, config, events, out_dir / "sequences" / f"n{events}")
        print(json.dumps(result), flush=True)
        with open(out_dir / "sequences.jsonl", "a", encoding="utf-8") as sink:
            sink.write(json.dumps(result) + "\n")
        results.append(result)
    print(format_table(results), flush=True)
    return results


def format_table(results: Sequence[dict]) -> str:
    header = f"{'events':>12} {'spark s':>9} {'ref s':>8} {'spark ev/s':>12} {'ref ev/s':>12} {'spark/ref':>10} {'agree':>6}"
    lines = [header, "-" * len(header)]
    for r in results:
        lines.append(f"{r['events']:>12,} {r['spark_s']:>9.1f} {r['reference_s']:>8.1f} {r['spark_events_per_s']:>12,} "
                     f"{r['reference_events_per_s']:>12,} {r['spark_over_reference']:>10.2f} {str(r['counts_agree']):>6}")
    if len(results) > 1:
        first, last = results[0], results[-1]
        growth = (last["spark_s"] / first["spark_s"]) / (last["events"] / first["events"])
        lines.append(f"spark time grows {growth:.2f}x per unit of events from {first['events']:,} to {last['events']:,} "
                     "(1.00 = linear; below 1 = fixed costs amortising)")
    return "\n".join(lines)


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", type=int, nargs="+", default=None,
                        help="event counts to benchmark (default: benchmark.sequence_sizes)")


def main(argv: Sequence[str] | None = None) -> int:
    return spark_job_main(argv, "benchmark sequences", "Ingest + sequences throughput vs a single-process reference.",
                          run, _add_arguments)


if __name__ == "__main__":
    sys.exit(main())
