"""Counterfactual ablations of a trained R2LED: a frozen gate and frozen route weights."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from r2led_model.config import ModelConfig, R2LEDConfig
from r2led_model.evaluation.counterfactuals import frozen, mean_refinement
from r2led_model.models import FeatureSpec, build_model
from r2led_model.models.inputs import random_batch
from r2led_model.models.r2led import route_mass, route_mass_fixed

SPEC = FeatureSpec(num_items=200, num_categories=6, sid_levels=3, sid_vocab=12, routes=("sid1", "sid2", "collab"),
                   route_k=(4, 3, 5), short_window=4, long_history=12, recency_buckets=5)
CONFIG = ModelConfig(embedding_dim=8, attention_heads=2, mlp_dims=(16,))


def r2led(**options):
    torch.manual_seed(0)
    return build_model("r2led", spec=SPEC, config=dataclasses.replace(CONFIG, r2led=R2LEDConfig(**options))).eval()


def batch(seed: int = 1, size: int = 32):
    return random_batch(SPEC, size, torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("sid_fusion", ["sum", "per_level"])
def test_a_gate_that_does_not_depend_on_the_item_is_its_own_mean(sid_fusion):
    model = r2led(gate="gate", sid_fusion=sid_fusion)
    x = batch()
    with torch.no_grad():
        model.embedding.fusion.gate.weight.zero_()  # g = σ(b) (or softmax(b)) for every item
        means = mean_refinement(model, [x])
        plain = model(x)
        with frozen(model, gate=means.gate):
            assert torch.allclose(model(x), plain, atol=1e-6)
        model.embedding.fusion.gate.weight.normal_()  # a gate that varies by item
        means = mean_refinement(model, [x])
        plain = model(x)
        with frozen(model, gate=means.gate):
            assert not torch.allclose(model(x), plain, atol=1e-4)
        assert model.embedding.fusion.frozen is None and torch.equal(model(x), plain)  # restored


def test_fixed_route_mass_keeps_each_routes_inner_proportions():
    weights = torch.tensor([[[0.1, 0.3, 0.2, 0.4, 0.0]]])  # (1, 1, R·k) with routes of widths 2 and 3
    assert torch.allclose(route_mass(weights, [2, 3]), torch.tensor([[[0.4, 0.6]]]))
    same = route_mass_fixed(weights, mass=torch.tensor([0.4, 0.6]), widths=[2, 3])
    assert torch.allclose(same, weights)
    moved = route_mass_fixed(weights, mass=torch.tensor([0.8, 0.2]), widths=[2, 3])
    assert torch.allclose(moved, torch.tensor([[[0.2, 0.6, 0.2 / 3, 0.4 / 3, 0.0]]]))
    # A row whose second route holds nothing gives all its mass to the first.
    empty = route_mass_fixed(torch.tensor([[[0.5, 0.5, 0.0, 0.0, 0.0]]]), mass=torch.tensor([0.3, 0.7]), widths=[2, 3])
    assert torch.allclose(empty, torch.tensor([[[0.5, 0.5, 0.0, 0.0, 0.0]]]))


@pytest.mark.parametrize("fusion", ["cross", "attention"])
def test_frozen_route_weights_change_the_scores_and_are_restored(fusion):
    model = r2led(route_fusion=fusion)
    x = batch()
    means = mean_refinement(model, [x])
    assert means.route.shape == (len(SPEC.routes),) and torch.isclose(means.route.sum(), torch.tensor(1.0))
    with torch.no_grad():
        plain = model(x)
        with frozen(model, route=torch.tensor([1.0, 0.0, 0.0])):
            only_first = model(x)
        assert not torch.allclose(only_first, plain, atol=1e-4)
        assert torch.equal(model(x), plain)


def test_attention_fusion_with_uniform_weights_is_unchanged_by_freezing_them_to_uniform():
    model = r2led(route_fusion="attention", route_occupancy=True)  # occupancy: every route is listened to
    x = batch()
    with torch.no_grad():
        model.long_interest.fusion.query.weight.zero_()  # logits 0: uniform weights on every row
        means = mean_refinement(model, [x])
        assert torch.allclose(means.route, torch.full((3,), 1 / 3))
        plain = model(x)
        with frozen(model, route=means.route):
            assert torch.allclose(model(x), plain, atol=1e-6)


def test_fusions_without_weights_or_a_gate_have_no_means():
    means = mean_refinement(r2led(route_fusion="mean", gate="sum"), [batch()])
    assert means.gate is None and means.route is None
