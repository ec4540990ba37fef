"""Model bundles: today's layout round-trips, and a bundle an earlier release wrote (a flat model dict, or sections
without an option added since) loads with the values it was built with."""

from __future__ import annotations

import dataclasses
import io
import json

import torch

from r2led_model.config import ETAConfig, ModelConfig, R2LEDConfig
from r2led_model.models import FeatureSpec, build_model
from r2led_model.models.inputs import random_batch
from r2led_model.tracking.bundle import DataVersions, ModelBundle

SPEC = FeatureSpec(num_items=40, num_categories=5, sid_levels=2, sid_vocab=6, routes=("sid1", "collab"),
                   route_k=(3, 4), short_window=3, long_history=8, recency_buckets=4)
VERSIONS = DataVersions(codebook_version="cb", collab_version="cv", training_examples_version=3)
# The flat model dict of the earliest bundles: no sid_fusion or route_occupancy yet.
FLAT = {"name": "r2led", "embedding_dim": 8, "attention_heads": 2, "mlp_dims": [16], "dropout": 0.0,
        "gate": "sum", "route_fusion": "mean", "routes": ["collab", "sid1"], "retrieve_k": 20,
        "eta_hash_bits": 32, "sdim_hashes": 4, "sdim_hash_bits": 3, "seed_hash": 11}


def written_by_an_earlier_release(flat: dict, config: ModelConfig) -> bytes:
    """The bytes `to_bytes` wrote when the model dict was flat, with the weights of `config`'s model."""
    torch.manual_seed(0)
    state = build_model(config.name, spec=SPEC, config=config).state_dict()
    meta = {"model": flat, "spec": SPEC.to_dict(), "versions": VERSIONS.__dict__}
    buffer = io.BytesIO()
    torch.save({"meta": json.dumps(meta), "state_dict": state}, buffer)
    return buffer.getvalue()


def test_a_flat_legacy_meta_loads_into_the_r2led_section_with_the_values_it_was_built_with():
    built = ModelConfig(embedding_dim=8, mlp_dims=(16,), r2led=R2LEDConfig(
        gate="sum", route_fusion="mean", routes=("collab", "sid1"), sid_fusion="sum", route_occupancy=False,
        occupancy_counts="candidates"))
    bundle = ModelBundle.from_bytes(written_by_an_earlier_release(FLAT, built))
    assert bundle.model_config == built  # route_occupancy False, sid_fusion sum: what those bundles were built without
    assert bundle.versions == VERSIONS
    batch = random_batch(SPEC, 8, torch.Generator().manual_seed(1))
    torch.manual_seed(0)
    expected = build_model("r2led", spec=SPEC, config=built).eval()
    with torch.no_grad():
        assert torch.equal(bundle.build().model(batch), expected(batch))


def test_a_flat_legacy_meta_of_a_baseline_keeps_its_own_options_and_drops_the_ones_it_never_read():
    flat = {**FLAT, "name": "eta", "retrieve_k": 7, "eta_hash_bits": 8, "seed_hash": 5, "sid_fusion": "per_level",
            "route_occupancy": True}
    built = ModelConfig(name="eta", embedding_dim=8, mlp_dims=(16,),
                        eta=ETAConfig(retrieve_k=7, hash_bits=8, seed_hash=5))
    bundle = ModelBundle.from_bytes(written_by_an_earlier_release(flat, built))
    assert bundle.model_config == built  # gate, route_fusion, routes: R2LED's, never read by ETA
    bundle.model_config.check()  # a valid config: no other model's section away from its defaults
    long_interest = bundle.build().model.long_interest
    assert long_interest.k == 7 and long_interest.retriever.hyperplanes.shape == (8, 8)  # (d, hash_bits)
    assert torch.equal(long_interest.retriever.hyperplanes,
                       build_model("eta", spec=SPEC, config=built).long_interest.retriever.hyperplanes)


def test_a_bundle_round_trips_with_its_sections():
    config = ModelConfig(name="r2led", embedding_dim=8, mlp_dims=(16,), r2led=R2LEDConfig(gate="id_only"))
    torch.manual_seed(0)
    bundle = ModelBundle(config, SPEC, VERSIONS, build_model("r2led", spec=SPEC, config=config).state_dict())
    again = ModelBundle.from_bytes(bundle.to_bytes())
    assert again.model_config == config and again.meta()["model"]["r2led"]["gate"] == "id_only"


def test_a_sectioned_meta_saved_before_whole_history_counts_loads_counting_candidates():
    built = ModelConfig(embedding_dim=8, mlp_dims=(16,), r2led=R2LEDConfig(occupancy_counts="candidates"))
    sectioned = dataclasses.asdict(built)
    del sectioned["r2led"]["occupancy_counts"]  # what a bundle of the release before the option stored
    bundle = ModelBundle.from_bytes(written_by_an_earlier_release(sectioned, built))
    assert bundle.model_config == built and bundle.model_config.r2led.occupancy_counts == "candidates"
    # Such a model never read pools: its inputs name none, and a batch without them scores as it did.
    assert not any(c.endswith("_pool") for c in bundle.input_columns)
    batch = {k: v for k, v in random_batch(SPEC, 8, torch.Generator().manual_seed(1)).items()
             if not k.endswith("_pool")}
    torch.manual_seed(0)
    expected = build_model("r2led", spec=SPEC, config=built).eval()
    with torch.no_grad():
        assert torch.equal(bundle.build().model(batch), expected(batch))
