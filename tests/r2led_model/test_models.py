"""CTR models: shapes, padding invariance, gradients, overfitting 32 examples, retrieval that respects masks."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch.nn import functional as F

from r2led_model.config import (ConfigError, ETAConfig, ModelConfig, R2LEDConfig, SDIMConfig, SIMHardConfig,
                                TopKRetrievalConfig)
from r2led_model.models import MODELS, CTRTask, FeatureSpec, build_model
from r2led_model.models.inputs import WIDE_LAYOUT, columns_for, random_batch, within_vocab
from r2led_model.models.layers import Behaviours, Target, masked_softmax, top_k_slots

SPEC = FeatureSpec(num_items=300, num_categories=6, sid_levels=3, sid_vocab=12, routes=("sid1", "sid2", "collab"),
                   route_k=(4, 3, 5), short_window=4, long_history=12, recency_buckets=5)
RETRIEVE_K = 4
TOP_K = TopKRetrievalConfig(retrieve_k=RETRIEVE_K)
CONFIG = ModelConfig(embedding_dim=8, attention_heads=2, mlp_dims=(32, 16), dropout=0.0,
                     sim_hard=SIMHardConfig(retrieve_k=RETRIEVE_K),
                     sim_soft=TOP_K, twin=TOP_K, eta=ETAConfig(retrieve_k=RETRIEVE_K, hash_bits=8),
                     sdim=SDIMConfig(hashes=3, hash_bits=2))

# Every registered model, plus R2LED's main ablations (options of model.r2led).
VARIANTS = {name: (name, {}) for name in MODELS} | {
    # Each variant names its gate and route fusion, so its golden logits do not move with the defaults;
    # "r2led" is the default itself, "r2led-gate-cross" the default before the warmth gate.
    "r2led-gate-cross": ("r2led", {"gate": "gate", "route_fusion": "cross"}),
    "r2led-id_only": ("r2led", {"gate": "id_only", "route_fusion": "cross"}),
    "r2led-sid_only": ("r2led", {"gate": "sid_only", "route_fusion": "cross"}),
    "r2led-sum": ("r2led", {"gate": "sum", "route_fusion": "cross"}),
    "r2led-target_gate": ("r2led", {"gate": "target_gate", "route_fusion": "cross"}),
    # id_min_count 0: with no impressions set every item would read the OOV row and its own row no gradient.
    "r2led-warmth": ("r2led", {"gate": "warmth", "id_min_count": 0, "route_fusion": "cross"}),
    "r2led-warmth-target": ("r2led", {"gate": "warmth", "id_min_count": 0, "warmth_target": True,
                                      "route_fusion": "cross"}),
    "r2led-mean": ("r2led", {"route_fusion": "mean", "gate": "gate"}),
    "r2led-concat": ("r2led", {"route_fusion": "concat", "gate": "gate"}),
    "r2led-subset": ("r2led", {"routes": ("sid2", "collab"), "gate": "gate", "route_fusion": "cross"}),
    "r2led-per_level": ("r2led", {"sid_fusion": "per_level", "gate": "gate", "route_fusion": "cross"}),
    "r2led-per_level-target_gate": ("r2led", {"sid_fusion": "per_level", "gate": "target_gate",
                                              "route_fusion": "cross"}),
    "r2led-attention": ("r2led", {"route_fusion": "attention", "gate": "gate"}),
    "r2led-history_counts": ("r2led", {"occupancy_counts": "history", "gate": "warmth", "id_min_count": 0,
                                       "route_fusion": "constant_query"}),
    "r2led-no_occupancy": ("r2led", {"route_occupancy": False, "gate": "gate", "route_fusion": "cross"}),
    "r2led-attention-no_occupancy": ("r2led", {"route_fusion": "attention", "route_occupancy": False, "gate": "gate"}),
    "r2led-target_aware": ("r2led", {"route_fusion": "target_aware", "gate": "warmth", "id_min_count": 0}),
    "r2led-target_aware-no_occupancy": ("r2led", {"route_fusion": "target_aware", "route_occupancy": False,
                                                  "gate": "gate"}),
    "r2led-constant_query": ("r2led", {"route_fusion": "constant_query", "gate": "gate"}),
    "r2led-exclusive": ("r2led", {"sid_pools": "exclusive", "gate": "gate", "route_fusion": "cross"}),
    "r2led-constant_query-no_occupancy": ("r2led", {"route_fusion": "constant_query", "route_occupancy": False,
                                                    "gate": "gate"}),
}
# R2LED variants named before whole-history counts became the default keep counting candidates (their golden
# logits predate it); "r2led" is the default itself.
VARIANTS = {name: (model, options if model != "r2led" or name == "r2led" or "occupancy_counts" in options
                   else {**options, "occupancy_counts": "candidates"})
            for name, (model, options) in VARIANTS.items()}
# Variants whose long interest is exactly zero when every route is empty (occupancy says "nothing matched").
ZERO_WHEN_EMPTY = [v for v, (name, overrides) in VARIANTS.items()
                   if name == "r2led" and not R2LEDConfig(**overrides).route_occupancy]
BASELINES = [name for name in MODELS if name != "r2led"]
TOP_K_BASELINES = ["sim_hard", "sim_soft", "eta", "twin"]
GROUPS = [f"r_{r}" for r in SPEC.routes] + ["short", "long"]


def make(variant: str, spec: FeatureSpec = SPEC, seed: int = 0):
    name, overrides = VARIANTS[variant]
    torch.manual_seed(seed)
    return build_model(name, spec=spec, config=dataclasses.replace(CONFIG, r2led=R2LEDConfig(**overrides)))


def batch_of(size: int, seed: int = 1, spec: FeatureSpec = SPEC) -> dict[str, torch.Tensor]:
    return random_batch(spec, size, torch.Generator().manual_seed(seed))


def dense_batch(size: int, seed: int = 1) -> dict[str, torch.Tensor]:
    """A random batch where every group of every row has a real first slot, and `long` slot 0 shares the
    target's (known) category, so every retrieval has something to retrieve."""
    batch = batch_of(size, seed)
    batch["target_cat"] = batch["target_cat"].clamp(min=2)
    levels = SPEC.sid_levels
    for group in GROUPS:
        batch[f"{group}_mask"][:, 0] = 1
        batch[f"{group}_item"][:, 0] = torch.arange(size) + 1
        batch[f"{group}_cat"][:, 0] = batch["target_cat"] if group == "long" else 2
        batch[f"{group}_sid"][:, :levels] = batch["target_sid"]
        batch[f"{group}_recency"][:, 0] = 1
    return batch


