"""The oracle's metrics on hand-made truths, and the share of its lift."""

from __future__ import annotations

import math

import numpy as np
import pytest

from r2led_model.worlds.oracle import OracleTruth, lift_share, oracle_metrics, quality_from_clicks, with_ceiling


def test_oracle_auc_on_a_hand_made_truth_is_exact():
    # Truth for four samples, stored out of order; the rows asked for come in yet another order.
    truth = OracleTruth.from_arrays(np.array([40, 10, 30, 20]), np.array([0.9, 0.2, 0.6, 0.4]))
    rows = np.array([10, 20, 30, 40, 30])
    labels = np.array([0, 1, 0, 1, 1])
    users = np.array([1, 1, 2, 2, 2])
    got = oracle_metrics(truth, rows, users, labels)
    # Positives score 0.4, 0.9, 0.6; negatives 0.2, 0.6. Pairs: (0.4>0.2) (0.4<0.6) (0.9>0.2) (0.9>0.6)
    # (0.6>0.2) (0.6=0.6 → ½): 4.5 / 6.
    assert got["auc"] == pytest.approx(4.5 / 6)
    # User 1: {pos 0.4, neg 0.2} → 1; user 2: {neg 0.6, pos 0.9, pos 0.6} → (1 + ½)/2 = 0.75; weights 2 and 3.
    assert got["gauc"] == pytest.approx((2 * 1.0 + 3 * 0.75) / 5)
    expected_loss = -np.mean(np.log([0.8, 0.4, 0.4, 0.9, 0.6]))
    assert got["logloss"] == pytest.approx(expected_loss)
    assert got["n"] == 5


def test_rows_without_truth_give_no_oracle():
    truth = OracleTruth.from_arrays(np.array([1, 2]), np.array([0.3, 0.7]))
    assert math.isnan(truth.lookup(np.array([3]))[0])
    assert oracle_metrics(truth, np.array([1, 3]), np.array([0, 0]), np.array([0, 1])) is None
    with pytest.raises(ValueError, match="twice"):
        OracleTruth.from_arrays(np.array([1, 1]), np.array([0.1, 0.2]))


def test_lift_share_is_the_models_part_of_the_oracles_distance_from_chance():
    assert lift_share(0.75, 0.8) == pytest.approx(0.25 / 0.3)
    assert lift_share(0.5, 0.8) == 0.0 and lift_share(0.8, 0.8) == 1.0
    assert math.isnan(lift_share(0.7, 0.5))
    merged = with_ceiling({"auc": 0.7, "gauc": 0.6, "logloss": 0.5, "n": 3},
                          {"auc": 0.9, "gauc": 0.8, "logloss": 0.3, "n": 3})
    assert merged["oracle_auc"] == 0.9 and merged["lift_share"] == pytest.approx(0.5)
    assert with_ceiling({"auc": 0.7}, None) == {"auc": 0.7}


def test_partial_oracles_are_scored_on_the_same_rows():
    truth = OracleTruth.from_arrays(np.array([3, 1, 2]), np.array([0.9, 0.1, 0.5]),
                                    parts={"relation": np.array([1.0, 0.0, 2.0])})
    got = oracle_metrics(truth, np.array([1, 2, 3]), np.array([0, 0, 0]), np.array([0, 1, 1]))
    assert got["auc"] == 1.0
    assert got["relation_auc"] == pytest.approx(1.0)  # relation scores 0 (neg), 2, 1 (pos): both above
    flipped = oracle_metrics(truth, np.array([1, 2, 3]), np.array([0, 0, 0]), np.array([1, 0, 0]))
    assert flipped["relation_auc"] == 0.0
    merged = with_ceiling({"auc": 0.7, "gauc": 0.6, "logloss": 0.5, "n": 3}, got)
    assert merged["oracle_relation_auc"] == pytest.approx(1.0)


def test_quality_from_clicks_recovers_a_well_observed_item_and_shrinks_a_rarely_seen_one():
    rng = np.random.default_rng(0)
    # Item 7: 20,000 impressions at known logit -1 with true quality 0.8 (quality_std 0.5).
    n = 20_000
    known = np.full(n, -1.0)
    labels = (rng.random(n) < 1.0 / (1.0 + np.exp(-(known + 0.5 * 0.8)))).astype(int)
    # Items 1 and 2: one impression each at logit 0, clicked and not; they mirror each other.
    items = np.r_[np.full(n, 7), 1, 2]
    got = quality_from_clicks(items, np.r_[known, 0.0, 0.0], np.r_[labels, 1, 0], quality_std=0.5)
    assert set(got) == {1, 2, 7}
    # The posterior sd with 20,000 impressions is about 1 / (0.5 · sqrt(n · p(1-p))) ≈ 0.04.
    assert got[7] == pytest.approx(0.8, abs=0.15)
    assert 0 < got[1] < 0.3 and got[2] == pytest.approx(-got[1])
    assert quality_from_clicks(np.array([], dtype=np.int64), np.array([]), np.array([]), quality_std=0.5) == {}
