"""RouteTargetAttention: every route's attention in one call equals R separate TargetAttention modules
(outputs and gradients), old per-route state dicts load into it, and the recency padding rows stay zero."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from r2led_model.config import ModelConfig, R2LEDConfig
from r2led_model.models import build_model
from r2led_model.models.inputs import FeatureSpec, random_batch
from r2led_model.models.layers import Behaviours, TargetAttention
from r2led_model.models.route_attention import RouteTargetAttention, per_route_state, stack_pools

# float32; the two computations order their sums differently, so allow a few ulps of the outputs (~1).
TOLERANCE = {"rtol": 1e-5, "atol": 1e-6}
BUCKETS = 6
SPEC = FeatureSpec(num_items=80, num_categories=6, sid_levels=2, sid_vocab=7, routes=("sid1", "sid2", "collab"),
                   route_k=(4, 3, 5), short_window=3, long_history=6, recency_buckets=BUCKETS)


def pools(*, batch: int, widths: tuple[int, ...], dim: int, seed: int) -> list[Behaviours]:
    """Random pools of widths k_r with random valid prefixes; row 0 of route 0 and all of route 1 (when there
    are two routes or more) hold no candidate at all."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for r, k in enumerate(widths):
        lengths = torch.randint(0, k + 1, (batch,), generator=g)  # (B,)
        lengths[0] = 0 if r == 0 else lengths[0]
        if r == 1:
            lengths.zero_()
        mask = torch.arange(k)[None, :] < lengths[:, None]  # (B, k)
        recency = torch.randint(1, BUCKETS, (batch, k), generator=g) * mask
        h = torch.randn(batch, k, dim, generator=g) * mask[:, :, None]
        out.append(Behaviours(h=h.requires_grad_(), mask=mask, recency=recency, cat=mask.long()))
    return out


def per_route_modules(routes: tuple[str, ...], *, dim: int, heads: int, seed: int) -> nn.ModuleDict:
    """The per-route layout R2LED had before its routes were stacked: {route: TargetAttention}."""
    torch.manual_seed(seed)
    modules = nn.ModuleDict({route: TargetAttention(dim=dim, heads=heads, recency_buckets=BUCKETS)
                             for route in routes})
    with torch.no_grad():  # non-zero biases, so a wrong bias slice would show
        for p in modules.parameters():
            p.add_(torch.randn_like(p) * 0.1 * (p.dim() == 1))
    return modules


CASES = [  # (B, k per route, d, heads)
    (1, (4,), 8, 1),
    (7, (5, 5), 8, 2),
    (16, (4, 3, 5), 12, 3),
    (33, (20, 20, 1, 7), 16, 4),
]


@pytest.mark.parametrize(("batch", "widths", "dim", "heads"), CASES)
def test_batched_attention_equals_each_routes_own_target_attention_with_its_gradients(batch, widths, dim, heads):
    routes = tuple(f"route{r}" for r in range(len(widths)))
    old = per_route_modules(routes, dim=dim, heads=heads, seed=batch)
    new = RouteTargetAttention(routes=routes, dim=dim, heads=heads, recency_buckets=BUCKETS)
    new.load_state_dict(old.state_dict())
    target = torch.randn(batch, dim, generator=torch.Generator().manual_seed(1)).requires_grad_()
    groups = pools(batch=batch, widths=widths, dim=dim, seed=2)

    expected = torch.stack([old[route](target, pool) for route, pool in zip(routes, groups)], dim=1)  # (B, R, d)
    got = new(target, *stack_pools(groups))
    torch.testing.assert_close(got, expected, **TOLERANCE)
    # A row without candidates (row 0 of route 0, all of route 1) gives that route's out-bias, as before.
    torch.testing.assert_close(got[0, 0], new.out.bias[0], **TOLERANCE)
    if len(widths) > 1:
        torch.testing.assert_close(got[:, 1], new.out.bias[1].expand(batch, dim), **TOLERANCE)

    weights = torch.randn(batch, len(widths), dim, generator=torch.Generator().manual_seed(3))
    inputs = [target, *(pool.h for pool in groups)]
    expected_grads = torch.autograd.grad((expected * weights).sum(), [*inputs, *old.parameters()])
    got_grads = torch.autograd.grad((got * weights).sum(), [*inputs, *new.parameters()])
    for g_expected, g_got in zip(expected_grads[:len(inputs)], got_grads[:len(inputs)], strict=True):
        torch.testing.assert_close(g_got, g_expected, **TOLERANCE)
    by_name = dict(zip([n for n, _ in old.named_parameters()], expected_grads[len(inputs):], strict=True))
    stacked = {name: torch.stack([by_name[f"{route}.{name}"] for route in routes]) for name in
               [f"{p}.{leaf}" for p in ("query", "key", "value", "out") for leaf in ("weight", "bias")]}
    stacked["recency"] = torch.stack([by_name[f"{route}.recency.weight"] for route in routes])
    for (name, _), g_got in zip(new.named_parameters(), got_grads[len(inputs):], strict=True):
        torch.testing.assert_close(g_got, stacked[name], **TOLERANCE, msg=lambda m, name=name: f"{name}: {m}")


