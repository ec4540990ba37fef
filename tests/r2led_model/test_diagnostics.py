"""R2LED diagnostics: route weights are a distribution over the routes that hold candidates; the gate's
ID weight is what the gate computes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from r2led_model.config import ModelConfig, R2LEDConfig
from r2led_model.evaluation.diagnostics import r2led_diagnostics
from r2led_model.models import build_model
from r2led_model.models.inputs import FeatureSpec, random_batch

SPEC = FeatureSpec(num_items=50, num_categories=5, sid_levels=2, sid_vocab=6, routes=("sid1", "sid2", "collab"),
                   route_k=(3, 3, 4), short_window=3, long_history=6, recency_buckets=4)


def model(**overrides):
    torch.manual_seed(0)
    return build_model("r2led", spec=SPEC, config=ModelConfig(embedding_dim=8, r2led=R2LEDConfig(**overrides)))


def only_route(batch, keep: str):
    out = dict(batch)
    for route in SPEC.routes:
        if route != keep:
            for part in ("item", "cat", "sid", "recency", "mask"):
                out[f"r_{route}_{part}"] = torch.zeros_like(batch[f"r_{route}_{part}"])
        else:
            out[f"r_{route}_mask"][:, 0] = 1
    return out


@pytest.mark.parametrize("fusion", ["cross", "attention"])
def test_all_the_weight_goes_to_the_only_route_with_candidates(fusion):
    batch = only_route(random_batch(SPEC, 32, torch.Generator().manual_seed(3)), "sid2")
    got = r2led_diagnostics(model(route_fusion=fusion, route_occupancy=False), [batch])
    assert got["rows"] == 32
    assert got["route_weight"]["sid2"] == pytest.approx(1.0, abs=1e-4)
    assert got["route_nonempty"] == {"sid1": 0.0, "sid2": 1.0, "collab": 0.0}


def test_route_weights_sum_to_one_and_the_gate_weight_is_a_share():
    batch = random_batch(SPEC, 64, torch.Generator().manual_seed(4), fill=1.2)
    got = r2led_diagnostics(model(gate="gate"), [batch])
    assert sum(got["route_weight"].values()) == pytest.approx(got_rows_with_candidates(batch), abs=1e-3)
    gate = got["gate_id_weight"]
    assert 0.0 < gate["p10"] <= gate["mean"] <= gate["p90"] < 1.0
    assert "gate_id_weight" not in r2led_diagnostics(model(gate="sum"), [batch])


def got_rows_with_candidates(batch) -> float:
    """Share of rows with at least one candidate in some route (the others give no weight at all)."""
    any_route = torch.stack([batch[f"r_{r}_mask"].bool().any(dim=1) for r in SPEC.routes], dim=1).any(dim=1)
    return float(any_route.float().mean())


def test_by_segment_each_value_holds_the_statistics_of_its_own_rows():
    torch.manual_seed(0)
    config = ModelConfig(embedding_dim=8, r2led=R2LEDConfig(gate="warmth", route_fusion="target_aware"))
    warm = build_model("r2led", spec=SPEC, config=config).eval()  # no ID dropout
    counts = torch.zeros(SPEC.num_items, dtype=torch.long)
    counts[25:] = 40  # items 25.. warm, the rest cold
    warm.set_item_impressions(counts)
    batch = random_batch(SPEC, 40, torch.Generator().manual_seed(5), fill=1.2)
    batch["sample_id"] = torch.arange(100, 140)
    # Segments keyed by sample_id (ascending), one row (99) the batch lacks, as a saved segments file may.
    ids = np.arange(99, 140)
    warmth = np.where(np.r_[0, batch["target_item"].numpy()] >= 25, "20+", "0").astype(str)
    segments = {"sample_id": ids, "warmth": warmth, "half": np.where(ids < 120, "a", "b")}
    got = r2led_diagnostics(warm, [batch], segments=segments)
    by = got["by_segment"]
    assert set(by) == {"warmth", "half"}
    assert by["half"]["a"]["rows"] == 20 and by["half"]["b"]["rows"] == 20
    g = warm.embedding.gate_weights(batch["target_item"], batch["target_sid"]).squeeze(-1).detach().numpy()
    is_warm = batch["target_item"].numpy() >= 25
    assert by["warmth"]["20+"]["gate_id_weight"]["mean"] == pytest.approx(g[is_warm].mean(), abs=1e-4)
    assert by["warmth"]["0"]["gate_id_weight"]["mean"] == pytest.approx(g[~is_warm].mean(), abs=1e-4)
    # Untrained, the warmth gate is its prior: more ID for warm targets.
    assert by["warmth"]["20+"]["gate_id_weight"]["mean"] > 0.5 > by["warmth"]["0"]["gate_id_weight"]["mean"]
    for value in by["half"].values():
        assert 0.0 <= value["route_entropy"] <= np.log(len(SPEC.routes)) + 1e-6


def test_warmth_from_item_impressions_splits_rows_by_their_targets_train_impressions():
    m = model(gate="warmth")
    batch = random_batch(SPEC, 30, torch.Generator().manual_seed(6), fill=1.2)
    impressions = np.zeros(SPEC.num_items, dtype=np.int64)
    impressions[10:20], impressions[20:] = 3, 50
    m.set_item_impressions(torch.from_numpy(impressions))
    got = r2led_diagnostics(m, [batch], item_impressions=impressions)["by_segment"]["warmth"]
    target = batch["target_item"].numpy()
    expected = {"0": int((target < 10).sum()), "1-4": int(((target >= 10) & (target < 20)).sum()),
                "20+": int((target >= 20).sum())}
    assert {k: v["rows"] for k, v in got.items()} == {k: v for k, v in expected.items() if v}
    assert list(got) == [k for k in ("0", "1-4", "20+") if expected[k]]  # natural order
