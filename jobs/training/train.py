"""`r2led train`: fit the configured CTR model on `training_examples`, evaluate, log and register it.

Petastorm reads the live Parquet files of each split (the Delta snapshot's active files, never a
folder listing), only the columns the model reads, shuffled and sharded by rank. With
`training.num_processes > 1` the same worker runs under Spark's TorchDistributor (gloo; local
processes on a `local[...]` master, barrier tasks on executors otherwise); rank 0 returns the
weights and the epoch history, and the driver alone evaluates, logs and registers.

The MLflow run holds the resolved config, the Delta versions of the inputs, the codebook and
collaborative-vector versions, per-epoch metrics, test metrics, ROC / calibration / loss plots, and
the model (a models-from-code pyfunc, `r2led_model/tracking/pyfunc_model.py`, with its signature and pinned
requirements), registered under `registry.model_name`; for R2LED also what its gate and route fusion do
by target warmth (`diagnostics.json`, `plots/refinement.png`).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from pyspark.sql import SparkSession

from jobs.ingest.oracle_truth import load_oracle_truth
from jobs.registry.serving_catalog import serving_catalog
from jobs.runtime import commit_guard
from jobs.runtime.config_values import training_fingerprint
from jobs.runtime.entrypoint import spark_job_main
from jobs.runtime.stage_protocol import Scope, StageOutcome
from jobs.runtime.tables import TableStore
from jobs.training.training_data import TrainingData, training_data
from jobs.training.worker import (TrainJob, WorkerResult, evaluate_split, make_feed, run_distributed, train_worker,
                                  training_impressions)
from r2led_model.config import Config
from r2led_model.tracking.bundle import ModelBundle

log = logging.getLogger(__name__)

@dataclass
class TrainResult:
    model_name: str
    version: str
    run_id: str
    best_epoch: int
    valid: dict
    test: dict
    # R2LED's refinement diagnostics on the test split (`r2led_model.evaluation.diagnostics`), by target warmth;
    # None for other models and for a reused run.
    diagnostics: dict | None = None


def log_training_run(run, config: Config, data: TrainingData, worker: WorkerResult, valid: dict,
                     test_labels: np.ndarray, test_probs: np.ndarray, history_logged: bool) -> None:
    from r2led_model.evaluation.plots import calibration_figure, loss_curves_figure, roc_figure

    run.log_params(config.model.read_values())  # the other models' sections are at their defaults, unread
    run.log_params({f"training.{k}": v for k, v in dataclasses.asdict(config.training).items()})
    run.log_params({f"spec.{k}": v for k, v in data.spec.to_dict().items()})
    run.log_params({f"input.{k}": v for k, v in dataclasses.asdict(data.versions).items()})
    run.log_params({f"rows.{k}": v for k, v in data.rows.items()})
    for entry in [] if history_logged else worker.history:  # distributed runs log rank 0's history afterwards
        run.log_metrics({k: v for k, v in entry.items() if k != "epoch" and v is not None}, step=entry["epoch"])
    # The test_* metrics are logged with the model (`log_ctr_model`): to this run and to the logged model.
    run.log_metrics({"best_epoch": worker.best_epoch, "train_seconds": worker.seconds,
                     **{f"best_valid_{k}": v for k, v in valid.items()}})
    run.log_dict({"history": worker.history}, "history.json")
    run.log_figure(roc_figure(test_labels, test_probs, f"{config.model.name}: test ROC"), "plots/roc.png")
    run.log_figure(calibration_figure(test_labels, test_probs, f"{config.model.name}: calibration"),
                   "plots/calibration.png")
    run.log_figure(loss_curves_figure(worker.history), "plots/loss_curves.png")


def log_refinement(run, job: TrainJob, task) -> dict:
    """What the trained R2LED's gate and route fusion do on the test split, overall and by target warmth
    (train-split impressions), logged as `diagnostics.json`, a few metrics and `plots/refinement.png`."""
    from r2led_model.evaluation.diagnostics import r2led_diagnostics
    from r2led_model.evaluation.plots import refinement_figure

    diagnostics = r2led_diagnostics(task.model, make_feed(job, "test", shuffle=False).batches(0),
                                    item_impressions=training_impressions(job).numpy())
    run.log_dict(diagnostics, "diagnostics.json")
    run.log_metrics({"diag_route_entropy": diagnostics["route_entropy"],
                     **({"diag_gate_id_weight": diagnostics["gate_id_weight"]["mean"]}
                        if "gate_id_weight" in diagnostics else {})})
    run.log_figure(refinement_figure(diagnostics), "plots/refinement.png")
    return diagnostics


def log_input_tables(store: TableStore, versions: dict[str, int | None]) -> None:
    """The Delta tables a training run read, at the versions it read, as the active MLflow run's input
    datasets (lineage a registry reader follows back to the tables): context "training", the version as
    a tag (a path-based Delta source does not record it)."""
    import mlflow

    for table, version in sorted(versions.items()):
        where = store.location(table)
        located = {"table_name": where} if store.config.backend == "catalog" else {"path": where}
        dataset = mlflow.data.load_delta(**located, version=version, name=table)
        mlflow.log_input(dataset, context="training", tags={"delta_version": str(version)})


def registered_for(config: Config, tags: Mapping[str, str]) -> TrainResult | None:
    """The registered version a finished training run with these tags produced, if any (a re-run of a
    dated pipeline reuses it instead of registering a duplicate)."""
    from r2led_model.tracking.mlflow_model import versions_of_run
    from r2led_model.tracking.runs import find_runs

    for run_id, metrics in find_runs(config, tags):
        versions = versions_of_run(config.mlflow, config.registry.model_name, run_id)
        if versions:
            return TrainResult(
                model_name=config.registry.model_name, version=versions[0], run_id=run_id,
                best_epoch=int(metrics.get("best_epoch", -1)),
                valid={k[len("best_valid_"):]: v for k, v in metrics.items() if k.startswith("best_valid_")},
                test={k[len("test_"):]: v for k, v in metrics.items() if k.startswith("test_")})
    return None


def train(spark: SparkSession, config: Config, run_tags: Mapping[str, str] | None = None) -> TrainResult:
    """Train, evaluate, log and register. With `run_tags` (a dated pipeline run), a finished run with
    the same tags, training_examples version and model and training config is reused instead of
    training again."""
    from r2led_model.tracking.mlflow_model import log_ctr_model
    from r2led_model.tracking.runs import tracked_run

    store = TableStore(spark, config.tables)
    data = training_data(store, config)
    tags = {"stage": "train", "model": config.model.name}
    if run_tags:
        # Reused only for the same inputs and the same model and training config: a re-run after
        # either changed trains the model it now describes.
        tags.update({**run_tags, "training_examples_version": str(data.versions.training_examples_version),
                     "training_config": training_fingerprint(config)})
        earlier = registered_for(config, tags)
        if earlier is not None:
            log.info("reusing %s version %s from run %s (same date and inputs)", earlier.model_name,
                     earlier.version, earlier.run_id)
            return earlier
    log.info("training %s on %s rows (valid %s, test %s); spec %s", config.model.name, f"{data.rows['train']:,}",
             f"{data.rows['valid']:,}", f"{data.rows['test']:,}", data.spec)
    with tracked_run(config, run_name=f"train-{config.model.name}", tags=tags) as run:
        job = TrainJob(model=config.model, training=config.training, data=data,
                       checkpoint_dir=str(Path(config.training.checkpoint_dir) / run.run_id))
        started = time.perf_counter()
        if config.training.num_processes > 1:
            worker = run_distributed(spark, job)
        else:
            worker = train_worker(job, on_epoch=lambda epoch, metrics: run.log_metrics(
                {k: v for k, v in metrics.items() if k != "epoch" and v is not None}, step=epoch))
        log.info("trained in %.1fs, best epoch %d", time.perf_counter() - started, worker.best_epoch)
        bundle = ModelBundle(model_config=config.model, spec=data.spec, versions=data.versions,
                             state_dict=worker.state_dict)
        task = bundle.build()
        truth = load_oracle_truth(spark, config)
        valid, _, _ = evaluate_split(job, task, "valid")
        test, test_labels, test_probs = evaluate_split(job, task, "test", truth)
        log_input_tables(store, {"training_examples": data.versions.training_examples_version,
                                 "item_index": data.versions.item_index_version})
        log_training_run(run, config, data, worker, valid, test_labels, test_probs,
                         history_logged=config.training.num_processes == 1)
        diagnostics = log_refinement(run, job, task) if config.model.name == "r2led" else None
        example = next(iter(make_feed(job, "test", shuffle=False).batches(0)))
        catalog = serving_catalog(store, config)
        commit_guard.before_commit("the model registration")  # a run that lost the lock registers nothing
        registered = log_ctr_model(
            bundle, {k: v[:5].numpy() for k, v in example.items()}, config.registry.model_name,
            tags={**dataclasses.asdict(data.versions), "architecture": config.model.name,
                  **{f"test_{k}": f"{v:.6f}" for k, v in test.items() if k != "n"}},
            metrics={f"test_{k}": v for k, v in test.items()}, catalog=catalog)
        commit_guard.after_commit("model registration")
    log.info("%s version %s: valid AUC %.4f, test AUC %.4f GAUC %.4f LogLoss %.4f", registered.name,
             registered.version, valid["auc"], test["auc"], test["gauc"], test["logloss"])
    if "oracle_auc" in test:
        log.info("oracle on the same test rows: AUC %.4f GAUC %.4f LogLoss %.4f; share of the oracle's lift %.3f",
                 test["oracle_auc"], test["oracle_gauc"], test["oracle_logloss"], test["lift_share"])
    return TrainResult(model_name=registered.name, version=registered.version, run_id=registered.run_id,
                       best_epoch=worker.best_epoch, valid=valid, test=test, diagnostics=diagnostics)


def run(spark: SparkSession, config: Config, *, tuned: bool = False) -> TrainResult:
    """`tuned`: apply the parameters `r2led tune` saved for model.name first."""
    if tuned:
        from r2led_model.training.tuning import tuned_config

        config, tuned = tuned_config(config)
        print(f"using tuned parameters of {tuned.model} (best valid AUC {tuned.best_valid_auc:.4f}, "
              f"{tuned.trials} trials): {tuned.params}", flush=True)
    result = train(spark, config)
    print(f"registered {result.model_name} version {result.version} (run {result.run_id}): "
          f"test AUC {result.test['auc']:.4f}, GAUC {result.test['gauc']:.4f}, LogLoss {result.test['logloss']:.4f}",
          flush=True)
    if "oracle_auc" in result.test:
        print(f"oracle on the same test rows: AUC {result.test['oracle_auc']:.4f}, GAUC {result.test['oracle_gauc']:.4f}, "
              f"LogLoss {result.test['oracle_logloss']:.4f}; share of the oracle's lift {result.test['lift_share']:.3f}",
              flush=True)
    return result


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tuned", action="store_true",
                        help="apply the parameters `r2led tune` saved for model.name (tuning.output_dir)")


def derive(spark: SparkSession, config: Config, *, scope: Scope) -> StageOutcome:
    """The stage (`jobs.runtime.stage_protocol`): train, evaluate and register a challenger. A dated run
    with a split left empty by quiet days in the rolling window trains none (it could not be validated
    or compared with the champion on the same test rows): the champion stays, and scores the day."""
    counts = {r["split"]: int(r["count"]) for r in
              TableStore(spark, config.tables).read("training_examples").groupBy("split").count().collect()}
    if scope.full_run:
        result = run(spark, config)
    else:
        empty = [split for split in ("train", "valid", "test") if not counts.get(split)]
        if empty:
            log.warning("%s: no training examples in split(s) %s (quiet days in the rolling window): no "
                        "challenger is trained tonight", scope.day, ", ".join(empty))
            return StageOutcome(counts.get("train", 0), 0, {"action": "not trained", "empty_splits": empty})
        result = train(spark, config, run_tags={"pipeline_date": scope.day})
    return StageOutcome(counts.get("train", 0), 1, {"model_version": result.version, "run_id": result.run_id,
                                                    **{f"test_{k}": v for k, v in result.test.items() if k != "n"}})


def main(argv: Sequence[str] | None = None) -> int:
    return spark_job_main(argv, "train", "Train, evaluate, log and register the configured CTR model.", run,
                          _add_arguments)


if __name__ == "__main__":
    sys.exit(main())
