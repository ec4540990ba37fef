"""`r2led report oracle`: the ceiling of an oracle-scored world, on the exact rows a model is scored on.

Per split of `training_examples` (valid, test): the oracle's AUC / GAUC / LogLoss, each partial
oracle's AUC and share of the oracle's lift (the interest relation alone; it plus item quality; it
plus each item's quality as far as its training clicks reveal it), and how many training impressions
an item has. The last partial oracle is what a model that knew every user's interests exactly could
reach by learning quality from the rows it trains on: a lift target above it is out of any model's
reach on this world. Writes `<workspace>/reports/oracle/report.json`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from jobs.ingest.oracle_truth import load_oracle_truth
from jobs.runtime.entrypoint import spark_job_main
from jobs.runtime.tables import TableStore
from r2led_model.config import Config
from r2led_model.oracle import lift_share, oracle_metrics

PART_LABELS = {
    "relation": "interest relation alone",
    "relation_quality": "relation + item quality",
    "relation_clicks_quality": "relation + quality as the training clicks reveal it",
}


def build_oracle_report(spark: SparkSession, config: Config) -> dict:
    """{split: {auc, gauc, logloss, n, <part>_auc, <part>_lift}, "train_impressions_per_item": {...}}."""
    truth = load_oracle_truth(spark, config)
    if truth is None:
        raise ValueError(f"source.kind={config.source.kind!r}: the world has no click truth "
                         "(only `r2led generate` with synthetic.impressions.enabled writes one)")
    store = TableStore(spark, config.tables)
    examples = store.read("training_examples")
    report: dict = {}
    for split in ("valid", "test"):
        rows = examples.where(F.col("split") == split).select("sample_id", "user_id", "label").toPandas()
        metrics = oracle_metrics(truth, rows["sample_id"].to_numpy(), rows["user_id"].to_numpy(),
                                 rows["label"].to_numpy())
        if metrics is None:
            raise ValueError(f"some {split} rows have no truth: the tables are not from this world's log")
        for part in truth.parts:
            metrics[f"{part}_lift"] = lift_share(metrics[f"{part}_auc"], metrics["auc"])
        report[split] = metrics
    per_item = (examples.where(F.col("split") == "train").groupBy("target_item").count()
                .select("count").toPandas()["count"].to_numpy())
    items = store.read("item_index").count()
    counts = np.r_[per_item, np.zeros(max(items - per_item.size, 0), dtype=np.int64)]
    report["train_impressions_per_item"] = {
        "items": items, "with_any": int(per_item.size), "median": float(np.median(counts)),
        "mean": float(counts.mean()), "p90": float(np.percentile(counts, 90))}
    return report


def format_report(report: dict) -> str:
    lines = []
    for split in ("valid", "test"):
        m = report[split]
        lines.append(f"{split} ({m['n']:,} rows): oracle AUC {m['auc']:.4f}  GAUC {m['gauc']:.4f}  "
                     f"LogLoss {m['logloss']:.4f}")
        for part, label in PART_LABELS.items():
            if f"{part}_auc" in m:
                lines.append(f"  {label:<52} AUC {m[f'{part}_auc']:.4f}  lift {m[f'{part}_lift']:.3f}")
    per_item = report["train_impressions_per_item"]
    lines.append(f"train impressions per item: median {per_item['median']:.0f}, mean {per_item['mean']:.1f}, "
                 f"p90 {per_item['p90']:.0f}; {per_item['with_any']:,} of {per_item['items']:,} items have any")
    return "\n".join(lines)


def run(spark: SparkSession, config: Config) -> dict:
    report = build_oracle_report(spark, config)
    out = Path(config.workspace.root) / "reports" / "oracle"
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2))
    print(format_report(report), flush=True)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    return spark_job_main(argv, "report oracle", "Report the ceiling of an oracle-scored world.", run)


if __name__ == "__main__":
    sys.exit(main())