def widen(batch: dict[str, torch.Tensor], extra: int) -> dict[str, torch.Tensor]:
    """The same batch with `extra` padded slots (mask 0, zeros) appended to every group."""
    wide = dict(batch)
    for group in GROUPS:
        for part in ("item", "cat", "recency", "mask"):
            x = batch[f"{group}_{part}"]
            wide[f"{group}_{part}"] = torch.cat([x, x.new_zeros(x.shape[0], extra)], dim=1)  # (B, n + extra)
        sid = batch[f"{group}_sid"]
        wide[f"{group}_sid"] = torch.cat([sid, sid.new_zeros(sid.shape[0], extra * SPEC.sid_levels)],
                                         dim=1)  # (B, (n + extra)·L)
    return wide


def wider_spec(extra: int) -> FeatureSpec:
    return dataclasses.replace(SPEC, route_k=tuple(k + extra for k in SPEC.route_k),
                               short_window=SPEC.short_window + extra, long_history=SPEC.long_history + extra)


@pytest.mark.parametrize("variant", VARIANTS)
def test_forward_gives_one_finite_logit_per_row(variant):
    model = make(variant)
    logits = model(batch_of(16))
    assert logits.shape == (16,)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("variant", VARIANTS)
def test_appending_padded_slots_leaves_logits_unchanged(variant):
    model = make(variant).eval()
    extra = 5
    wide_model = make(variant, spec=wider_spec(extra)).eval()
    wide_model.load_state_dict(model.state_dict())
    batch = batch_of(24)
    assert (batch["long_mask"] == 0).any() and (batch["long_mask"] == 1).any()
    with torch.no_grad():
        torch.testing.assert_close(wide_model(widen(batch, extra)), model(batch), atol=1e-5, rtol=0)


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_parameter_receives_a_gradient(variant):
    model = make(variant)
    if model.reads_item_impressions:  # as the trainer does: every item has been seen, so each owns its ID row
        model.set_item_impressions(torch.ones(SPEC.num_items))
    CTRTask(model).loss(dense_batch(16)).backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


