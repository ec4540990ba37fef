"""The route fusions that listen (`target_aware`) or not (`constant_query`): on hand-made interests where two
routes disagree, the target-aware weights follow the target and the constant query's do not."""

from __future__ import annotations

import pytest
import torch

from r2led_model.models.r2led import CrossRouteInterest, FusedRouteInterest, RouteFusion
from r2led_model.models.route_attention import RouteTargetAttention
from tests.r2led_model.test_models import make

DIM = 8


def fusion(mode: str, seed: int = 0) -> RouteFusion:
    torch.manual_seed(seed)
    return RouteFusion(mode=mode, dim=DIM, num_routes=2, warmth_buckets=4)


def two_targets_two_routes() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Targets t0, t1 and, for both rows, the same two route interests: route 0 points like t0, route 1 like t1."""
    t0, t1 = torch.zeros(DIM), torch.zeros(DIM)
    t0[:4], t1[4:] = 1.0, 1.0
    target = torch.stack([t0, t1])  # (2, d)
    interests = torch.stack([t0, t1])[None].expand(2, -1, -1).clone()  # (2, R=2, d), identical rows
    return target, interests, torch.ones(2, 2, dtype=torch.bool)


def test_target_aware_weights_change_with_the_target_and_can_learn_to_follow_it():
    module = fusion("target_aware")
    target, interests, nonempty = two_targets_two_routes()
    before = module.weights(target, interests, nonempty)
    assert not torch.allclose(before[0], before[1], atol=1e-4)  # same routes, other target: other weights
    # A few steps on "each target wants the route that points like it" move the weights there.
    optimizer = torch.optim.Adam(module.parameters(), lr=0.05)
    for _ in range(60):
        optimizer.zero_grad()
        weights = module.weights(target, interests, nonempty)
        (-torch.log(weights[0, 0]) - torch.log(weights[1, 1])).backward()
        optimizer.step()
    after = module.weights(target, interests, nonempty)
    assert after[0, 0] > 0.9 and after[1, 1] > 0.9


def test_the_warmth_bucket_is_part_of_the_target_aware_query():
    module = fusion("target_aware")
    target, interests, nonempty = two_targets_two_routes()
    same = target[:1].expand(2, -1)
    weights = module.weights(same, interests, nonempty, torch.tensor([0, 3]))
    assert not torch.allclose(weights[0], weights[1], atol=1e-4)


def test_the_constant_query_gives_every_target_the_same_weights():
    module = fusion("constant_query")
    target, interests, nonempty = two_targets_two_routes()
    weights = module.weights(target, interests, nonempty)
    assert torch.allclose(weights[0], weights[1])
    assert torch.allclose(weights, module.weights(torch.randn(2, DIM), interests, nonempty))


@pytest.mark.parametrize("mode", ["target_aware", "constant_query"])
def test_listening_fusions_skip_empty_routes_and_give_zero_when_every_route_is_empty(mode):
    module = fusion(mode)
    target, interests, _ = two_targets_two_routes()
    only_first = torch.tensor([[True, False], [True, False]])
    weights = module.weights(target, interests, only_first)
    assert torch.allclose(weights, torch.tensor([[1.0, 0.0], [1.0, 0.0]]))
    out = module(target, interests, torch.zeros(2, 2, dtype=torch.bool))
    assert torch.equal(out, torch.zeros(2, DIM))


def test_the_temperature_is_learned_from_one_at_the_start():
    module = fusion("target_aware")
    assert module.log_temperature.exp().item() == 1.0
    target, interests, nonempty = two_targets_two_routes()
    module(target, interests, nonempty).sum().backward()
    assert module.log_temperature.grad is not None and module.log_temperature.grad.abs() > 0


def test_exclusive_sid_pools_keep_each_behaviour_in_its_finest_sid_route_only():
    from r2led_model.models.layers import Behaviours
    from r2led_model.models.r2led import exclusive_sid_pools

    def group(items: list[int]) -> Behaviours:
        item = torch.tensor([items])
        mask = item > 0
        return Behaviours(h=torch.ones(1, len(items), 2), mask=mask, recency=mask.long() * 3, cat=mask.long())

    items = {"r_sid1": [5, 6, 7, 0], "r_sid2": [6, 0], "r_sid3": [7], "r_collab": [5, 7], "short": [6]}
    groups = {name: group(values) for name, values in items.items()}
    out = exclusive_sid_pools(groups, {name: torch.tensor([v]) for name, v in items.items()}, levels=3)
    assert out["r_sid1"].mask.tolist() == [[True, False, False, False]]  # 6 is in sid2, 7 in sid3
    assert out["r_sid1"].recency.tolist() == [[3, 0, 0, 0]]
    assert out["r_sid2"].mask.tolist() == [[True, False]]  # 6 is in no finer pool
    assert out["r_sid3"] is groups["r_sid3"] and out["r_collab"] is groups["r_collab"]  # untouched


def test_each_long_interest_is_built_whole_for_its_fusion_and_refuses_a_mismatched_attention():
    cross = make("r2led-gate-cross").long_interest
    fused = make("r2led").long_interest
    assert isinstance(cross, CrossRouteInterest) and not hasattr(cross, "fusion")
    assert isinstance(fused, FusedRouteInterest) and fused.fusion.mode == "constant_query"
    assert not hasattr(fused, "cross") and fused.routes == cross.routes
    attention = RouteTargetAttention(routes=("sid1",), dim=8, heads=2, recency_buckets=5)
    with pytest.raises(ValueError, match="differ from"):
        FusedRouteInterest(routes=("sid1", "collab"), attention=attention,
                           fusion=RouteFusion(mode="mean", dim=8, num_routes=2), dim=8)
