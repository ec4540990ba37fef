"""`r2led promote`: give the newest registered version the `challenger` alias, and make it the
`champion` only if it beats the current champion on the same test data by `registry.min_improvement`
and its feature versions match. Every decision, promoted or refused, is printed, logged to MLflow
and written as tags on the challenger's model version.

"Same test data": both models are scored now on the current `training_examples` test split, so a
champion evaluated on older tables is never compared by its stale numbers. A challenger whose
codebook or collaborative-vector version differs from the current tables (or from the champion's)
is refused, because the two cannot be scored on the same inputs.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass, field
from typing import Sequence

from pyspark.sql import SparkSession

from jobs import faults
from jobs.entrypoint import spark_job_main
from jobs.tables import TableStore
from jobs.train import TrainJob, evaluate_split
from jobs.training_data import TrainingData, training_data
from r2led_model.bundle import ModelBundle
from r2led_model.config import Config

log = logging.getLogger(__name__)

CHAMPION, CHALLENGER = "champion", "challenger"


@dataclass
class PromotionDecision:
    promoted: bool
    reason: str
    challenger_version: str
    champion_version: str | None  # the champion before the decision
    metrics: dict[str, float] = field(default_factory=dict)


def feature_problems(bundle: ModelBundle, data: TrainingData, whose: str) -> list[str]:
    """Why `bundle` cannot score the current tables (empty list: it can)."""
    return [f"{whose} {problem}" for problem in bundle.incompatibilities(data.spec, data.versions)]


def score_on_test(config: Config, data: TrainingData, bundle: ModelBundle) -> dict:
    job = TrainJob(model=bundle.model_config, training=config.training, data=data, checkpoint_dir="")
    metrics, _, _ = evaluate_split(job, bundle.build(), "test")
    return metrics


def decide(config: Config, data: TrainingData, challenger: ModelBundle, champion: ModelBundle | None,
           challenger_version: str, champion_version: str | None) -> PromotionDecision:
    metric = config.registry.metric[len("test_"):]
    problems = feature_problems(challenger, data, "challenger")
    if problems:
        return PromotionDecision(False, "; ".join(problems), challenger_version, champion_version)
    ours = score_on_test(config, data, challenger)
    numbers = {f"challenger_test_{k}": v for k, v in ours.items()}
    if champion is None:
        return PromotionDecision(True, "no champion yet", challenger_version, None, numbers)
    problems = feature_problems(champion, data, "champion")
    if problems:
        return PromotionDecision(False, "champion cannot be scored on the current test data ("
                                 + "; ".join(problems) + "); promote by hand with `--force` after review",
                                 challenger_version, champion_version, numbers)
    theirs = score_on_test(config, data, champion)
    numbers.update({f"champion_test_{k}": v for k, v in theirs.items()})
    margin = ours[metric] - theirs[metric]
    numbers["margin"] = margin
    needed = config.registry.min_improvement
    if margin >= needed and margin > 0:
        return PromotionDecision(True, f"test {metric} {ours[metric]:.5f} beats {theirs[metric]:.5f} by "
                                 f"{margin:+.5f} (needed {needed})", challenger_version, champion_version, numbers)
    return PromotionDecision(False, f"test {metric} {ours[metric]:.5f} vs champion {theirs[metric]:.5f}: margin "
                             f"{margin:+.5f}; a challenger must be strictly better and by at least {needed}",
                             challenger_version, champion_version, numbers)


def promote(spark: SparkSession, config: Config, version: str | None = None, force: bool = False) -> PromotionDecision:
    from r2led_model.mlflow_model import load_bundle, model_version, set_alias, tag_version
    from r2led_model.tracking import tracked_run

    name = config.registry.model_name
    candidate = model_version(config.mlflow, name, version=version)
    if candidate is None:
        raise LookupError(f"no registered versions of {name!r}; run `r2led train` first")
    current = model_version(config.mlflow, name, alias=CHAMPION)
    if current is not None and current.version == candidate.version:
        # E.g. a re-run after the alias moved: deciding again would compare the champion with itself.
        return PromotionDecision(True, "already the champion", candidate.version, current.version)
    set_alias(config.mlflow, name, CHALLENGER, candidate.version)
    data = training_data(TableStore(spark, config.tables), config)
    challenger = load_bundle(config.mlflow, f"models:/{name}/{candidate.version}")
    champion = load_bundle(config.mlflow, f"models:/{name}/{current.version}") if current else None
    decision = decide(config, data, challenger, champion, candidate.version, current.version if current else None)
    if force and not decision.promoted and not feature_problems(challenger, data, "challenger"):
        decision = PromotionDecision(True, f"forced by the operator (was refused: {decision.reason})",
                                     decision.challenger_version, decision.champion_version, decision.metrics)
    with tracked_run(config, run_name=f"promote-{name}-v{candidate.version}", tags={"stage": "promote"}) as run:
        run.log_params({"model_name": name, "challenger_version": candidate.version,
                        "champion_version": decision.champion_version or "none", "metric": config.registry.metric,
                        "min_improvement": config.registry.min_improvement, "promoted": decision.promoted,
                        "forced": force, "reason": decision.reason[:500],
                        "test_examples_version": data.versions.training_examples_version})
        run.log_metrics(decision.metrics)
    verdict = {"promotion": "promoted" if decision.promoted else "refused", "promotion_reason": decision.reason[:500]}
    tag_version(config.mlflow, name, candidate.version, verdict)
    if decision.promoted:
        if current is not None and current.version != candidate.version:
            set_alias(config.mlflow, name, "previous_champion", current.version)
        set_alias(config.mlflow, name, CHAMPION, candidate.version)
    faults.commit_point("promotion decision")
    return decision


def run(spark: SparkSession, config: Config, args: argparse.Namespace | None = None) -> PromotionDecision:
    decision = promote(spark, config, version=getattr(args, "version", None), force=getattr(args, "force", False))
    verdict = "PROMOTED to champion" if decision.promoted else "NOT promoted"
    print(f"{config.registry.model_name} version {decision.challenger_version}: {verdict} "
          f"(champion before: {decision.champion_version or 'none'}): {decision.reason}", flush=True)
    for key, value in sorted(decision.metrics.items()):
        print(f"  {key:<28} {value:.5f}" if isinstance(value, float) else f"  {key:<28} {value}")
    return decision


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--version", default=None, help="registered version to consider (default: the newest)")
    parser.add_argument("--force", action="store_true",
                        help="promote even if it does not beat the champion (feature versions must still match)")


def main(argv: Sequence[str] | None = None) -> int:
    return spark_job_main(argv, "promote", "Challenger → champion if it beats the champion on the same test data.",
                          run, add_arguments)


if __name__ == "__main__":
    sys.exit(main())