@pytest.mark.parametrize("variant", VARIANTS)
def test_overfits_32_examples(variant):
    batch = batch_of(32, seed=3)
    batch["target_item"] = torch.randperm(SPEC.num_items - 1, generator=torch.Generator().manual_seed(3))[:32] + 1
    task = CTRTask(make(variant, seed=0))
    optimizer = torch.optim.Adam(task.parameters(), lr=1e-2)
    for _ in range(300):  # about 15 steps suffice for every variant; 300 is a generous ceiling
        optimizer.zero_grad()
        loss = task.loss(batch)
        correct = ((task(batch) > 0).float() == batch["label"]).all()
        if loss.item() < 0.1 and correct:
            break
        loss.backward()
        optimizer.step()
    task.eval()
    assert task.loss(batch).item() < 0.1
    assert ((task.predict_proba(batch) > 0.5).float() == batch["label"]).all()


@pytest.mark.parametrize("variant", VARIANTS)
def test_same_seed_gives_identical_logits(variant):
    batch = batch_of(8)
    first, second = make(variant, seed=7).eval(), make(variant, seed=7).eval()
    with torch.no_grad():
        assert torch.equal(first(batch), second(batch))
        assert not torch.equal(first(batch), make(variant, seed=8).eval()(batch))


@pytest.mark.parametrize("name", BASELINES)
def test_baselines_never_read_sids(name):
    model = make(name).eval()
    batch = batch_of(8)
    scrambled = dict(batch)
    for key in ["target_sid"] + [f"{g}_sid" for g in GROUPS]:
        scrambled[key] = torch.randint_like(batch[key], 1, SPEC.sid_vocab)
    with torch.no_grad():
        assert torch.equal(model(scrambled), model(batch))
    assert not any("sid" in name for name, _ in model.named_parameters())


@pytest.mark.parametrize("name", BASELINES)
def test_sid_controls_fuse_their_items_sids_as_r2led_does(name):
    torch.manual_seed(0)
    model = build_model(name, spec=SPEC, config=dataclasses.replace(CONFIG, name=name, item_sids=True)).eval()
    torch.manual_seed(0)
    r2led = build_model("r2led", spec=SPEC, config=dataclasses.replace(CONFIG, name="r2led"))
    batch = batch_of(8)
    other_sids = dict(batch, target_sid=batch["target_sid"] % 5 + 1)
    with torch.no_grad():
        assert not torch.allclose(model(other_sids), model(batch))
    assert model.embedding.fusion.mode == r2led.embedding.fusion.mode == R2LEDConfig().gate
    own = {n: p.shape for n, p in model.embedding.named_parameters()}
    assert own == {n: p.shape for n, p in r2led.embedding.named_parameters()}


def test_item_sids_is_refused_for_r2led():
    with pytest.raises(ConfigError, match="model.item_sids"):
        dataclasses.replace(CONFIG, name="r2led", item_sids=True).check()


