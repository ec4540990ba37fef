"""Narrow inputs (input layout 2): the model looks each slot's category, SID codes and mask up from the item
index, and scores exactly what it scores from the wide inputs built from the same index."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from r2led_model.config import ETAConfig, ModelConfig, R2LEDConfig, SDIMConfig, SIMHardConfig, TopKRetrievalConfig
from r2led_model.models import MODELS, FeatureSpec, build_model
from r2led_model.models.inputs import narrow, random_batch
from r2led_model.models.item_lookup import ItemLookupError, lookup_arrays, lookup_disagreements
from r2led_model.tracking.bundle import DataVersions, ModelBundle

SPEC = FeatureSpec(num_items=120, num_categories=6, sid_levels=3, sid_vocab=12, routes=("sid1", "sid2", "collab"),
                   route_k=(4, 3, 5), short_window=4, long_history=12, recency_buckets=5)
TOP_K = TopKRetrievalConfig(retrieve_k=4)
CONFIG = ModelConfig(embedding_dim=8, attention_heads=2, mlp_dims=(16,), dropout=0.0,
                     sim_hard=SIMHardConfig(retrieve_k=4), sim_soft=TOP_K, twin=TOP_K,
                     eta=ETAConfig(retrieve_k=4, hash_bits=8), sdim=SDIMConfig(hashes=3, hash_bits=2))
LEVELS = SPEC.sid_levels


def index_of(items: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An item_index of `items` items (indices 1..items), categories 2.. and SID codes + 1, shuffled rows."""
    rng = np.random.default_rng(seed)
    item_idx = rng.permutation(np.arange(1, items + 1))
    category_idx = rng.integers(2, SPEC.num_categories, size=items)
    sid = rng.integers(1, SPEC.sid_vocab, size=(items, LEVELS))
    return item_idx, category_idx, sid


def widened_by_hand(batch: dict[str, torch.Tensor], category: np.ndarray, sid: np.ndarray) -> dict[str, torch.Tensor]:
    """The wide batch whose slots carry the lookup's category and SIDs, computed slot by slot."""
    wide = dict(batch)
    for key in [k for k in batch if k.endswith("_item")]:
        prefix = key[:-len("_item")]
        items = batch[key].numpy()
        cats = np.array([category[i] if i else (1 if prefix == "target" else 0) for i in items.ravel()])
        codes = np.array([sid[i] for i in items.ravel()]).reshape(*items.shape, LEVELS)
        wide[f"{prefix}_cat"] = torch.as_tensor(cats.reshape(items.shape))
        if prefix == "target":
            wide["target_sid"] = torch.as_tensor(codes)
        else:
            wide[f"{prefix}_sid"] = torch.as_tensor(codes.reshape(items.shape[0], -1))
            wide[f"{prefix}_mask"] = torch.as_tensor((items != 0).astype(np.int64))
    return wide


def build(name: str, seed: int = 0, **r2led):
    torch.manual_seed(seed)
    return build_model(name, spec=SPEC, config=dataclasses.replace(CONFIG, r2led=R2LEDConfig(**r2led))).eval()


@pytest.mark.parametrize("name", MODELS)
def test_a_narrow_batch_scores_exactly_as_the_wide_batch_built_from_the_same_index(name):
    category, sid = lookup_arrays(*index_of(SPEC.num_items - 1))
    model = build(name)
    model.item_lookup.set(category, sid)
    narrow_batch = narrow(random_batch(SPEC, 16, torch.Generator().manual_seed(3)))
    assert "short_cat" not in narrow_batch and "target_sid" not in narrow_batch
    with torch.no_grad():
        assert torch.equal(model(narrow_batch), model(widened_by_hand(narrow_batch, category, sid)))


def test_the_lookup_rows_follow_item_index_and_a_slot_is_real_iff_its_item_is_not_padding():
    item_idx, category_idx, sid = index_of(6)
    category, codes = lookup_arrays(item_idx, category_idx, sid)
    assert category[0] == 0 and codes[0].tolist() == [0] * LEVELS
    for i, c, s in zip(item_idx, category_idx, sid):
        assert category[i] == c and codes[i].tolist() == s.tolist()
    model = build("din")
    model.item_lookup.set(category, codes)
    batch = {"target_item": torch.tensor([0, 3, 9]), "short_item": torch.tensor([[3, 0, 0, 0], [9, 6, 0, 0],
                                                                                   [0, 0, 0, 0]])}
    wide = model.item_lookup.widen(batch)
    assert wide["short_mask"].tolist() == [[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0]]
    # 9 has no lookup row (indexed after the model's lookups): an unknown item, still a real slot.
    assert wide["target_cat"].tolist() == [1, category[3], 1]
    assert wide["short_cat"][1].tolist() == [1, category[6], 0, 0]
    assert wide["short_sid"][1, LEVELS:2 * LEVELS].tolist() == codes[6].tolist()
    assert wide["target_sid"][0].tolist() == [0] * LEVELS


