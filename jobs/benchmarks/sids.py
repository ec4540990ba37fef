"""`r2led benchmark sids`: SID assignment throughput and SID quality.

Throughput: `--vectors` (default 10^6) synthetic vectors of the codebook's input width are
written to Parquet once (not timed); then Spark reads and assigns them with the broadcast
codebook (`assign_sids.semantic_codes`, results discarded through the noop sink) and, in the same
run, a single-process numpy reference reads the same file and calls `Codebook.assign_codes`.
Both must produce the same codes (checked on a sample).

Quality: the full SID stages (ingest → embed-items → train-codebook → assign-sids → report) on
MovieLens-100K (env `local`) and on the planted synthetic world (env `synthetic`), each in its
own folder under `<benchmark.output_dir>/sids/`; prints usage, collision rates and, on synthetic
data, the NMI of each prefix level against the planted taxonomy.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from pyspark.sql import SparkSession

from jobs.ingest import generate, ingest
from jobs.runtime.entrypoint import (ConfigSource, dataset_envs, dataset_label, flags_and_source, load_dataset_config,
                                     spark_job_main)
from jobs.sids import assign_sids, embed_items, report_sids, train_codebook
from r2led_model.config import Config, SyntheticSourceConfig, TablesConfig
from r2led_model.sids import codebook_store
from r2led_model.sids.codebook import Codebook
from r2led_model.sids.rqvae import export_codebook, train_rqvae

log = logging.getLogger(__name__)

QUALITY_ENVS = ["local", "synthetic"]
THROUGHPUT_VECTORS = 1_000_000


def _random_vectors(dim: int, seed: int):
    def make(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            ids = batch["id"].to_numpy()
            rng = np.random.default_rng([seed, int(ids[0]) if len(ids) else 0])
            vectors = rng.normal(size=(len(ids), dim)).astype(np.float32)  # (n, dim)
            yield pd.DataFrame({"item_id": ids, "vector": list(vectors)})
    return make


def benchmark_throughput(spark: SparkSession, config: Config, count: int, folder: Path) -> dict:
    codebook = _throughput_codebook(config)
    path = folder / f"vectors-{count}-{codebook.input_dim}.parquet"
    if not path.exists():
        (spark.range(0, count, numPartitions=max(2, count // 200_000))
         .mapInPandas(_random_vectors(codebook.input_dim, seed=11), "item_id BIGINT, vector ARRAY<FLOAT>")
         .write.mode("overwrite").parquet(str(path)))

    started = time.perf_counter()
    codes = assign_sids.semantic_codes(spark, spark.read.parquet(str(path)), codebook)
    codes.write.format("noop").mode("overwrite").save()
    spark_s = time.perf_counter() - started

    started = time.perf_counter()
    table = pq.read_table(path)
    flat = table.column("vector").combine_chunks().flatten().to_numpy()
    vectors = flat.reshape(table.num_rows, codebook.input_dim)  # (N, dim)
    reference = codebook.assign_codes(vectors)
    reference_s = time.perf_counter() - started

    ids = table.column("item_id").to_numpy()
    sample = codes.orderBy("item_id").limit(2000).toPandas()
    order = np.argsort(ids)
    agree = bool(np.array_equal(np.stack(sample["semantic_codes"].to_numpy()),
                                reference[order][:len(sample)]))
    return {"bench": "sids_throughput", "vectors": count, "dim": codebook.input_dim, "levels": codebook.levels,
            "codebook_size": codebook.codebook_size, "spark_s": round(spark_s, 2),
            "reference_s": round(reference_s, 2), "spark_items_per_s": round(count / spark_s),
            "reference_items_per_s": round(count / reference_s),
            "spark_over_reference": round(spark_s / reference_s, 2), "codes_agree_on_sample": agree,
            "cores": os.cpu_count()}


def _throughput_codebook(config: Config) -> Codebook:
    """The current codebook if there is one, else a quick one on random 384-d vectors."""
    try:
        return codebook_store.load(config.codebook.store_dir)
    except FileNotFoundError:
        vectors = np.random.default_rng(0).normal(size=(4000, 384)).astype(np.float32)
        model, _ = train_rqvae(vectors, replace(config.codebook, epochs=2))
        return export_codebook(model)


def benchmark_quality(spark: SparkSession, env: str, folder: Path, source: ConfigSource = ConfigSource()) -> dict:
    shutil.rmtree(folder / "tables", ignore_errors=True)
    config = load_dataset_config(source, env, [f"workspace.root={folder}"])
    config = replace(config, tables=TablesConfig(backend="path", root=str(folder / "tables")))
    if config.source.kind == "synthetic":
        config = replace(config, source=replace(config.source, synthetic=SyntheticSourceConfig(
            path=str(folder / "raw"))))
        generate.run(spark, config)
    ingest.run(spark, config)
    embed_items.run(spark, config)
    trained = train_codebook.run(spark, config)
    assign_sids.run(spark, config)
    report = report_sids.run(spark, config)
    return {"bench": "sids_quality", "env": dataset_label(source, env), "source": config.source.kind,
            "items": int(report.metrics["num_items"]),
            "levels": report.levels, "codebook_size": report.codebook_size, "codebook_version": trained.version,
            "collision_rate": round(report.metrics["collision_rate"], 4),
            "collision_rate_after_dedup": round(report.collision_rate_after_dedup, 4),
            **{f"usage_l{level}": round(report.metrics[f"usage_l{level}"], 3) for level in range(1, report.levels + 1)},
            "reconstruction_mse": round(trained.metrics["reconstruction_mse"], 5),
            # A level-l prefix against the planted level-l topic (synthetic data only).
            **{f"nmi_l{level}": round(report.nmi[key], 3) for level in (1, 2)
               if (key := f"taxonomy level {level} vs level-{level} prefix") in report.nmi}}


def run(spark: SparkSession, config: Config, *, source: ConfigSource = ConfigSource(),
        vectors: int = THROUGHPUT_VECTORS, skip_throughput: bool = False,
        quality_envs: Sequence[str] | None = None) -> list[dict]:
    """Assignment throughput on `vectors` random vectors, then SID quality on each of `quality_envs`
    (default: QUALITY_ENVS, or with a --config in `source` the command's own env)."""
    out = Path(config.benchmark.output_dir)
    results = []
    if not skip_throughput:
        results.append(benchmark_throughput(spark, config, vectors, out / "sids"))
        print(json.dumps(results[-1]), flush=True)
    for env in dataset_envs(source, quality_envs, QUALITY_ENVS):
        results.append(benchmark_quality(spark, env, out / "sids" / f"quality-{dataset_label(source, env)}", source))
        print(json.dumps(results[-1]), flush=True)
    with open(out / "sids.jsonl", "a", encoding="utf-8") as sink:
        for result in results:
            sink.write(json.dumps(result) + "\n")
    print(format_table(results), flush=True)
    return results


def format_table(results: Sequence[dict]) -> str:
    lines = []
    for r in (r for r in results if r["bench"] == "sids_throughput"):
        lines += [f"assignment of {r['vectors']:,} x {r['dim']}-d vectors (L={r['levels']}, K={r['codebook_size']}):",
                  f"  spark {r['spark_s']:.1f} s ({r['spark_items_per_s']:,} items/s)   numpy {r['reference_s']:.1f} s "
                  f"({r['reference_items_per_s']:,} items/s)   spark/numpy {r['spark_over_reference']:.2f}   "
                  f"codes agree: {r['codes_agree_on_sample']}"]
    quality = [r for r in results if r["bench"] == "sids_quality"]
    if quality:
        lines.append(f"{'data':<16} {'items':>7} {'L':>2} {'K':>4} {'collide':>8} {'after':>6} {'usage l1..L':>18} "
                     f"{'NMI l1, l2 vs planted':>22}")
        for r in quality:
            usage = " ".join(f"{r[f'usage_l{level}']:.2f}" for level in range(1, r["levels"] + 1))
            nmi = " ".join(f"{r[k]:.3f}" for k in sorted(k for k in r if k.startswith("nmi_l"))) or "-"
            lines.append(f"{r['source']:<16} {r['items']:>7,} {r['levels']:>2} {r['codebook_size']:>4} "
                         f"{r['collision_rate']:>8.2%} {r['collision_rate_after_dedup']:>6.2%} {usage:>18} {nmi:>22}")
    return "\n".join(lines)


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--vectors", type=int, default=THROUGHPUT_VECTORS, help="vectors for the throughput part")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--quality-envs", nargs="*", default=None,
                        help=f"config envs whose data the quality part runs on, each with --config over it "
                             f"(default: {' '.join(QUALITY_ENVS)}; with --config: --env, i.e. base unless named)")


def main(argv: Sequence[str] | None = None) -> int:
    return spark_job_main(argv, "benchmark sids", "SID assignment throughput and SID quality.", run, _add_arguments,
                          keywords=flags_and_source)


if __name__ == "__main__":
    sys.exit(main())
