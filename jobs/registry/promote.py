"""`r2led promote`: give the newest registered version the `challenger` alias, and make it the
`champion` only if it beats the current champion on the same test data by `registry.min_improvement`
and its feature versions match. Every decision, promoted or refused, is printed, logged to MLflow
and written as tags on the challenger's model version.

The alias move is compare-and-set: the champion is read again right before `champion` moves, and
if another run moved it since this decision was taken, nothing moves and promote fails with
`ChampionChangedError` (run it again to decide against the new champion). With no champion yet, the
challenger must still reach `registry.min_first_metric`. `--force` (the `r2led promote` flag, never
the pipeline's) is the one override of the metric rules.

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

from jobs.runtime import commit_guard
from jobs.runtime.entrypoint import spark_job_main
from jobs.runtime.stage_protocol import Scope, StageOutcome
from jobs.runtime.tables import TableStore
from jobs.training.training_data import TrainingData, training_data
from jobs.training.worker import TrainJob, evaluate_split
from r2led_model.config import Config
from r2led_model.tracking.bundle import ModelBundle

log = logging.getLogger(__name__)

# The registry aliases promotion moves: the champion serves, the challenger is the newest candidate,
# and previous_champion keeps the version a promotion replaced (a one-step rollback).
CHAMPION, CHALLENGER, PREVIOUS_CHAMPION = "champion", "challenger", "previous_champion"


class ChampionChangedError(RuntimeError):
    """The champion alias moved between the decision and the alias move; nothing was changed."""


@dataclass
class PromotionDecision:
    promoted: bool
    reason: str
    challenger_version: str
    champion_version: str | None  # the champion before the decision
    metrics: dict[str, float] = field(default_factory=dict)


def feature_problems(bundle: ModelBundle, data: TrainingData, whose: str) -> list[str]:
    """Why `bundle` cannot score the current tables (empty list: it can)."""
    lookups = (data.item_category, data.item_sid) if data.item_category is not None else None
    return [f"{whose} {problem}" for problem in bundle.incompatibilities(data.spec, data.versions, lookups)]


def score_on_test(config: Config, data: TrainingData, bundle: ModelBundle) -> dict:
    job = TrainJob(model=bundle.model_config, training=config.training, data=data, checkpoint_dir="")
    # Both models read the current item lookups (a champion saved before it held lookups takes them from here).
    metrics, _, _ = evaluate_split(job, bundle.with_item_lookup(data.item_category, data.item_sid).build(), "test")
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
        floor = config.registry.min_first_metric
        if ours[metric] >= floor:
            return PromotionDecision(True, f"no champion yet; test {metric} {ours[metric]:.5f} reaches "
                                     f"registry.min_first_metric {floor}", challenger_version, None, numbers)
        return PromotionDecision(False, f"no champion yet, and test {metric} {ours[metric]:.5f} is below "
                                 f"registry.min_first_metric {floor}: the first champion must beat chance "
                                 "(promote by hand with `r2led promote --force` after review)",
                                 challenger_version, None, numbers)
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


def promote(spark: SparkSession, config: Config, *, version: str | None = None,
            force: bool = False) -> PromotionDecision:
    """Decide on `version` (default: the newest) against the champion and move the alias if it wins.

    `force` promotes a challenger that loses on the metric rules (its feature versions must still
    match); only `r2led promote --force` sets it.
    """
    from r2led_model.tracking.mlflow_model import load_bundle, model_version, set_alias, tag_version
    from r2led_model.tracking.runs import tracked_run

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
    if decision.promoted:
        _move_champion(config, name, candidate.version, expected=decision.champion_version)
    with tracked_run(config, run_name=f"promote-{name}-v{candidate.version}", tags={"stage": "promote"}) as run:
        run.log_params({"model_name": name, "challenger_version": candidate.version,
                        "champion_version": decision.champion_version or "none", "metric": config.registry.metric,
                        "min_improvement": config.registry.min_improvement, "promoted": decision.promoted,
                        "forced": force, "reason": decision.reason[:500],
                        "test_examples_version": data.versions.training_examples_version})
        run.log_metrics(decision.metrics)
    verdict = {"promotion": "promoted" if decision.promoted else "refused", "promotion_reason": decision.reason[:500]}
    tag_version(config.mlflow, name, candidate.version, verdict)
    commit_guard.after_commit("promotion decision")
    return decision


def _move_champion(config: Config, name: str, version: str, *, expected: str | None) -> None:
    """Give `version` the champion alias only if the champion is still `expected` (None: no champion).

    The registry has no conditional alias update, so this re-reads the alias immediately before
    setting it: the window left is the two calls, not the minutes the decision took to score.
    """
    from r2led_model.tracking.mlflow_model import model_version, set_alias

    commit_guard.before_commit("the champion alias move")  # a run that lost the run lock moves nothing
    now = model_version(config.mlflow, name, alias=CHAMPION)
    found = now.version if now else None
    if found != expected:
        raise ChampionChangedError(
            f"{name}: the champion changed from version {expected or 'none'} to {found or 'none'} while version "
            f"{version} was being evaluated; no alias was moved. Run `r2led promote` again to compare against "
            "the new champion.")
    if expected is not None:
        set_alias(config.mlflow, name, PREVIOUS_CHAMPION, expected)
    set_alias(config.mlflow, name, CHAMPION, version)


def run(spark: SparkSession, config: Config, *, version: str | None = None, force: bool = False) -> PromotionDecision:
    decision = promote(spark, config, version=version, force=force)
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


def derive(spark: SparkSession, config: Config, *, scope: Scope) -> StageOutcome:
    """The stage (`jobs.runtime.stage_protocol`): decide on tonight's challenger (`scope.challenger`, the
    train stage's outcome; the newest version in the full run), or nothing when none was trained."""
    if scope.challenger.get("action") == "not trained":
        return StageOutcome(0, 0, {"action": "no challenger", "promoted": False})
    version = scope.challenger.get("model_version")
    decision = run(spark, config) if scope.full_run else promote(spark, config, version=version)
    return StageOutcome(1, int(decision.promoted),
                        {"challenger": decision.challenger_version, "champion_before": decision.champion_version,
                         "promoted": decision.promoted, "reason": decision.reason[:300]})


def main(argv: Sequence[str] | None = None) -> int:
    return spark_job_main(argv, "promote", "Challenger → champion if it beats the champion on the same test data.",
                          run, add_arguments)


if __name__ == "__main__":
    sys.exit(main())