def test_an_item_beyond_the_id_table_but_in_the_lookups_keeps_its_sids_and_is_a_real_slot():
    item_idx, category_idx, sid = index_of(SPEC.num_items + 9)  # 10 items indexed after the model's ID table
    category, codes = lookup_arrays(item_idx, category_idx, sid)
    model = build("r2led", gate="warmth", id_min_count=0)
    model.item_lookup.set(category, codes)
    new_item = SPEC.num_items + 4
    inputs = model.inputs({"target_item": torch.tensor([new_item]), "short_item": torch.tensor([[new_item, 0, 0, 0]])})
    assert inputs["target_item"].tolist() == [0] and inputs["short_item"][0, 0] == 0  # no ID row of its own
    assert inputs["short_mask"][0].tolist() == [1, 0, 0, 0]  # but a behaviour, which the warmth gate reads as OOV
    assert inputs["target_sid"][0].tolist() == codes[new_item].tolist()
    assert inputs["short_cat"][0, 0] == category[new_item]  # a category the model knows


def test_a_model_without_lookups_refuses_a_narrow_batch_and_says_how_to_set_them():
    model = build("r2led")
    batch = random_batch(SPEC, 4, torch.Generator().manual_seed(1))
    with torch.no_grad():
        model(batch)  # wide inputs need none
        with pytest.raises(ItemLookupError, match="item_index"):
            model(narrow(batch))


def test_lookups_travel_with_the_weights_and_a_state_dict_saved_without_them_still_scores_wide_inputs():
    category, sid = lookup_arrays(*index_of(SPEC.num_items - 1))
    model = build("r2led")
    model.item_lookup.set(category, sid)
    versions = DataVersions(codebook_version="cb", collab_version="cv")
    batch = random_batch(SPEC, 8, torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = model(narrow(batch))
    loaded = ModelBundle.from_bytes(ModelBundle(CONFIG, SPEC, versions,
                                                model.state_dict()).to_bytes()).build()
    with torch.no_grad():
        assert torch.equal(loaded(narrow(batch)), expected)

    old_state = {k: v for k, v in model.state_dict().items() if not k.startswith("item_lookup.")}  # layout 1
    old = ModelBundle(CONFIG, SPEC, versions, old_state).build()
    with torch.no_grad():
        assert torch.equal(old(batch), model(batch))
        with pytest.raises(ItemLookupError):
            old(narrow(batch))
        old.model.item_lookup.set(category, sid)  # derived from the tables, as `r2led score` does
        assert torch.equal(old(narrow(batch)), expected)


def test_disagreements_name_the_items_whose_category_or_sids_changed():
    category, sid = lookup_arrays(*index_of(20))
    mine = (category, sid)
    assert lookup_disagreements(mine, lookup_arrays(*index_of(20))) == []
    extended = (np.r_[category, [3, 4]], np.r_[sid, [[1] * LEVELS, [2] * LEVELS]])
    assert lookup_disagreements(mine, extended) == []  # items appended after the model agree
    refreshed = sid.copy()
    refreshed[7] = refreshed[7] % (SPEC.sid_vocab - 1) + 1
    problems = lookup_disagreements(mine, (category, refreshed))
    assert len(problems) == 1 and problems[0].startswith("item index 7:")
    assert lookup_disagreements(mine, (category[:10], sid[:10]))[-1].startswith("item_index names 9")


def test_lookup_rows_are_refused_when_their_shapes_or_padding_row_are_wrong():
    model = build("din")
    category, sid = lookup_arrays(*index_of(5))
    with pytest.raises(ItemLookupError, match="sid"):
        model.item_lookup.set(category, sid[:, :1])
    bad = category.copy()
    bad[0] = 2
    with pytest.raises(ItemLookupError, match="padding"):
        model.item_lookup.set(bad, sid)


def test_integer_inputs_of_any_width_score_as_int64():
    category, sid = lookup_arrays(*index_of(SPEC.num_items - 1))
    model = build("r2led")
    model.item_lookup.set(category, sid)
    batch = narrow(random_batch(SPEC, 8, torch.Generator().manual_seed(4)))
    # As training_examples stores them: items int32, recency buckets int8.
    stored = {k: v.to(torch.int8 if k.endswith("_recency") else torch.int32) if k != "label" else v
              for k, v in batch.items()}
    with torch.no_grad():
        assert torch.equal(model(stored), model(batch))
