"""`r2led tune --model NAME --trials N`: an Optuna study over the model's declared search space.

Each trial trains the model on `training_examples` with the same trainer and feed as `r2led train`, for
at most `tuning.epochs_per_trial` epochs (early stopping still applies), and reports its validation AUC
after every epoch, so the median pruner can stop a hopeless trial early. The study's objective is the
trial's best validation AUC: the test split is never looked at. Trials are nested MLflow runs under one
`tune-<model>` run; the best parameters go to `<tuning.output_dir>/<model>.json`, which
`r2led train --tuned` and `r2led benchmark models --tuned` apply.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import time
from typing import Sequence

from pyspark.sql import SparkSession

from jobs.runtime.entrypoint import spark_job_main
from jobs.runtime.tables import TableStore
from jobs.training.training_data import TrainingData, training_data, user_sample
from jobs.training.worker import TrainJob, train_worker
from r2led_model.config import Config, for_model, with_values
from r2led_model.models import MODELS
from r2led_model.tracking.runs import nested_run, tracked_run
from r2led_model.training.tuning import TunedParams, make_study, pruned, search_space, suggest, tuned_path

log = logging.getLogger(__name__)


def trial_config(config: Config, model: str, values: dict) -> Config:
    """The config one trial trains with: the model (other models' sections at their defaults), the
    trial's values, the study's epoch budget, one process and no progress bar or checkpoints."""
    trial = with_values(for_model(config, model), values)
    return dataclasses.replace(trial, training=dataclasses.replace(
        trial.training, epochs=config.tuning.epochs_per_trial, num_processes=1, progress="never"))


def current_values(config: Config, space) -> dict:
    """The config's own values of every key in `space`: a study's first trial can start from them."""
    values = {}
    for param in space:
        value: object = config
        for name in param.key.split("."):
            value = getattr(value, name)
        if param.kind != "choice":  # e.g. weight_decay 0 sits below a log range: start at its edge
            value = type(value)(min(max(value, param.low), param.high))
        values[param.key] = value
    return values


def tune_model(spark: SparkSession, config: Config, *, model: str, trials: int | None = None,
               data: TrainingData | None = None, start_from_config: bool = False) -> TunedParams:
    """Run the study for `model` (config.tuning.trials trials unless `trials`), save and return the best.

    With `start_from_config`, trial 0 is the config's own values (within the budget), so the result is
    never worse on validation than where the user started.
    """
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; known: {', '.join(MODELS)}")
    budget = trials or config.tuning.trials
    store = TableStore(spark, config.tables)
    full = data or training_data(store, config)
    data = user_sample(store, full, share=config.tuning.user_share, seed=config.tuning.seed,
                       folder=f"{config.tuning.output_dir}/data")
    space = search_space(model)
    study = make_study(seed=config.tuning.seed, startup_trials=config.tuning.startup_trials,
                       warmup_epochs=config.tuning.warmup_epochs)
    if start_from_config:
        study.enqueue_trial(current_values(for_model(config, model), space))
    started = time.perf_counter()
    with tracked_run(config, run_name=f"tune-{model}", tags={"stage": "tune", "model": model}) as parent:
        parent.log_params({"model": model, "trials": budget, "epochs_per_trial": config.tuning.epochs_per_trial,
                           "seed": config.tuning.seed, "space": [p.key for p in space],
                           "training_examples_version": data.versions.training_examples_version})

        def objective(trial) -> float:
            values = suggest(trial, space)
            tuned = trial_config(config, model, values)
            with nested_run(f"trial-{trial.number}", tags={"stage": "tune-trial", "model": model}) as child:
                child.log_params(values)

                def on_epoch(epoch: int, metrics: dict) -> None:
                    child.log_metrics({k: v for k, v in metrics.items() if k != "epoch" and v is not None}, step=epoch)
                    trial.report(metrics["valid_auc"], epoch)
                    if trial.should_prune():
                        child.set_tags({"pruned": "true"})
                        raise pruned()

                job = TrainJob(model=tuned.model, training=tuned.training, data=data, checkpoint_dir="")
                worker = train_worker(job, on_epoch=on_epoch)
                best = max(e["valid_auc"] for e in worker.history)
                child.log_metrics({"best_valid_auc": best})
            log.info("%s trial %d: valid AUC %.4f with %s", model, trial.number, best, values)
            return best

        study.optimize(objective, n_trials=budget)
        states = [t.state.name for t in study.trials]
        result = TunedParams(
            model=model, params=dict(study.best_params), best_valid_auc=float(study.best_value), trials=budget,
            completed=states.count("COMPLETE"), pruned=states.count("PRUNED"),
            epochs_per_trial=config.tuning.epochs_per_trial, seed=config.tuning.seed, study_run_id=parent.run_id,
            data={"env": config.env, "rows": dict(full.rows), "user_share": config.tuning.user_share,
                  "tuned_rows": dict(data.rows), "training_examples_version": data.versions.training_examples_version})
        parent.log_metrics({"best_valid_auc": result.best_valid_auc, "completed": result.completed,
                            "pruned": result.pruned, "seconds": time.perf_counter() - started})
        parent.log_dict(result.__dict__, "tuned.json")
    path = result.save(tuned_path(config.tuning.output_dir, model))
    log.info("%s: best valid AUC %.4f after %d trials (%d pruned) → %s", model, result.best_valid_auc, budget,
             result.pruned, path)
    return result


def run(spark: SparkSession, config: Config, *, model: str, trials: int | None = None,
        start_from_config: bool = False) -> TunedParams:
    result = tune_model(spark, config, model=model, trials=trials, start_from_config=start_from_config)
    print(f"{result.model}: best valid AUC {result.best_valid_auc:.4f} after {result.trials} trials "
          f"({result.completed} completed, {result.pruned} pruned); parameters {result.params} saved to "
          f"{tuned_path(config.tuning.output_dir, result.model)}", flush=True)
    return result


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, choices=list(MODELS), help="the model to tune")
    parser.add_argument("--trials", type=_positive, default=None, help="trial budget (default: tuning.trials)")
    parser.add_argument("--start-from-config", action="store_true",
                        help="make the first trial the config's own values (counted in the budget)")


def main(argv: Sequence[str] | None = None) -> int:
    return spark_job_main(argv, "tune", "Tune a model's hyperparameters with Optuna (same budget for every model).",
                          run, _add_arguments)


if __name__ == "__main__":
    sys.exit(main())
