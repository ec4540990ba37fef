"""What content features alone reach on an oracle-scored world: the point-in-time logistic regressions of
`r2led_model.worlds.reference_lr`, fitted on the world's training samples and scored on the same valid and test
rows as every model.

History is the world's history behaviours (`sequences.history_behaviors` of `events`), samples are the
`samples` table's labelled rows (no sampled negatives), topics are the planted taxonomy of the truth's
items. Two rows: the planted-topic counts and the user's click rate, and the same with the item's target
encoding (its ID view). Neither is a model a pipeline could ship: the topics are planted truth.
"""

from __future__ import annotations

import numpy as np
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from jobs.ingest.sources.synthetic import read_truth
from jobs.runtime.tables import TableStore
from r2led_model.config import Config
from r2led_model.evaluation.metrics import evaluate
from r2led_model.worlds.reference_lr import fit_reference

REFERENCES = {"topic_counts": False, "topic_counts_item_encoding": True}  # name → with_item_encoding
REFERENCE_LABELS = {"topic_counts": "LR on planted-topic counts + user click rate",
                    "topic_counts_item_encoding": "the same + the item's target encoding"}


def reference_metrics(spark: SparkSession, config: Config) -> dict[str, dict[str, dict]] | None:
    """{reference name: {split: {auc, gauc, logloss, n}}} for the valid and test rows of `training_examples`;
    None for a world without planted topics."""
    items = read_truth(spark, config, "items")
    if items is None:
        return None
    store = TableStore(spark, config.tables)
    behaviours = list(config.sequences.history_behaviors)
    events = store.read("events")
    if behaviours:
        events = events.where(F.col("behavior").isin(behaviours))
    history = events.select("user_id", "item_id", "ts").toPandas()
    # The rows the models train and are scored on: samples that made it into training_examples.
    kept = store.read("training_examples").select("sample_id")
    samples = (store.read("samples").where(~F.col("is_sampled_negative")).join(kept, "sample_id")
               .select("sample_id", "user_id", "item_id", "ts", "label", "split").toPandas())
    topics = items.select("item_id", "topic_l1", "topic_l2", "topic_l3").toPandas()
    out: dict[str, dict[str, dict]] = {}
    for name, with_encoding in REFERENCES.items():
        fitted = fit_reference(history=history, samples=samples, item_topics=topics, with_item_encoding=with_encoding)
        order = np.argsort(fitted.sample_ids, kind="stable")  # the fitted rows by sample id, for one searchsorted
        out[name] = {}
        for split in ("valid", "test"):
            rows = samples[samples["split"].eq(split)]
            at = order[np.searchsorted(fitted.sample_ids, rows["sample_id"].to_numpy(), sorter=order)]
            out[name][split] = evaluate(rows["user_id"].to_numpy(), rows["label"].to_numpy(), fitted.scores[at])
    return out
