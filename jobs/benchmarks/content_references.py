"""`benchmark models`' content-feature references: the point-in-time regressions of
`jobs.training.reference_rows`, scored on the benchmark's own test rows and saved like a variant's predictions.

Each reference is deterministic, so every seed's file holds the same scores: it pairs with any variant on
the same rows (`--pair 'r2led' 'lr sid+te'`) and its seed spread is 0. The test rows' content features are
saved beside them for the residual check (`residual_rows`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from jobs.benchmarks.paired_evaluation import prediction_path, save_predictions
from jobs.benchmarks.residual_rows import save_content_features
from jobs.runtime.tables import TableStore
from jobs.training.reference_rows import Reference, content_features, fit_references, reference_inputs, scores_for
from r2led_model.config import Config
from r2led_model.evaluation.metrics import evaluate
from r2led_model.training.trainer import RowPredictions

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReferenceRun:
    """One reference scored on the benchmark's splits."""

    reference: Reference
    valid: dict  # evaluate(...) on the valid rows
    test: RowPredictions  # the test rows, in the order of training_examples' test sample ids
    fit_s: float


def run_references(spark: SparkSession, config: Config, folder: Path, seeds: Sequence[int]) -> list[ReferenceRun]:
    """Every reference the world has, fitted once and scored on the test rows of `training_examples`; each
    seed's predictions and the test rows' content features saved under `folder`. [] when the references
    cannot score exactly those rows (sampled negatives in the test split)."""
    test_ids = np.sort(TableStore(spark, config.tables).read("training_examples").where(F.col("split") == "test")
                       .select("sample_id").toPandas()["sample_id"].to_numpy())
    started = time.perf_counter()
    inputs = reference_inputs(spark, config)
    samples = inputs.samples.sort_values("sample_id")
    test = samples[samples["split"].eq("test")]
    if not np.array_equal(test["sample_id"].to_numpy(), test_ids):
        log.warning("references: the test split holds rows the references do not score (sampled negatives); "
                    "skipped")
        return []
    valid = samples[samples["split"].eq("valid")]
    fitted = fit_references(inputs)
    fit_s = (time.perf_counter() - started) / max(len(fitted), 1)
    runs = []
    for reference, scores in fitted.items():
        rows = RowPredictions(sample_ids=test_ids, users=test["user_id"].to_numpy(),
                              labels=test["label"].to_numpy().astype(np.float32),
                              probs=scores_for(scores, test_ids).astype(np.float32))
        for seed in seeds:
            save_predictions(prediction_path(folder, reference.variant, seed), rows)
        runs.append(ReferenceRun(reference=reference, test=rows, fit_s=fit_s,
                                 valid=evaluate(valid["user_id"].to_numpy(), valid["label"].to_numpy(),
                                                scores_for(scores, valid["sample_id"].to_numpy()))))
    save_content_features(folder, content_features(inputs, "test"))
    return runs