def test_sim_hard_over_a_sid_prefix_keeps_the_most_recent_matching_behaviours():
    config = dataclasses.replace(CONFIG, name="sim_hard", sim_hard=SIMHardConfig(
        retrieve_k=3, match="sid_prefix", sid_prefix=2))
    retrieval = build_model("sim_hard", spec=SPEC, config=config).long_interest
    sid = torch.tensor([[[4, 2, 1], [4, 2, 9], [4, 3, 1], [5, 2, 1], [4, 2, 5], [4, 2, 2], [0, 0, 0]]])  # (1, 7, L)
    mask = torch.tensor([[1, 1, 1, 1, 1, 1, 0]]).bool()
    behaviours = Behaviours(h=torch.randn(1, 7, CONFIG.embedding_dim), mask=mask, recency=mask.long(),
                            cat=torch.full((1, 7), 2), sid=sid)
    target = Target(h=torch.randn(1, CONFIG.embedding_dim), cat=torch.tensor([2]), sid=torch.tensor([[4, 2, 7]]))
    idx, selected = retrieval.select(target, behaviours)
    assert idx[selected].tolist() == [0, 1, 4]  # prefix (4, 2), most recent (lowest slot) first, k = 3
    unknown = Target(h=target.h, cat=target.cat, sid=torch.tensor([[0, 0, 0]]))  # unknown codes match nothing
    assert not retrieval.select(unknown, behaviours)[1].any()
    with pytest.raises(ValueError, match="sid_prefix"):
        build_model("sim_hard", spec=SPEC, config=dataclasses.replace(config, sim_hard=SIMHardConfig(
            match="sid_prefix", sid_prefix=4)))


def test_two_stage_sim_hard_reads_the_offline_category_route_best_first():
    spec = dataclasses.replace(SPEC, routes=(*SPEC.routes, "category"), route_k=(*SPEC.route_k, 6))
    config = dataclasses.replace(CONFIG, name="sim_hard", sim_hard=SIMHardConfig(retrieve_k=4, search="offline"))
    torch.manual_seed(0)
    model = build_model("sim_hard", spec=spec, config=config).eval()
    assert model.input_groups == ("r_category", "short")
    mask = torch.tensor([[1, 1, 0, 1, 1, 1]]).bool()
    pool = Behaviours(h=torch.randn(1, 6, CONFIG.embedding_dim), mask=mask, recency=mask.long(),
                      cat=torch.full((1, 6), 5))
    target = Target(h=torch.randn(1, CONFIG.embedding_dim), cat=torch.tensor([2]))  # categories are not re-checked
    idx, selected = model.long_interest.select(target, pool)
    assert idx[selected].tolist() == [0, 1, 3, 4]  # the route's order, padding skipped, k = 4
    # R2LED never reads the baseline's route by default.
    torch.manual_seed(0)
    assert "r_category" not in build_model("r2led", spec=spec, config=CONFIG).input_groups
    with pytest.raises(ValueError, match="retrieval.routes"):
        build_model("sim_hard", spec=SPEC, config=config)
    with pytest.raises(ConfigError, match="model.sim_hard.search"):
        SIMHardConfig(search="offline", match="sid_prefix").check("model.sim_hard")


def test_sid_only_r2led_reads_sids_and_not_item_ids():
    model = make("r2led-sid_only").eval()
    batch = batch_of(8)
    other_items = dict(batch, target_item=batch["target_item"] % 7 + 1)
    other_sids = dict(batch, target_sid=batch["target_sid"] % 5 + 1)
    with torch.no_grad():
        assert torch.equal(model(other_items), model(batch))
        assert not torch.allclose(model(other_sids), model(batch))


@pytest.mark.parametrize("variant", VARIANTS)
def test_input_groups_name_only_columns_the_model_reads(variant):
    model = make(variant)
    batch = batch_of(4)
    needed = {key: batch[key] for key in [*columns_for(model.input_groups, WIDE_LAYOUT), *model.extra_input_columns]}
    assert torch.equal(model.eval()(needed), model(batch))


def test_input_groups_per_model():
    assert make("r2led").input_groups == ("r_sid1", "r_sid2", "r_collab", "short")
    assert make("r2led-subset").input_groups == ("r_sid2", "r_collab", "short")
    assert make("din").input_groups == ("short",)
    for name in BASELINES[1:]:
        assert make(name).input_groups == ("long", "short")


# --- retrieval -------------------------------------------------------------------------------------------------


