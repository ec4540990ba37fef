"""The rows `r2led benchmark models` can train: R2LED, every baseline, their fair controls and R2LED's
ablations (`Variant`), each with its own seed, and the config and training job a variant runs with."""

from __future__ import annotations

import zlib
from dataclasses import dataclass, replace
from typing import Sequence

from jobs.training.training_data import TrainingData
from jobs.training.worker import TrainJob
from r2led_model.config import Config, for_model, with_values
from r2led_model.models import MODELS
from r2led_model.training.tuning import TunedParams


@dataclass(frozen=True)
class Variant:
    label: str
    model: str
    # Options of the model's own section (`model.<model>.<option>`), e.g. (("route_fusion", "mean"),).
    overrides: tuple[tuple[str, object], ...] = ()
    # Shared model keys (`model.<key>`), e.g. (("item_sids", True),).
    shared: tuple[tuple[str, object], ...] = ()


BASELINES = tuple(Variant(name, name) for name in MODELS if name != "r2led")


# Fair controls: every baseline given the SID-level item embeddings R2LED's items get ("+sid"), and SIM's
# hard search on a SID prefix instead of the category (R2LED's semantic filter alone). Level 2: the
# catalogue's category is coarser than the interests a shopper has, the second SID level is closer to them.
CONTROLS = (*(Variant(f"{v.label}+sid", v.model, shared=(("item_sids", True),)) for v in BASELINES),
            Variant("sim_hard sid2-prefix", "sim_hard", (("match", "sid_prefix"), ("sid_prefix", 2))),
            # Two-stage: the same search run offline over the whole stored history (R2LED's reach); needs
            # the "category" route in retrieval.routes, and is skipped on data without it.
            Variant("sim_hard offline", "sim_hard", (("search", "offline"),)))


# R2LED's defaults (model.r2led): gate=sum, sid_fusion=sum, route_fusion=constant_query, route_occupancy on
# counting the whole history, every route. Each ablation changes one of them; the default before the warmth
# gate (the sigmoid gate with the cross fusion) stays a row, and the per-level SID fusion, which only the
# sigmoid gates take, comes with one.
ABLATIONS = (
    Variant("r2led gate=id_only", "r2led", (("gate", "id_only"),)),
    Variant("r2led gate=sid_only", "r2led", (("gate", "sid_only"),)),
    Variant("r2led gate=warmth", "r2led", (("gate", "warmth"),)),
    Variant("r2led gate=gate", "r2led", (("gate", "gate"),)),
    Variant("r2led gate=target_gate", "r2led", (("gate", "target_gate"),)),
    Variant("r2led gate=warmth+target", "r2led", (("gate", "warmth"), ("warmth_target", True))),
    Variant("r2led gate=gate sid_fusion=per_level", "r2led", (("gate", "gate"), ("sid_fusion", "per_level"))),
    Variant("r2led fusion=cross", "r2led", (("route_fusion", "cross"),)),
    Variant("r2led fusion=attention", "r2led", (("route_fusion", "attention"),)),
    Variant("r2led fusion=mean", "r2led", (("route_fusion", "mean"),)),
    Variant("r2led fusion=concat", "r2led", (("route_fusion", "concat"),)),
    Variant("r2led fusion=target_aware", "r2led", (("route_fusion", "target_aware"),)),
    # The default before the warmth gate and the constant-query fusion.
    Variant("r2led gate=gate fusion=cross", "r2led", (("gate", "gate"), ("route_fusion", "cross"))),
    Variant("r2led no occupancy", "r2led", (("route_occupancy", False),)),
    Variant("r2led occupancy=candidates", "r2led", (("occupancy_counts", "candidates"),)),
    Variant("r2led sid_pools=exclusive", "r2led", (("sid_pools", "exclusive"),)),
    Variant("r2led routes=collab", "r2led", (("routes", ("collab",)),)),
    Variant("r2led routes=sid only", "r2led", (("routes", ("sid1", "sid2", "sid3")),)),
)


# Every row the table can have, in table order (`--variants` picks from these by label).
EVERY_VARIANT = (Variant("r2led", "r2led"), *BASELINES, *CONTROLS, *ABLATIONS)


def variants(names: Sequence[str] | None, ablations: bool, controls: bool = True,
             labels: Sequence[str] | None = None) -> list[Variant]:
    """R2LED and the baselines of `names` (all by default), their "+sid" controls, then R2LED's ablations;
    with `labels`, only the variants of those labels (any of the above, whatever `names` says)."""
    if labels:
        known = {v.label: v for v in EVERY_VARIANT}
        unknown = [label for label in labels if label not in known]
        if unknown:
            raise ValueError(f"unknown variant(s) {unknown}; known: {', '.join(known)}")
        return [known[label] for label in dict.fromkeys(labels)]
    chosen = [Variant("r2led", "r2led"), *BASELINES, *(CONTROLS if controls else ())]
    if names:
        unknown = sorted(set(names) - set(MODELS))
        if unknown:
            raise ValueError(f"unknown model(s) {unknown}; known: {', '.join(MODELS)}")
        chosen = [v for v in chosen if v.model in names]
    return chosen + ([v for v in ABLATIONS if not names or "r2led" in names] if ablations else [])


def init_seed(label: str, seed: int) -> int:
    """The training seed of a variant's run `seed`: the run's seed and the variant's label together, so no
    two variants start from the same weights (SIM-hard, SIM-soft, ETA and TWIN share their first layers)."""
    return seed * 1_000_003 + zlib.crc32(label.encode()) % 1_000_000


def study_of(variant: Variant, *, tune_variants: bool) -> str:
    """The study whose parameters `variant` trains with: its model's, or with `tune_variants` its own (for a
    variant that changes its model's options; its study searches with them fixed, `variant_config`)."""
    return variant.label if tune_variants and variant.label != variant.model else variant.model


def variant_config(config: Config, variant: Variant, tuned: TunedParams | None) -> Config:
    """The dataset config a variant trains with: its model (other models' sections at their defaults), tuned
    parameters (if any), then the variant's own overrides of its model's section."""
    values = {**(tuned.params if tuned else {}),
              **{f"model.{variant.model}.{k}": v for k, v in variant.overrides},
              **{f"model.{k}": v for k, v in variant.shared}}
    return with_values(for_model(config, variant.model), values)


def variant_job(config: Config, data: TrainingData, variant: Variant, seed: int) -> TrainJob:
    """The single-process training job of one variant and seed, without checkpoints or progress output."""
    model_config = variant_config(config, variant, None).model
    training = replace(config.training, seed=init_seed(variant.label, seed), num_processes=1, progress="never")
    return TrainJob(model=model_config, training=training, data=data, checkpoint_dir="")
