"""`r2led report retrieval`: what the routes retrieve (also callable from a notebook).

For every route over all samples: the share of samples with a non-empty pool and the mean pool
size. On synthetic data, also the precision of retrieved behaviours against the planted interest
of the target (a behaviour is on-interest when its item's level-2 topic is the target item's),
measured on up to `--samples` positive samples, beside SIM-hard (same category), last-k recency
and the `collab` route, which is ETA-style SimHash top-k over the whole history.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from jobs.ingest.sources.synthetic import read_truth
from jobs.retrieval.table_shapes import candidate_column, candidate_routes
from jobs.runtime.entrypoint import spark_job_main
from jobs.runtime.tables import TableStore
from r2led_model.config import Config
from r2led_model.retrieval.multi_route import Targets, UserHistory, retrieve_recent, retrieve_sim_hard
from r2led_model.tracking.runs import tracked_run

log = logging.getLogger(__name__)

# Positive samples the precision part reads (a sample of them: the report stays cheap on big tables).
PRECISION_SAMPLES = 20_000


@dataclass
class RouteStats:
    name: str
    non_empty_share: float
    mean_pool: float | None = None
    precision: float | None = None
    mean_retrieved: float | None = None


@dataclass
class RetrievalReport:
    samples: int
    k: int
    routes: list[RouteStats] = field(default_factory=list)
    precision_samples: int = 0

    def summary(self) -> str:
        lines = [f"retrieval over {self.samples:,} samples (k={self.k}); precision on {self.precision_samples:,} "
                 "positive samples vs the planted interest" if self.precision_samples else
                 f"retrieval over {self.samples:,} samples (k={self.k})",
                 f"  {'route':<22} {'non-empty':>9} {'mean pool':>10} {'retrieved':>9} {'precision':>9}"]
        for r in self.routes:
            pool = f"{r.mean_pool:.1f}" if r.mean_pool is not None else "-"
            got = f"{r.mean_retrieved:.1f}" if r.mean_retrieved is not None else "-"
            precision = f"{r.precision:.3f}" if r.precision is not None else "-"
            lines.append(f"  {r.name:<22} {r.non_empty_share:>9.1%} {pool:>10} {got:>9} {precision:>9}")
        return "\n".join(lines)


def _precision(retrieved: np.ndarray, mask: np.ndarray, topics: pd.Series, target_topics: np.ndarray) -> tuple[float, float, float]:
    """(precision over samples with ≥1 candidate, share non-empty, mean retrieved) for item ids (S, k)."""
    topic = topics.reindex(retrieved.ravel()).to_numpy().reshape(retrieved.shape)  # (S, k)
    hits = (topic == target_topics[:, None]) & mask
    counts = mask.sum(axis=1)
    has = counts > 0
    precision = float((hits.sum(axis=1)[has] / counts[has]).mean()) if has.any() else float("nan")
    return precision, float(has.mean()), float(counts.mean())


def build_retrieval_report(spark: SparkSession, config: Config,
                           max_samples: int = PRECISION_SAMPLES) -> RetrievalReport:
    store = TableStore(spark, config.tables)
    candidates = store.read("route_candidates")
    routes = candidate_routes(candidates.columns)
    aggregates = candidates.agg(F.count("*").alias("n"), *[
        F.avg((F.col(candidate_column(r, "pool")) > 0).cast("double")).alias(f"{r}_share") for r in routes], *[
        F.avg(candidate_column(r, "pool")).alias(f"{r}_pool") for r in routes]).first()
    report = RetrievalReport(samples=int(aggregates["n"]), k=config.retrieval.k, routes=[
        RouteStats(name=r, non_empty_share=float(aggregates[f"{r}_share"]), mean_pool=float(aggregates[f"{r}_pool"]))
        for r in routes])
    truth = read_truth(spark, config, "items")
    if truth is None:
        return report

    topics = truth.select("item_id", "topic_l2").toPandas().set_index("item_id")["topic_l2"]
    # The samples' own item (retrieve carries it too, in tables written since: one copy is kept).
    positives = (candidates.drop("item_id", "label")
                 .join(store.read("samples").where("label = 1 AND NOT is_sampled_negative")
                       .select("sample_id", "item_id"), "sample_id")
                 .orderBy(F.xxhash64("sample_id")).limit(max_samples).toPandas())
    report.precision_samples = len(positives)
    target_topics = topics.reindex(positives["item_id"]).to_numpy()
    by_name = {r.name: r for r in report.routes}
    for route in routes:
        items = np.stack(positives[candidate_column(route, "item")].to_numpy())  # (S, k)
        mask = np.stack(positives[candidate_column(route, "mask")].to_numpy())  # (S, k)
        precision, _, retrieved = _precision(items, mask, topics, target_topics)
        by_name[route].precision, by_name[route].mean_retrieved = precision, retrieved
        if route == "collab":
            by_name[route].name = "collab (ETA-style)"

    # Baselines computed here, on the same samples: SIM-hard (same category) and last-k recency.
    users = positives["user_id"].unique().tolist()
    sequences = store.read("user_sequences").where(F.col("user_id").isin(users)).toPandas().set_index("user_id")
    categories = store.read("items").select("item_id", "category_id").toPandas().set_index("item_id")["category_id"]
    k = config.retrieval.k
    baseline_items = {"sim-hard": [], "recent": []}
    baseline_masks = {"sim-hard": [], "recent": []}
    order = []
    for user, rows in positives.groupby("user_id"):
        seq = sequences.loc[user]
        item_ids = np.asarray(seq["item_ids"], dtype=np.int64)
        history = UserHistory(item_ids=item_ids, ts=np.asarray(seq["ts"], dtype=np.int64),
                              sid_codes=np.zeros((len(item_ids), 1), np.int64),
                              categories=categories.reindex(item_ids).fillna(-1).to_numpy(np.int64),
                              dropped=int(seq["dropped"]))
        targets = Targets(item_ids=rows["item_id"].to_numpy(np.int64), hist_len=rows["hist_len"].to_numpy(np.int64),
                          sid_codes=np.zeros((len(rows), 1), np.int64),
                          categories=categories.reindex(rows["item_id"]).fillna(-1).to_numpy(np.int64))
        for name, found in (("sim-hard", retrieve_sim_hard(history, targets, k)), ("recent", retrieve_recent(history, targets, k))):
            baseline_items[name].append(np.where(found.mask, item_ids[np.where(found.mask, found.positions, 0)], -1))
            baseline_masks[name].append(found.mask)
        order.append(rows.index.to_numpy())
    aligned = target_topics[np.concatenate(order)]
    for name in ("sim-hard", "recent"):
        precision, share, retrieved = _precision(np.concatenate(baseline_items[name]),
                                                 np.concatenate(baseline_masks[name]), topics, aligned)
        report.routes.append(RouteStats(name=name, non_empty_share=share, precision=precision, mean_retrieved=retrieved))
    return report


def run(spark: SparkSession, config: Config, *, samples: int = PRECISION_SAMPLES) -> RetrievalReport:
    report = build_retrieval_report(spark, config, samples)
    out = Path(config.workspace.root) / "reports" / "retrieval"
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(asdict(report), indent=2))
    with tracked_run(config, "report-retrieval", tags={"stage": "report-retrieval"}) as tracking:
        tracking.log_dict(asdict(report), "retrieval_report.json")
        metrics = {}
        for r in report.routes:
            key = r.name.split(" ")[0].replace("-", "_")
            metrics[f"{key}_non_empty"] = r.non_empty_share
            if r.precision is not None and not np.isnan(r.precision):
                metrics[f"{key}_precision"] = r.precision
        tracking.log_metrics(metrics)
    print(report.summary(), flush=True)
    return report


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--samples", type=int, default=PRECISION_SAMPLES,
                        help="positive samples for the precision part")


def main(argv: Sequence[str] | None = None) -> int:
    return spark_job_main(argv, "report retrieval", "Report on the retrieval routes.", run, _add_arguments)


if __name__ == "__main__":
    sys.exit(main())