def test_top_k_slots_prefers_high_scores_breaks_ties_by_slot_and_skips_ineligible():
    scores = torch.tensor([[3.0, 1.0, 2.0, 5.0, 0.0], [1.0, 1.0, 1.0, 1.0, 1.0]])
    eligible = torch.tensor([[1, 1, 1, 0, 0], [0, 1, 0, 1, 1]]).bool()
    idx, selected = top_k_slots(scores, eligible, 2)
    assert idx.tolist() == [[0, 2], [1, 3]]
    assert selected.all()
    idx, selected = top_k_slots(scores, eligible, 4)
    assert idx[:, :3].tolist() == [[0, 2, 1], [1, 3, 4]]
    assert selected.tolist() == [[True, True, True, False], [True, True, True, False]]
    idx, selected = top_k_slots(scores, eligible, 9)  # k above n: capped at n
    assert idx.shape == (2, 5) and selected.sum().item() == 6


def _long_behaviours(cat: list[int], mask: list[int]) -> Behaviours:
    n = len(cat)
    return Behaviours(h=torch.randn(1, n, CONFIG.embedding_dim), mask=torch.tensor([mask]).bool(),
                      recency=torch.tensor([mask]), cat=torch.tensor([cat]))


def test_sim_hard_keeps_the_most_recent_same_category_behaviours():
    retrieval = make("sim_hard").long_interest  # retrieve_k = 4
    behaviours = _long_behaviours(cat=[3, 1, 3, 2, 3, 3, 3, 0], mask=[1, 1, 1, 1, 1, 1, 1, 0])
    target = Target(h=torch.randn(1, CONFIG.embedding_dim), cat=torch.tensor([3]))
    idx, selected = retrieval.select(target, behaviours)
    assert idx[selected].tolist() == [0, 2, 4, 5]
    behaviours = _long_behaviours(cat=[3, 1, 3, 0, 0, 0, 0, 0], mask=[1, 1, 1, 0, 0, 0, 0, 0])
    idx, selected = retrieval.select(target, behaviours)
    assert idx[selected].tolist() == [0, 2]
    unknown = Target(h=target.h, cat=torch.tensor([1]))  # "unknown" category matches nothing, even itself
    assert not retrieval.select(unknown, behaviours)[1].any()


@pytest.mark.parametrize("name", TOP_K_BASELINES)
def test_top_k_baselines_select_only_real_slots(name):
    model = make(name).eval()
    batch = batch_of(32, seed=5)
    with torch.no_grad():
        target, groups = model.encode(batch)
        idx, selected = model.long_interest.select(target, groups["long"])
    real = groups["long"].mask
    assert real.gather(1, idx)[selected].all()  # a selected slot is always a real one
    if name != "sim_hard":  # every real slot is eligible: exactly min(k, #real) are kept
        assert torch.equal(selected.sum(1), real.sum(1).clamp(max=RETRIEVE_K))


@pytest.mark.parametrize("name", TOP_K_BASELINES)
def test_each_top_k_baseline_keeps_the_k_of_its_own_section(name):
    config = dataclasses.replace(CONFIG, **{name: dataclasses.replace(getattr(CONFIG, name), retrieve_k=2)})
    torch.manual_seed(0)
    model = build_model(name, spec=SPEC, config=config).eval()
    with torch.no_grad():
        target, groups = model.encode(dense_batch(16))
        _, selected = model.long_interest.select(target, groups["long"])
    assert selected.shape[1] == 2  # the other models' sections (k = 4) are not read


@pytest.mark.parametrize("name", ["sim_soft", "eta", "twin"])
def test_top_k_baselines_keep_the_best_scored_real_slots(name):
    model = make(name).eval()
    batch = batch_of(32, seed=6)
    with torch.no_grad():
        target, groups = model.encode(batch)
        long = groups["long"]
        scores, _ = model.long_interest.retriever(target, long)
        idx, selected = model.long_interest.select(target, long)
    for row in range(32):
        kept = idx[row][selected[row]]
        dropped = [j for j in range(SPEC.long_history) if long.mask[row, j] and j not in kept.tolist()]
        if len(kept) and dropped:
            assert scores[row, kept].min() >= scores[row, dropped].max()


