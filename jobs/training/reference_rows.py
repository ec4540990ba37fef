"""What content features alone reach: the point-in-time logistic regressions of
`r2led_model.worlds.reference_lr`, fitted on a world's training samples and scored on the same valid and test
rows as every model.

History is the world's history behaviours (`sequences.history_behaviors` of `events`), samples are the
`samples` table's labelled rows that made it into `training_examples` (no sampled negatives). Two views of
an item's content, each with and without the item's target encoding (its ID view):

* ``planted``: the world's planted taxonomy (truth). Not a model a pipeline could ship: it says what the
  item text's information is worth before any text noise.
* ``sid``: the item's SID prefixes (`item_sids`), the same SID-level information R2LED's routes read. A
  deployable model: a sequence model that does not beat it has not earned its architecture.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from jobs.ingest.sources.synthetic import read_truth
from jobs.runtime.tables import TableStore
from r2led_model.config import Config
from r2led_model.evaluation.metrics import evaluate
from r2led_model.worlds.reference_lr import (ReferenceScores, build_reference_features, fit_reference,
                                             sid_prefix_topics)


@dataclass(frozen=True)
class Reference:
    """One reference regression: its topics' source and whether it reads the item's target encoding."""

    name: str
    topics: str  # "planted" (truth) or "sid" (the item's SID prefixes)
    with_item_encoding: bool
    label: str  # how report oracle names it
    variant: str  # how benchmark models names its saved predictions


REFERENCES = (
    Reference("topic_counts", "planted", False, "LR on planted-topic counts + user click rate", "lr planted"),
    Reference("topic_counts_item_encoding", "planted", True, "the same + the item's target encoding",
              "lr planted+te"),
    Reference("sid_counts", "sid", False, "LR on SID-prefix counts + user click rate", "lr sid"),
    Reference("sid_counts_item_encoding", "sid", True, "the same on SID prefixes + the item's target encoding",
              "lr sid+te"),
)
REFERENCE_LABELS = {r.name: r.label for r in REFERENCES}
# What the residual check stacks on a model's logit: the item's ID view, the user's click rate, and the counts of
# the user's behaviours sharing the target's SID prefixes over the whole history (routes keep only k of them).
CONTENT_FEATURES = ("item_ctr", "log1p_item_impressions", "user_ctr", "log1p_same_l1", "log1p_same_l2",
                    "log1p_same_l3", "log1p_history")


@dataclass(frozen=True)
class ReferenceInputs:
    """What every reference reads, collected once: history, labelled samples, and each topic source."""

    history: pd.DataFrame  # user_id, item_id, ts
    samples: pd.DataFrame  # sample_id, user_id, item_id, ts, label, split
    topics: dict[str, pd.DataFrame]  # topic source → item_id, topic_l1..l3


def reference_inputs(spark: SparkSession, config: Config) -> ReferenceInputs:
    """The world's history, its labelled samples and the topic sources it has (SID prefixes always, the
    planted taxonomy where the world has truth)."""
    store = TableStore(spark, config.tables)
    behaviours = list(config.sequences.history_behaviors)
    events = store.read("events")
    if behaviours:
        events = events.where(F.col("behavior").isin(behaviours))
    history = events.select("user_id", "item_id", "ts").toPandas()
    kept = store.read("training_examples").select("sample_id")
    samples = (store.read("samples").where(~F.col("is_sampled_negative")).join(kept, "sample_id")
               .select("sample_id", "user_id", "item_id", "ts", "label", "split").toPandas())
    sids = store.read("item_sids").select("item_id", "semantic_codes").toPandas()
    codes = np.stack(sids["semantic_codes"].to_numpy()) if len(sids) else np.zeros((0, 3), np.int64)  # (I, L)
    topics = {"sid": sid_prefix_topics(item_ids=sids["item_id"].to_numpy(), codes=codes)}
    items = read_truth(spark, config, "items")
    if items is not None:
        topics["planted"] = items.select("item_id", "topic_l1", "topic_l2", "topic_l3").toPandas()
    return ReferenceInputs(history=history, samples=samples, topics=topics)


def fit_references(inputs: ReferenceInputs) -> dict[Reference, ReferenceScores]:
    """Every reference whose topic source the world has, fitted on its training rows."""
    return {ref: fit_reference(history=inputs.history, samples=inputs.samples, item_topics=inputs.topics[ref.topics],
                               with_item_encoding=ref.with_item_encoding)
            for ref in REFERENCES if ref.topics in inputs.topics}


def scores_for(fitted: ReferenceScores, sample_ids: np.ndarray) -> np.ndarray:
    """The fitted reference's probabilities for `sample_ids` (every one a valid or test row it scored)."""
    order = np.argsort(fitted.sample_ids, kind="stable")  # the fitted rows by sample id, for one searchsorted
    at = np.searchsorted(fitted.sample_ids, sample_ids, sorter=order)
    at = order[np.minimum(at, order.size - 1)]
    if not np.array_equal(fitted.sample_ids[at], sample_ids):
        raise ValueError("reference_rows: some rows were not scored by the reference (not valid/test rows)")
    return fitted.scores[at]


def content_features(inputs: ReferenceInputs, split: str) -> pd.DataFrame:
    """sample_id and `CONTENT_FEATURES` (point in time, training labels only; counts over SID prefixes) of every
    row of `split`."""
    frame = build_reference_features(history=inputs.history, samples=inputs.samples,
                                     item_topics=inputs.topics["sid"], with_item_encoding=True)
    rows = inputs.samples["split"].eq(split).to_numpy()
    return frame.loc[rows, ["sample_id", *CONTENT_FEATURES]].reset_index(drop=True)


def reference_metrics(spark: SparkSession, config: Config) -> dict[str, dict[str, dict]] | None:
    """{reference name: {split: {auc, gauc, logloss, n}}} for the valid and test rows of `training_examples`;
    None for a world without planted topics (report oracle's worlds have them)."""
    if read_truth(spark, config, "items") is None:
        return None
    inputs = reference_inputs(spark, config)
    out: dict[str, dict[str, dict]] = {}
    for ref, fitted in fit_references(inputs).items():
        out[ref.name] = {}
        for split in ("valid", "test"):
            rows = inputs.samples[inputs.samples["split"].eq(split)]
            out[ref.name][split] = evaluate(rows["user_id"].to_numpy(), rows["label"].to_numpy(),
                                            scores_for(fitted, rows["sample_id"].to_numpy()))
    return out
