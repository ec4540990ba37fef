"""`r2led report oracle`: the ceiling of an oracle-scored world, on the exact rows a model is scored on.

Per split of `training_examples` (valid, test): the oracle's AUC / GAUC / LogLoss, each partial
oracle's AUC and share of the oracle's lift (the interest relation alone; it plus item quality; it
plus each item's quality as far as its training clicks reveal it), and how many training impressions
an item has. The last partial oracle is what a model that knew every user's interests exactly could
reach by learning quality from the rows it trains on: a lift target above it is out of any model's
reach on this world.

Then the world's shape on the test rows, from the tables a model reads: rows and users, the history
length before each sample against `training_set.long_history`, the share of targets with no training
impression (cold), the shares whose relation only a dormant interest gives (and of those, how many
have every visit of that interest outside the newest `long_history` behaviours: at least that many
behaviours since `synthetic.dormant_after`'s cut, before which all of a dormant interest's visits lie),
of community targets and of targets with a degraded title, and the scale of a paired difference: the
user-bootstrap SE of the oracle's AUC minus the interest relation's on the same rows (what two models
must differ by to be told apart). Writes `<workspace>/reports/oracle/report.json`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from jobs.ingest.oracle_truth import load_oracle_truth, load_sample_truth
from jobs.runtime.entrypoint import spark_job_main
from jobs.runtime.tables import TableStore
from jobs.training.reference_rows import REFERENCE_LABELS, reference_metrics
from r2led_model.config import Config
from r2led_model.evaluation.paired_bootstrap import paired_auc_difference
from r2led_model.worlds.oracle import OracleTruth, lift_share, oracle_metrics
from r2led_model.worlds.synthetic import dormant_from

PART_LABELS = {
    "relation": "interest relation alone",
    "relation_quality": "relation + item quality",
    "relation_community": "relation + community membership",
    "relation_clicks_quality": "relation + quality as the training clicks reveal it",
}
# User-bootstrap replicates of the paired-difference scale: enough for an SE to ~5%.
SHAPE_BOOTSTRAP_REPS = 200


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
    report["shape"] = world_shape(spark, config, truth)
    references = reference_metrics(spark, config)
    if references is not None:
        for name, by_split in references.items():
            for split, metrics in by_split.items():
                metrics["lift"] = lift_share(metrics["auc"], report[split]["auc"])
        report["references"] = references
    return report


def _share(mask: np.ndarray) -> float | None:
    return float(np.mean(mask)) if np.size(mask) else None


def world_shape(spark: SparkSession, config: Config, truth: OracleTruth) -> dict:
    """The test rows' shape (module docstring): counts, history length, cold, dormant, community and
    noisy-title target shares, and the paired-difference scale. A share the world's truth cannot give
    (a world generated before its column existed) is None."""
    store = TableStore(spark, config.tables)
    examples = store.read("training_examples")
    test = (examples.where(F.col("split") == "test")
            .select("sample_id", "user_id", "label", "hist_len", "target_item").toPandas())
    trained = examples.where(F.col("split") == "train").select("target_item").distinct()
    trained_items = trained.toPandas()["target_item"].to_numpy()
    window = config.training_set.long_history
    hist_len = test["hist_len"].to_numpy()
    shape: dict = {
        "test_rows": int(len(test)), "test_users": int(test["user_id"].nunique()), "long_history": window,
        "hist_len_median": float(np.median(hist_len)) if hist_len.size else None,
        "hist_len_p90": float(np.percentile(hist_len, 90)) if hist_len.size else None,
        "beyond_window_share": _share(hist_len > window),
        "cold_target_share": _share(~np.isin(test["target_item"].to_numpy(), trained_items)),
        "dormant_target_share": None, "dormant_beyond_window_share": None,
        "community_target_share": None, "noisy_text_target_share": None,
    }
    segments = load_sample_truth(spark, config)
    if segments is not None and len(test):
        rows = test.merge(segments, on="sample_id", how="left")
        if "dormant_target" in rows:
            dormant = rows["dormant_target"].fillna(False).to_numpy(dtype=bool)
            shape["dormant_target_share"] = _share(dormant)
            if dormant.any():
                since = _behaviours_since(spark, config, dormant_from(config.synthetic),
                                          rows.loc[dormant, "user_id"].to_numpy(), hist_len[dormant])
                shape["dormant_beyond_window_share"] = _share(since >= window)
        if "community" in rows:
            shape["community_target_share"] = _share(rows["community"].fillna(False).to_numpy(dtype=bool))
        if "text_noisy" in rows:
            shape["noisy_text_target_share"] = _share(rows["text_noisy"].fillna(False).to_numpy(dtype=bool))
    shape["oracle_vs_relation"] = _paired_scale(truth, test)
    return shape


def _behaviours_since(spark: SparkSession, config: Config, cut: int, users: np.ndarray,
                      hist_len: np.ndarray) -> np.ndarray:
    """(n,) history behaviours between `cut` (epoch s) and each sample: its hist_len minus the user's
    history behaviours before the cut. users, hist_len: (n,) per sample."""
    behaviors = config.sequences.history_behaviors
    events = TableStore(spark, config.tables).read("events").where(F.col("ts") < F.lit(int(cut)))
    if behaviors:
        events = events.where(F.col("behavior").isin(list(behaviors)))
    before = events.groupBy("user_id").count().toPandas()
    earlier = pd.Series(before["count"].to_numpy(), index=before["user_id"].to_numpy())
    return hist_len - earlier.reindex(users).fillna(0).to_numpy(dtype=np.int64)


def _paired_scale(truth: OracleTruth, test: pd.DataFrame) -> dict | None:
    """The oracle's AUC minus the interest relation's on the test rows, with its user-bootstrap SE and
    95% interval: the scale of a paired difference on this split."""
    if "relation" not in truth.parts or test.empty or test["label"].nunique() < 2:
        return None
    ids = test["sample_id"].to_numpy()
    result = paired_auc_difference(users=test["user_id"].to_numpy(), labels=test["label"].to_numpy(),
                                   scores_a=truth.lookup(ids), scores_b=truth.lookup(ids, "relation"),
                                   reps=SHAPE_BOOTSTRAP_REPS, seed=0, level=0.95)
    return {"difference": result.difference, "se": result.se, "low": result.low, "high": result.high,
            "reps": result.reps}


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
    if "references" in report:
        lines.append("content features alone (point-in-time logistic regressions on topic counts, fitted on the "
                     "training rows; the planted taxonomy, then the item's SID prefixes):")
        for name, by_split in report["references"].items():
            cells = "  ".join(f"{split} AUC {m['auc']:.4f} lift {m['lift']:.3f}" for split, m in by_split.items())
            lines.append(f"  {REFERENCE_LABELS[name]:<52} {cells}")
    if "shape" in report:
        lines += format_shape(report["shape"])
    return "\n".join(lines)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def format_shape(shape: dict) -> list[str]:
    window = shape["long_history"]
    median = "n/a" if shape["hist_len_median"] is None else f"{shape['hist_len_median']:.0f}"
    p90 = "n/a" if shape["hist_len_p90"] is None else f"{shape['hist_len_p90']:.0f}"
    lines = [f"world shape (test): {shape['test_rows']:,} rows from {shape['test_users']:,} users",
             f"  history length: median {median}, p90 {p90}; "
             f"{_pct(shape['beyond_window_share'])} of rows longer than the {window}-behaviour window",
             f"  cold targets (no training impression): {_pct(shape['cold_target_share'])}",
             f"  dormant-interest targets: {_pct(shape['dormant_target_share'])}; of them every visit of the "
             f"interest beyond the window: {_pct(shape['dormant_beyond_window_share'])}",
             f"  community targets: {_pct(shape['community_target_share'])}; "
             f"noisy-title targets: {_pct(shape['noisy_text_target_share'])}"]
    paired = shape.get("oracle_vs_relation")
    if paired is not None:
        lines.append(f"  paired scale: oracle - relation AUC {paired['difference']:+.4f}, user-bootstrap SE "
                     f"{paired['se']:.4f} (95% {paired['low']:+.4f} .. {paired['high']:+.4f}, {paired['reps']} reps)")
    return lines


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