def test_one_route_alone_is_that_routes_target_attention():
    routes = ("a", "b", "c")
    old = per_route_modules(routes, dim=8, heads=2, seed=4)
    new = RouteTargetAttention(routes=routes, dim=8, heads=2, recency_buckets=BUCKETS)
    new.load_state_dict(old.state_dict())
    target = torch.randn(5, 8)
    pool = pools(batch=5, widths=(4,), dim=8, seed=5)[0]
    for route in routes:
        torch.testing.assert_close(new[route](target, pool), old[route](target, pool), **TOLERANCE)


def test_without_recency_tables_the_candidates_are_the_keys_as_in_target_attention():
    routes = ("a", "b")
    torch.manual_seed(6)
    old = nn.ModuleDict({route: TargetAttention(dim=8, heads=2) for route in routes})
    new = RouteTargetAttention(routes=routes, dim=8, heads=2)
    new.load_state_dict(old.state_dict())
    assert new.recency is None
    target, groups = torch.randn(9, 8), pools(batch=9, widths=(3, 5), dim=8, seed=7)
    expected = torch.stack([old[route](target, pool) for route, pool in zip(routes, groups)], dim=1)  # (B, R, d)
    torch.testing.assert_close(new(target, *stack_pools(groups)), expected, **TOLERANCE)


def test_same_seed_gives_the_weights_of_r_separate_target_attentions():
    routes = ("a", "b")
    torch.manual_seed(11)
    separate = [TargetAttention(dim=8, heads=2, recency_buckets=BUCKETS) for _ in routes]
    torch.manual_seed(11)
    stacked = RouteTargetAttention(routes=routes, dim=8, heads=2, recency_buckets=BUCKETS)
    for r, module in enumerate(separate):
        for name, p in module.named_parameters():
            own = stacked.recency if name == "recency.weight" else stacked.get_parameter(name)
            assert torch.equal(own[r], p), name


@pytest.mark.parametrize("fusion", ["attention", "mean", "concat"])
def test_an_r2led_state_dict_with_per_route_attention_keys_loads_and_predicts_the_same(fusion):
    config = ModelConfig(embedding_dim=8, attention_heads=2, r2led=R2LEDConfig(route_fusion=fusion))
    torch.manual_seed(0)
    model = build_model("r2led", spec=SPEC, config=config).eval()
    prefix = "long_interest.attention."
    old_format = {k: v for k, v in model.state_dict().items() if not k.startswith(prefix)}
    for name, value in model.long_interest.attention.state_dict().items():  # (R, …) → R × (…) under <route>.
        for r, route in enumerate(SPEC.routes):
            leaf = "recency.weight" if name == "recency" else name
            old_format[f"{prefix}{route}.{leaf}"] = value[r].clone()
    assert f"{prefix}collab.query.weight" in old_format and f"{prefix}query.weight" not in old_format

    torch.manual_seed(1)
    loaded = build_model("r2led", spec=SPEC, config=config).eval()
    loaded.load_state_dict(old_format)
    batch = random_batch(SPEC, 32, torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.equal(loaded(batch), model(batch))


def test_an_old_state_dict_missing_a_route_is_refused_with_the_route_named():
    routes = ("a", "b")
    state = per_route_state(routes[:1], [TargetAttention(dim=8, heads=2, recency_buckets=BUCKETS)])
    with pytest.raises(RuntimeError, match="b.query.weight"):
        RouteTargetAttention(routes=routes, dim=8, heads=2, recency_buckets=BUCKETS).load_state_dict(state)


def test_recency_padding_rows_start_zero_and_stay_zero_through_training():
    routes = ("a", "b", "c")
    attention = RouteTargetAttention(routes=routes, dim=8, heads=2, recency_buckets=BUCKETS)
    assert torch.equal(attention.recency[:, 0], torch.zeros(3, 8))
    optimizer = torch.optim.Adam(attention.parameters(), lr=0.1, weight_decay=0.1)
    for step in range(5):
        groups = pools(batch=16, widths=(4, 3, 5), dim=8, seed=step)
        for pool in groups:  # bucket 0 on real slots too: the padding row must still learn nothing
            pool.recency[:, 0] = 0
        optimizer.zero_grad()
        attention(torch.randn(16, 8), *stack_pools(groups)).square().sum().backward()
        assert torch.equal(attention.recency.grad[:, 0], torch.zeros(3, 8))
        assert attention.recency.grad[:, 1:].abs().sum() > 0  # the real buckets do learn
        optimizer.step()
    assert torch.equal(attention.recency[:, 0], torch.zeros(3, 8))
