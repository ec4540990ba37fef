"""`r2led benchmark scale`: every Spark data stage on synthetic worlds of growing size.

For each size in `benchmark.scale_sizes` (or `--sizes`, events): generate the raw logs (not timed),
then run ingest → sequences → embed-items → train-codebook → assign-sids → collab-vectors →
retrieve → build-training-set into fresh tables, each timed alone, with its rows in and out, the
bytes of the tables it writes (and per row written),
the peak memory of the driver, the JVM and the Python workers (`process_memory`) and the bytes
Spark spilled. A training window (`sequences.samples_from`) keeps the last
`benchmark.scale_sample_share` of the days as samples and every event as history, so the top size
has years-of-history proportions. Prints one JSON line per stage and size, a table, each stage's
growth against linear, and writes `scale.jsonl` and `scale.png` under `benchmark.output_dir`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import math
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Sequence

from pyspark.sql import SparkSession

from jobs.benchmarks.process_memory import MemorySampler, jvm_pid
from jobs.benchmarks.single_process_stages import (collab_vectors_reference, retrieve_reference,
                                                   training_set_reference)
from jobs.benchmarks.sink_share import noop_sink_seconds
from jobs.benchmarks.wide_layout import wide_layout_bytes
from jobs.ingest import generate
from jobs.orchestration.stages import DATA_STAGES, stages
from jobs.runtime.entrypoint import spark_job_main
from jobs.runtime.tables import TableStore
from r2led_model.config import Config, SyntheticSourceConfig, TablesConfig

log = logging.getLogger(__name__)

# Every data stage; the rows of a stage's `reads` count as its rows in, of its `produces` as its rows out.
SCALED_STAGES = stages(DATA_STAGES)
# Stages with a single-process reference of the same work (`single_process_stages`); sequences
# has its own (`r2led benchmark sequences`), SID assignment too (`r2led benchmark sids`).
REFERENCES = {"collab-vectors": collab_vectors_reference, "retrieve": retrieve_reference,
              "build-training-set": training_set_reference}


def sized_config(config: Config, folder: Path, sample_share: float, events: int = 0) -> Config:
    """The config reading and writing only inside `folder`, with the training window and the time
    split inside the last `sample_share` of the synthetic days, and one user partition (and
    training file per split) per `benchmark.scale_events_per_partition` of the `events`."""
    start = dt.date.fromisoformat(config.synthetic.start_date)
    days = config.synthetic.days

    def day_at(share: float) -> str:
        return (start + dt.timedelta(days=int(round(days * share)))).isoformat()

    split = replace(config.sequences.split, mode="time", valid_from=day_at(1 - sample_share / 3),
                    test_from=day_at(1 - sample_share / 6))
    partitions = max(config.spark.shuffle_partitions, math.ceil(events / config.benchmark.scale_events_per_partition))
    return replace(
        config,
        spark=replace(config.spark, shuffle_partitions=partitions),
        training_set=replace(config.training_set, files_per_split=max(config.training_set.files_per_split, partitions)),
        source=replace(config.source, kind="synthetic", synthetic=SyntheticSourceConfig(path=str(folder / "raw"))),
        tables=TablesConfig(backend="path", root=str(folder / "tables")),
        sequences=replace(config.sequences, split=split, samples_from=day_at(1 - sample_share)),
        codebook=replace(config.codebook, store_dir=str(folder / "codebooks")),
    )


def spilled_bytes(spark: SparkSession) -> int | None:
    """Memory + disk bytes spilled by every stage the session has run so far (Spark's status store)."""
    try:
        context = spark.sparkContext
        no_quantiles = context._gateway.new_array(context._jvm.double, 0)
        stages = context._jsc.sc().statusStore().stageList(None, False, False, no_quantiles,
                                                            context._jvm.java.util.ArrayList())
        total = 0
        for i in range(stages.size()):
            stage = stages.apply(i)
            total += int(stage.memoryBytesSpilled()) + int(stage.diskBytesSpilled())
        return total
    except Exception:  # an internal API: a Spark that moved it reports no spill rather than failing the run
        log.debug("spill not available", exc_info=True)
        return None


def _rows(store: TableStore, tables: Sequence[str]) -> int | None:
    return sum(store.read(t).count() for t in tables) if tables else None


def benchmark_size(spark: SparkSession, config: Config, events: int, folder: Path, sample_share: float,
                   references: bool = False, until: str = DATA_STAGES[-1], wide_bytes: bool = False,
                   sink_share: bool = False) -> list[dict]:
    """Every data stage up to `until` at `events`; `references`: also time each stage's
    single-process reference (`REFERENCES`) on the same tables, right after the stage; `wide_bytes`: also
    write build-training-set's examples in input layout 1 (`wide_layout`) and report its bytes per row;
    `sink_share`: also time build-training-set's job into the noop sink (`sink_share`)."""
    sized = sized_config(config, folder, sample_share, events)
    # The session was started with the env's partitions; this size's count holds while it runs.
    spark.conf.set("spark.sql.shuffle.partitions", str(sized.spark.shuffle_partitions))
    generated = generate.run(spark, sized, events=events)
    for name in ("tables", "codebooks"):
        shutil.rmtree(folder / name, ignore_errors=True)
    store = TableStore(spark, sized.tables)
    pid = jvm_pid(spark)
    results = []
    for stage in SCALED_STAGES[:DATA_STAGES.index(until) + 1]:
        rows_in = _rows(store, stage.reads) if stage.reads else generated.events
        spilled_before = spilled_bytes(spark)
        with MemorySampler(pid) as memory:
            started = time.perf_counter()
            stage.run(spark, sized)
            seconds = time.perf_counter() - started
        spilled_after = spilled_bytes(spark)
        rows_out = _rows(store, stage.produces) if stage.produces else 1
        bytes_out = sum(store.size_in_bytes(t) for t in stage.produces) if stage.produces else None
        result = {
            "bench": "scale", "events": generated.events, "stage": stage.name, "seconds": round(seconds, 2),
            "rows_in": rows_in, "rows_out": rows_out, "bytes_out": bytes_out,
            "bytes_per_row_out": round(bytes_out / rows_out, 1) if bytes_out and rows_out else None,
            "peak_driver_python_mb": _mb(memory.peak.driver_python_mb), "peak_jvm_mb": _mb(memory.peak.jvm_mb),
            "peak_python_workers_mb": _mb(memory.peak.python_workers_mb),
            "spilled_mb": (None if spilled_before is None or spilled_after is None
                           else round((spilled_after - spilled_before) / 2**20, 1)),
            "master": spark.sparkContext.master, "samples_from": sized.sequences.samples_from,
            "partitions": sized.spark.shuffle_partitions,
        }
        if references and stage.name in REFERENCES:
            result.update(_reference(REFERENCES[stage.name], store, sized, folder / "reference" / stage.name,
                                     spark_seconds=seconds))
        if sink_share and stage.name == "build-training-set":
            result.update(noop_sink_seconds(spark, store, sized))
        if wide_bytes and stage.name == "build-training-set":
            wide = wide_layout_bytes(spark, store, folder / "wide_examples")
            result.update(wide, narrow_over_wide=round(result["bytes_per_row_out"] / wide["wide_bytes_per_row"], 3))
        print(json.dumps(result), flush=True)
        results.append(result)
    return results


def _reference(reference, store: TableStore, config: Config, out: Path, *, spark_seconds: float) -> dict:
    started = time.perf_counter()
    rows = reference(store, config, out)
    seconds = time.perf_counter() - started
    shutil.rmtree(out, ignore_errors=True)
    return {"reference_seconds": round(seconds, 2), "reference_rows": rows,
            "spark_over_reference": round(spark_seconds / seconds, 2)}


def _mb(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def run(spark: SparkSession, config: Config, *, sizes: Sequence[int] | None = None, keep: bool = False,
        references_up_to: int = 0, until: str = DATA_STAGES[-1], wide_bytes: bool = False,
        sink_share: bool = False) -> list[dict]:
    """Every data stage (up to `until`) at each event count in `sizes` (default:
    benchmark.scale_sizes); `keep` keeps each size's tables (they are removed after, since 10^8
    events take tens of GB); `references_up_to`: time the single-process references at the sizes up
    to this many events; `wide_bytes`: the bytes per example of input layout 1 on the same samples;
    `sink_share`: build-training-set's job without its write (`sink_share`)."""
    if until not in DATA_STAGES:
        raise ValueError(f"until: {until!r} is not a data stage ({', '.join(DATA_STAGES)})")
    sizes = tuple(sizes or config.benchmark.scale_sizes)
    share = config.benchmark.scale_sample_share
    out_dir = Path(config.benchmark.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results: list[dict] = []
    for events in sizes:
        folder = out_dir / "scale" / f"n{events}"
        for result in benchmark_size(spark, config, events, folder, share, references=events <= references_up_to,
                                     until=until, wide_bytes=wide_bytes, sink_share=sink_share):
            with open(out_dir / "scale.jsonl", "a", encoding="utf-8") as sink:
                sink.write(json.dumps(result) + "\n")
            results.append(result)
        if not keep:
            shutil.rmtree(folder, ignore_errors=True)
    print(format_table(results), flush=True)
    _plot(results, out_dir / "scale.png")
    return results


def format_table(results: Sequence[dict]) -> str:
    header = (f"{'events':>12} {'stage':<19} {'seconds':>8} {'rows in':>12} {'rows out':>12} {'B/row':>7} "
              f"{'jvm MB':>7} {'py MB':>7} {'spill MB':>9} {'ref s':>7} {'÷ref':>5}")
    lines = [header, "-" * len(header)]
    sizes = sorted({r["events"] for r in results})
    for events in sizes:
        for r in (r for r in results if r["events"] == events):
            lines.append(f"{r['events']:>12,} {r['stage']:<19} {r['seconds']:>8.1f} {_n(r['rows_in']):>12} "
                         f"{_n(r['rows_out']):>12} {_n(r.get('bytes_per_row_out')):>7} {_n(r['peak_jvm_mb']):>7} "
                         f"{_n(r['peak_python_workers_mb']):>7} "
                         f"{_n(r['spilled_mb']):>9} {_ratio(r.get('reference_seconds'), 1):>7} "
                         f"{_ratio(r.get('spark_over_reference'), 2):>5}")
        seconds = {r["stage"]: r["seconds"] for r in results if r["events"] == events}
        lines.append(f"{events:>12,} {'total':<19} {sum(seconds.values()):>8.1f}")
        if seconds.get("retrieve") and "build-training-set" in seconds:
            # Assembling examples against retrieving their candidates, on the same samples.
            ratio = seconds["build-training-set"] / seconds["retrieve"]
            lines.append(f"{events:>12,} {'training-set÷retr.':<19} {ratio:>8.2f}")
        for r in (r for r in results if r["events"] == events and r.get("noop_sink_seconds")):
            # The same job without its write: what the Parquet/Delta write and the bookkeeping cost.
            lines.append(f"{events:>12,} {'training-set, noop':<19} {r['noop_sink_seconds']:>8.1f}  "
                         f"the stage without its write: {r['noop_sink_seconds'] / r['seconds']:.2f} of its time")
        for r in (r for r in results if r["events"] == events and r.get("wide_bytes_per_row")):
            # The same examples in input layout 1: what layout 2's bytes per row compare with.
            lines.append(f"{events:>12,} {'layout-1 B/row':<19} {r['wide_bytes_per_row']:>8,.1f}  "
                         f"layout 2 ÷ layout 1: {r['narrow_over_wide']:.3f}")
    if len(sizes) > 1:
        lines.append(growth_lines(results, sizes[-2], sizes[-1]))
    return "\n".join(lines)


def growth_lines(results: Sequence[dict], small: int, large: int) -> str:
    """Each stage's time ratio from `small` to `large` events over the events ratio (1.00 = linear),
    and the total against a linear extrapolation."""
    def seconds(events: int) -> dict[str, float]:
        return {r["stage"]: r["seconds"] for r in results if r["events"] == events}

    before, after = seconds(small), seconds(large)
    factor = large / small
    parts = [f"{stage} {after[stage] / before[stage] / factor:.2f}" for stage in after if before.get(stage)]
    total = sum(after.values()) / (sum(before.values()) * factor)
    return (f"growth from {small:,} to {large:,} events (time ratio / events ratio; 1.00 = linear): "
            + ", ".join(parts) + f"; total {total:.2f}x of a linear extrapolation")


def _ratio(value: float | None, digits: int) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _n(value) -> str:
    if value is None:
        return ""
    return f"{value:,.0f}" if isinstance(value, (int, float)) else str(value)


def _plot(results: Sequence[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.5))
    try:
        for stage in (s.name for s in SCALED_STAGES):
            points = sorted((r["events"], r["seconds"]) for r in results if r["stage"] == stage)
            if points:
                axis.plot(*zip(*points), marker="o", label=stage)
        axis.set_xscale("log"), axis.set_yscale("log")
        axis.set_xlabel("events"), axis.set_ylabel("seconds")
        axis.set_title("r2led benchmark scale: seconds per stage")
        axis.legend(fontsize=8)
        figure.tight_layout()
        figure.savefig(path, dpi=120)
    finally:
        plt.close(figure)


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", type=int, nargs="+", default=None,
                        help="event counts to run (default: benchmark.scale_sizes)")
    parser.add_argument("--keep", action="store_true", help="keep each size's tables (default: removed after)")
    parser.add_argument("--until", choices=DATA_STAGES, default=DATA_STAGES[-1],
                        help="the last stage to run (default: build-training-set)")
    parser.add_argument("--wide-bytes", action="store_true",
                        help="also write build-training-set's examples in input layout 1 (every slot's category, "
                             "SID codes and mask, BIGINT arrays) and print its bytes per row beside layout 2's")
    parser.add_argument("--sink-share", action="store_true",
                        help="also time build-training-set's job into Spark's noop sink (everything but the "
                             "write) on the same tables")
    parser.add_argument("--references-up-to", type=int, default=0, metavar="EVENTS",
                        help="also time the single-process references of collab-vectors, retrieve and "
                             "build-training-set at the sizes up to EVENTS (default 0: none; a reference holds "
                             "its stage's inputs in memory)")


def main(argv: Sequence[str] | None = None) -> int:
    return spark_job_main(argv, "benchmark scale", "Every Spark data stage at growing sizes: time, rows, memory.",
                          run, _add_arguments)


if __name__ == "__main__":
    sys.exit(main())
