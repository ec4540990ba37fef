"""R2LED's occupancy over the whole history (`model.r2led.occupancy_counts: history`): it reads each route's pool
(r_<route>_pool), so two rows with the same candidates but different lifelong match counts score differently;
with `candidates` the pools are never read; a batch without them is refused with the fix."""

from __future__ import annotations

import pytest
import torch

from r2led_model.models.r2led import HISTORY_OCCUPANCY_BUCKETS, occupancy_bucket
from tests.r2led_model.test_models import batch_of, make


def _with_pools(batch: dict[str, torch.Tensor], value: int) -> dict[str, torch.Tensor]:
    """The batch with every route's pool replaced by `value`, or by its real candidates where that is more."""
    out = dict(batch)
    for key in [k for k in batch if k.endswith("_pool")]:
        real = batch[key.replace("_pool", "_mask")].sum(dim=1)  # (B,)
        out[key] = torch.maximum(real, torch.full_like(real, value))
    return out


def test_history_counts_read_the_pools_and_candidate_counts_do_not():
    batch = batch_of(16)
    few, many = _with_pools(batch, 0), _with_pools(batch, 900)
    history = make("r2led-history_counts").eval()
    with torch.no_grad():
        assert not torch.allclose(history(few), history(many))
    candidates = make("r2led-constant_query").eval()  # counts the real candidates
    with torch.no_grad():
        assert torch.equal(candidates(few), candidates(many))


def test_the_pool_columns_are_what_a_history_count_model_adds_to_its_inputs():
    assert make("r2led-history_counts").extra_input_columns == ("r_sid1_pool", "r_sid2_pool", "r_collab_pool")
    assert make("r2led").extra_input_columns == make("r2led-history_counts").extra_input_columns  # the default
    assert make("r2led-constant_query").extra_input_columns == ()
    assert make("din").extra_input_columns == () and make("sim_hard").extra_input_columns == ()


def test_a_batch_without_pools_is_refused_with_the_fix():
    batch = {k: v for k, v in batch_of(4).items() if not k.endswith("_pool")}
    with pytest.raises(ValueError, match="r_sid1_pool.*re-run build-training-set"):
        make("r2led-history_counts")(batch)


def test_history_buckets_separate_lifelong_counts_a_pool_of_k_cannot():
    counts = torch.tensor([[0, 1, 20, 30, 800, 10**6]])
    assert occupancy_bucket(counts, HISTORY_OCCUPANCY_BUCKETS).tolist() == [[0, 1, 5, 5, 10, 14]]