def test_eta_ranks_by_hamming_distance_of_simhash_signatures():
    retriever = make("eta").long_interest.retriever
    h = torch.randn(1, 6, CONFIG.embedding_dim)
    target = Target(h=h[:, 2], cat=torch.tensor([2]))
    scores, _ = retriever(target, Behaviours(h=h, mask=torch.ones(1, 6).bool(), recency=torch.ones(1, 6).long(),
                                             cat=torch.ones(1, 6).long()))
    signs = (h @ retriever.hyperplanes) > 0  # (1, 6, bits)
    expected = -(signs != signs[:, 2:3]).sum(-1).float()
    assert torch.equal(scores, expected)
    assert scores[0, 2] == 0  # the target is at distance 0 from itself


def test_twin_gsu_and_esu_share_one_attention_module():
    model = make("twin")
    assert model.long_interest.retriever.attention is model.long_interest.attention


# --- padding and empty inputs ----------------------------------------------------------------------------------


def test_masked_softmax_of_an_all_masked_row_is_zero():
    scores = torch.tensor([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]], requires_grad=True)
    mask = torch.tensor([[1, 1, 0], [0, 0, 0]]).bool()
    weights = masked_softmax(scores, mask)
    expected = torch.cat([torch.softmax(torch.tensor([1.0, 2.0]), 0), torch.zeros(1)])
    torch.testing.assert_close(weights[0], expected)
    assert torch.equal(weights[1], torch.zeros(3))
    weights.sum().backward()
    assert torch.isfinite(scores.grad).all()


def empty_batch(size: int) -> dict[str, torch.Tensor]:
    batch = batch_of(size)
    for group in GROUPS:
        for part in ("item", "cat", "sid", "recency", "mask"):
            batch[f"{group}_{part}"] = torch.zeros_like(batch[f"{group}_{part}"])
    return batch


@pytest.mark.parametrize("variant", ZERO_WHEN_EMPTY)
def test_r2led_with_every_route_and_short_empty_gives_finite_logits_and_zero_long_interest(variant):
    model = make(variant)
    batch = empty_batch(8)
    logits = model(batch)
    assert torch.isfinite(logits).all()
    target, groups = model.encode(batch)
    assert torch.equal(model.long_interest(target, groups), torch.zeros(8, CONFIG.embedding_dim))
    CTRTask(model).loss(batch).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("name", BASELINES)
def test_baselines_with_empty_history_give_finite_logits(name):
    logits = make(name)(empty_batch(8))
    assert torch.isfinite(logits).all()


def test_attention_fusion_ignores_empty_routes():
    model = make("r2led-attention-no_occupancy").eval()
    batch = batch_of(8)
    batch["r_sid1_mask"] = torch.zeros_like(batch["r_sid1_mask"])
    for part in ("item", "cat", "sid", "recency"):
        batch[f"r_sid1_{part}"] = torch.zeros_like(batch[f"r_sid1_{part}"])
    with torch.no_grad():
        target, groups = model.encode(batch)
        u = torch.stack([model.long_interest.attention[r](target.h, groups[f"r_{r}"]) for r in SPEC.routes], 1)
        nonempty = torch.stack([groups[f"r_{r}"].mask.any(1) for r in SPEC.routes], 1)
        poisoned = u.clone()
        poisoned[:, 0] = 1e3  # an empty route's interest must get zero weight whatever it holds
        fusion = model.long_interest.fusion
        torch.testing.assert_close(fusion(target.h, poisoned, nonempty), fusion(target.h, u, nonempty))


# --- registry and task -----------------------------------------------------------------------------------------


def test_registry_names_and_unknown_model_error():
    assert set(MODELS) == {"r2led", "din", "din_long", "sim_hard", "sim_soft", "eta", "sdim", "twin"}
    with pytest.raises(ValueError) as error:
        build_model("nope", spec=SPEC, config=CONFIG)
    for name in MODELS:
        assert name in str(error.value)


def test_r2led_rejects_routes_missing_from_the_data():
    with pytest.raises(ValueError, match="sid9"):
        build_model("r2led", spec=SPEC, config=dataclasses.replace(CONFIG, r2led=R2LEDConfig(routes=("sid1", "sid9"))))


