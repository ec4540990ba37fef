"""The warmth gate (`model.r2led.gate: warmth`): its prior, its out-of-vocabulary row and ID dropout, the
impressions it reads, and what a trained one does on a world where only warm items' IDs carry signal."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from r2led_model.config import ConfigError, ModelConfig, R2LEDConfig, load_config
from r2led_model.evaluation.counterfactuals import frozen, mean_refinement
from r2led_model.models import CTRTask, FeatureSpec, build_model
from r2led_model.models.inputs import random_batch
from r2led_model.models.layers import WARMTH_PRIOR_LOGIT, log2_bucket
from r2led_model.training.feed import value_counts

SPEC = FeatureSpec(num_items=64, num_categories=5, sid_levels=2, sid_vocab=9, routes=("sid1", "collab"),
                   route_k=(3, 3), short_window=3, long_history=6, recency_buckets=4)


def warmth_model(**options) -> torch.nn.Module:
    torch.manual_seed(0)
    config = ModelConfig(embedding_dim=8, attention_heads=2, mlp_dims=(16,),
                         r2led=R2LEDConfig(gate="warmth", **options))
    return build_model("r2led", spec=SPEC, config=config)


def test_warmth_buckets_are_log2_of_the_count_capped_at_the_last():
    counts = torch.tensor([0, 1, 2, 3, 4, 7, 8, 100, 10_000])
    assert log2_bucket(counts, 8).tolist() == [0, 1, 2, 2, 3, 3, 4, 7, 7]
    assert log2_bucket(counts, 3).tolist() == [0, 1, 2, 2, 2, 2, 2, 2, 2]


def test_at_initialisation_the_gate_trusts_sids_for_cold_items_and_the_id_for_warm_ones():
    model = warmth_model().eval()  # no ID dropout: each item at its own bucket
    counts = torch.zeros(SPEC.num_items, dtype=torch.long)
    counts[1:7] = torch.tensor([0, 1, 3, 10, 40, 100])  # buckets 0, 1, 2, 4, 6, 7
    model.set_item_impressions(counts)
    items = torch.arange(1, 7)
    sid = torch.randint(1, SPEC.sid_vocab, (6, SPEC.sid_levels), generator=torch.Generator().manual_seed(1))
    g = model.embedding.gate_weights(items, sid).squeeze(-1)  # (6, 1) → (6,)
    assert g[0].item() == pytest.approx(torch.sigmoid(torch.tensor(-WARMTH_PRIOR_LOGIT)).item(), abs=1e-6)
    assert g[-1].item() == pytest.approx(torch.sigmoid(torch.tensor(WARMTH_PRIOR_LOGIT)).item(), abs=1e-6)
    assert torch.all(g[1:] > g[:-1])  # warmer → more ID
    assert g[0] < 0.5 < g[-1]


def test_rare_items_read_the_shared_oov_row_and_padding_stays_zero():
    model = warmth_model(id_min_count=3, id_dropout=0.0).eval()
    counts = torch.zeros(SPEC.num_items, dtype=torch.long)
    counts[5], counts[6] = 2, 3
    model.set_item_impressions(counts)
    items = torch.tensor([[0, 5, 6, 7]])
    e_id = model.embedding.lookup(items, torch.zeros(1, 4, SPEC.sid_levels, dtype=torch.long)).e_id
    oov = model.embedding.oov.detach()
    assert torch.equal(e_id[0, 0], torch.zeros(8))
    assert torch.equal(e_id[0, 1], oov) and torch.equal(e_id[0, 3], oov)  # 2 < 3 impressions, and 0
    assert torch.equal(e_id[0, 2], model.embedding.item.weight[6].detach())


def test_id_dropout_hits_the_stated_share_while_training_and_never_while_scoring():
    model = warmth_model(id_min_count=0, id_dropout=0.25)
    items = torch.randint(1, SPEC.num_items, (400, 50), generator=torch.Generator().manual_seed(2))
    sid = torch.zeros(400, 50, SPEC.sid_levels, dtype=torch.long)
    oov = model.embedding.oov.detach()
    model.train()
    e_id = model.embedding.lookup(items, sid).e_id
    dropped = (e_id == oov).all(dim=-1).float().mean().item()
    n = items.numel()
    assert abs(dropped - 0.25) < 5 * (0.25 * 0.75 / n) ** 0.5
    model.eval()
    e_id = model.embedding.lookup(items, sid).e_id
    assert not (e_id == oov).all(dim=-1).any()


def test_an_id_read_from_the_oov_row_is_cold_to_the_gate_and_its_bucket_learns_from_dropped_targets():
    model = warmth_model(id_min_count=3, id_dropout=0.5)
    counts = torch.full((SPEC.num_items,), 40, dtype=torch.long)  # bucket 6
    counts[5] = 2  # rare: below id_min_count
    model.set_item_impressions(counts)
    sid = torch.zeros(1, 3, SPEC.sid_levels, dtype=torch.long)
    model.eval()
    views = model.embedding.lookup(torch.tensor([[5, 6, 0]]), sid, real=torch.tensor([[True, True, True]]))
    assert views.warmth.tolist() == [[0, 6, 0]]  # rare, warm, indexed after training
    model.train()
    items = torch.full((200, 3), 6)
    views = model.embedding.lookup(items, torch.zeros(200, 3, SPEC.sid_levels, dtype=torch.long))
    dropped = (views.e_id == model.embedding.oov.detach()).all(dim=-1)
    assert dropped.any() and (~dropped).any()
    assert torch.equal(views.warmth == 0, dropped)  # exactly the dropped lookups are cold
    # Every training target has an impression, so only dropped targets reach the cold bucket's bias.
    batch = random_batch(SPEC, 64, torch.Generator().manual_seed(6))
    batch["target_item"] = torch.randint(1, SPEC.num_items, (64,), generator=torch.Generator().manual_seed(7))
    CTRTask(model).loss(batch).backward()
    assert model.embedding.fusion.warmth_bias.grad[0] != 0


def test_a_dropped_or_rare_id_leaves_its_own_row_untouched_by_a_step():
    model = warmth_model(id_min_count=2, id_dropout=0.0)
    counts = torch.full((SPEC.num_items,), 5, dtype=torch.long)
    counts[9] = 1  # rare: reads the OOV row
    model.set_item_impressions(counts)
    batch = random_batch(SPEC, 16, torch.Generator().manual_seed(3))
    batch["target_item"][:] = 9
    for key in [k for k in batch if k.endswith("_item") and k != "target_item"]:
        batch[key] = torch.where(batch[key] == 9, 10, batch[key])
    task = CTRTask(model)
    loss = task.loss(batch)
    loss.backward()
    assert torch.count_nonzero(model.embedding.item.weight.grad[9]) == 0
    assert torch.count_nonzero(model.embedding.oov.grad) > 0


def test_impressions_are_saved_and_loaded_with_the_weights():
    model = warmth_model()
    counts = torch.arange(SPEC.num_items, dtype=torch.long)
    model.set_item_impressions(counts)
    other = warmth_model()
    other.load_state_dict(model.state_dict())
    assert torch.equal(other.embedding.impressions, counts)
    with pytest.raises(ValueError, match="impressions for"):
        model.set_item_impressions(torch.zeros(3, dtype=torch.long))


def test_value_counts_reads_one_column_of_every_file(tmp_path):
    for i, values in enumerate([[1, 1, 3], [3, 3, 0, 9]]):
        pq.write_table(pa.table({"target_item": values, "other": [0] * len(values)}), tmp_path / f"{i}.parquet")
    counts = value_counts([str(tmp_path / "0.parquet"), str(tmp_path / "1.parquet")], "target_item", 5)
    assert counts.tolist() == [1, 2, 0, 3, 0]  # 9 is outside the table and not counted


def test_the_warmth_gate_refuses_per_level_fusion_and_out_of_range_options():
    with pytest.raises(ConfigError, match="model.r2led.sid_fusion"):
        load_config("tiny", ["model.r2led.gate=warmth", "model.r2led.sid_fusion=per_level"])
    with pytest.raises(ConfigError, match="model.r2led.id_dropout"):
        load_config("tiny", ["model.r2led.id_dropout=1.0"])


def test_the_frozen_counterfactual_uses_one_id_weight_for_every_item():
    model = warmth_model(id_dropout=0.0).eval()
    counts = torch.randint(0, 50, (SPEC.num_items,), generator=torch.Generator().manual_seed(4))
    model.set_item_impressions(counts)
    batches = [random_batch(SPEC, 32, torch.Generator().manual_seed(5 + i)) for i in range(3)]
    means = mean_refinement(model, batches)
    assert means.gate.shape == (1,)
    g = torch.cat([model.embedding.gate_weights(b["target_item"], b["target_sid"]) for b in batches])
    assert means.gate.item() == pytest.approx(g.mean().item(), rel=1e-5)
    with frozen(model, gate=means.gate):
        b = batches[0]
        h = model.embedding.embed_target(b["target_item"], b["target_cat"], b["target_sid"])[0]
        e_id, e_sid, _ = model.embedding.lookup(b["target_item"], b["target_sid"])
        fusion = model.embedding.fusion
        expected = means.gate * e_id + (1 - means.gate) * fusion.project(e_sid) + model.embedding.category(b["target_cat"])
        assert torch.allclose(h, expected, atol=1e-6)
    assert model.embedding.fusion.frozen is None


def test_a_target_indexed_after_training_reads_the_oov_row_not_the_padding_row():
    model = warmth_model(id_min_count=0, id_dropout=0.0).eval()
    model.set_item_impressions(torch.full((SPEC.num_items,), 9, dtype=torch.long))
    sid = torch.ones(2, SPEC.sid_levels, dtype=torch.long)
    # within_vocab maps an item the model has no row for to 0; as a target (always a real item) it is unknown.
    e_id = model.embedding.lookup(torch.tensor([0, 3]), sid, real=torch.tensor([True, True])).e_id
    assert torch.equal(e_id[0], model.embedding.oov.detach())
    assert torch.equal(e_id[1], model.embedding.item.weight[3].detach())
    h_unknown = model.embedding.embed_target(torch.tensor([0]), torch.tensor([1]), sid[:1])[0]
    h_padding = model.embedding(torch.tensor([[0]]), torch.tensor([[1]]), sid[:1, None], real=torch.tensor([[False]]))
    assert not torch.allclose(h_unknown, h_padding[:, 0])


def test_with_the_target_the_gate_of_a_behaviour_moves_with_the_target_and_starts_at_the_prior():
    model = warmth_model(id_dropout=0.0, warmth_target=True).eval()
    model.set_item_impressions(torch.full((SPEC.num_items,), 40, dtype=torch.long))  # bucket 6
    embedding = model.embedding
    items = torch.tensor([[5, 6]]).expand(2, 2)  # the same two behaviours in two rows
    sid = torch.ones(2, 2, SPEC.sid_levels, dtype=torch.long)
    targets = embedding.lookup(torch.tensor([7, 8]), torch.tensor([[1, 2], [3, 4]]))
    context = embedding.fusion.context(targets.e_id, targets.e_sid)  # (2, 2d)
    views = embedding.lookup(items, sid)
    g = embedding.fusion.weights(views.e_id, views.e_sid, context, warmth=views.warmth)  # (2, 2, 1)
    prior = torch.sigmoid(embedding.fusion.warmth_bias[6])
    assert torch.allclose(g, prior.expand_as(g))  # u starts at 0: the prior, whatever the target
    with torch.no_grad():
        embedding.fusion.gate.weight.normal_(generator=torch.Generator().manual_seed(8))
    g = embedding.fusion.weights(views.e_id, views.e_sid, context, warmth=views.warmth)
    assert not torch.allclose(g[0], g[1], atol=1e-4)  # same behaviours, another target: another weight
    with pytest.raises(ConfigError, match="model.r2led.warmth_target"):
        load_config("tiny", ["model.r2led.gate=gate", "model.r2led.warmth_target=true"])  # the warmth gate's only
