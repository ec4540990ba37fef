"""What notebook 05 shows of the registry: who holds each alias, and the last or a new promotion decision."""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import SparkSession

from jobs.registry.promote import CHALLENGER, CHAMPION, PREVIOUS_CHAMPION, PromotionDecision
from r2led_model.config import Config, ConfigError


@dataclass(frozen=True)
class RegistryState:
    """Who holds the registry aliases now, with each version's tags."""

    model_name: str
    champion: str | None
    challenger: str | None
    previous_champion: str | None
    tags: dict[str, dict[str, str]]


def registry_state(config: Config) -> RegistryState:
    from r2led_model.tracking.mlflow_model import model_version

    name = config.registry.model_name
    held = {alias: model_version(config.mlflow, name, alias=alias)
            for alias in (CHAMPION, CHALLENGER, PREVIOUS_CHAMPION)}
    version = {alias: found.version if found else None for alias, found in held.items()}
    return RegistryState(name, version[CHAMPION], version[CHALLENGER], version[PREVIOUS_CHAMPION],
                         {v.version: v.tags for v in held.values() if v is not None})


def last_promotion(config: Config) -> PromotionDecision:
    """The decision `r2led promote` last recorded on the challenger's tags (no re-scoring).

    Metrics are the test numbers each version was registered with (`test_*` tags), which are not
    the same-rows comparison promote ran; run the notebook with action=promote for that.
    """
    state = registry_state(config)
    if state.challenger is None:
        raise LookupError(f"{state.model_name!r} has no challenger: run `r2led promote` first")
    tags = state.tags[state.challenger]
    if "promotion" not in tags:
        raise LookupError(f"{state.model_name} version {state.challenger} carries no promotion decision")
    promoted = tags["promotion"] == "promoted"
    # PromotionDecision.champion_version is the champion *before* the decision.
    before = state.previous_champion if promoted else state.champion
    metrics = {f"challenger_{k}": float(v) for k, v in tags.items() if k.startswith("test_")}
    if before is not None and before != state.challenger:
        metrics.update({f"champion_{k}": float(v) for k, v in state.tags[before].items() if k.startswith("test_")})
    return PromotionDecision(promoted=promoted, reason=tags.get("promotion_reason", ""),
                             challenger_version=state.challenger, champion_version=before, metrics=metrics)


def promotion_decision(spark: SparkSession, config: Config, action: str) -> PromotionDecision:
    """`review`: the recorded decision (`last_promotion`); `promote`: run `jobs.registry.promote.promote` now."""
    from jobs.registry.promote import promote

    if action == "promote":
        return promote(spark, config)
    if action == "review":
        return last_promotion(config)
    raise ConfigError(f"action widget: {action!r} is not 'review' or 'promote'")