def test_task_loss_is_bce_and_predict_proba_is_the_sigmoid_of_the_logits():
    task = CTRTask(make("r2led")).eval()
    batch = batch_of(16)
    logits = task(batch)
    torch.testing.assert_close(task.loss(batch), F.binary_cross_entropy_with_logits(logits, batch["label"]))
    proba = task.predict_proba(batch)
    assert proba.shape == (16,) and not proba.requires_grad
    torch.testing.assert_close(proba, torch.sigmoid(logits).detach())
    assert task.input_groups == task.model.input_groups


def test_ids_beyond_a_models_tables_map_to_padding_and_unknown():
    batch = batch_of(6)
    batch["target_item"][:3] = SPEC.num_items + 7  # indexed after the model was trained
    batch["short_cat"][:, 0] = SPEC.num_categories
    fitted = within_vocab(batch, num_items=SPEC.num_items, num_categories=SPEC.num_categories)
    assert fitted["target_item"][:3].tolist() == [0, 0, 0]
    assert torch.equal(fitted["target_item"][3:], batch["target_item"][3:])
    assert fitted["short_cat"][:, 0].tolist() == [1] * 6
    assert torch.equal(fitted["target_sid"], batch["target_sid"]) and torch.equal(fitted["label"], batch["label"])
    model = make("r2led").eval()
    with torch.no_grad():
        assert torch.isfinite(CTRTask(model).predict_proba(batch)).all()  # the model maps them itself
        assert torch.equal(model(batch), model(fitted))


def test_per_level_gate_is_a_convex_mix_of_the_id_and_each_level():
    from r2led_model.models.layers import LevelGate

    torch.manual_seed(0)
    gate = LevelGate(dim=4, mode="gate", levels=3)
    with torch.no_grad():
        for projection in gate.project:
            projection.weight.copy_(torch.eye(4))
    v = torch.randn(5, 4)
    same = v[:, None, :].expand(5, 3, 4)  # every level equal to the ID embedding
    assert torch.allclose(gate(v, same), v, atol=1e-6)  # weights sum to 1 per dimension
    # Zero-initialised gate logits: an even mix of the four components.
    with torch.no_grad():
        gate.gate.weight.zero_()
        gate.gate.bias.zero_()
    levels = torch.randn(5, 3, 4)
    assert torch.allclose(gate(v, levels), (v + levels.sum(dim=1)) / 4, atol=1e-6)


def test_occupancy_buckets_count_valid_candidates_on_a_log_scale():
    from r2led_model.models.r2led import OCCUPANCY_BUCKETS, occupancy_bucket

    counts = torch.tensor([[0, 1, 2, 3, 4, 7, 8, 20, 1000]])
    assert occupancy_bucket(counts).tolist() == [[0, 1, 2, 2, 3, 3, 4, 5, OCCUPANCY_BUCKETS - 1]]


def test_occupancy_lets_r2led_tell_a_full_pool_from_a_single_match():
    """Per-route attention over copies of one candidate equals attention over it alone: occupancy on tells
    the two apart, occupancy off cannot."""
    model = make("r2led-attention").eval()
    batch = dense_batch(4)
    one = dict(batch)
    k = SPEC.route_k[0]
    for part in ("item", "cat", "recency", "mask"):
        x = batch[f"r_sid1_{part}"].clone()
        x[:, 1:] = x[:, :1]  # the pool filled with copies of its first candidate
        batch[f"r_sid1_{part}"] = x
        y = x.clone()
        y[:, 1:] = 0  # the same candidate alone
        one[f"r_sid1_{part}"] = y
    batch["r_sid1_sid"] = batch["r_sid1_sid"][:, :SPEC.sid_levels].repeat(1, k)
    with torch.no_grad():
        target, full_groups = model.encode(batch)
        _, one_groups = model.encode(one)
        # Attention over copies of one candidate equals attention over it alone; occupancy tells them apart.
        assert not torch.allclose(model.long_interest(target, full_groups), model.long_interest(target, one_groups))
    plain = make("r2led-attention-no_occupancy").eval()
    with torch.no_grad():
        target, full_groups = plain.encode(batch)
        _, one_groups = plain.encode(one)
        assert torch.allclose(plain.long_interest(target, full_groups), plain.long_interest(target, one_groups),
                              atol=1e-5)
