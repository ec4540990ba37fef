"""Metrics: hand-computed AUC/GAUC/log loss, and agreement with scikit-learn on random data."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import log_loss as sk_log_loss
from sklearn.metrics import roc_auc_score

from r2led_model.evaluation.metrics import auc, evaluate, gauc, log_loss


def test_auc_hand_computed_with_ties():
    # Pairs (pos, neg): (0.8, 0.3) win, (0.8, 0.5) win, (0.5, 0.3) win, (0.5, 0.5) tie → 3.5 / 4.
    labels = np.array([1, 0, 1, 0])
    scores = np.array([0.8, 0.3, 0.5, 0.5])
    assert auc(labels, scores) == pytest.approx(3.5 / 4)


def test_auc_extremes_and_all_ties():
    assert auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.3, 0.4])) == 1.0
    assert auc(np.array([1, 1, 0, 0]), np.array([0.1, 0.2, 0.3, 0.4])) == 0.0
    assert auc(np.array([1, 0, 1, 0]), np.full(4, 0.7)) == 0.5


def test_auc_is_nan_with_one_class():
    assert math.isnan(auc(np.array([1, 1, 1]), np.array([0.1, 0.2, 0.3])))
    assert math.isnan(auc(np.array([0, 0]), np.array([0.1, 0.2])))


def test_gauc_weights_users_by_impressions():
    # User 7: 4 impressions, AUC 1.0. User 3: 2 impressions, AUC 0.0. User 5: one class only, left out.
    users = np.array([7, 3, 7, 5, 7, 3, 7, 5, 5])
    labels = np.array([1, 1, 0, 1, 1, 0, 0, 1, 1])
    scores = np.array([0.9, 0.1, 0.2, 0.5, 0.8, 0.7, 0.3, 0.4, 0.6])
    assert gauc(users, labels, scores) == pytest.approx((4 * 1.0 + 2 * 0.0) / 6)


def test_gauc_nan_when_no_user_has_both_classes():
    assert math.isnan(gauc(np.array([1, 1, 2]), np.array([1, 1, 0]), np.array([0.1, 0.2, 0.3])))


def test_log_loss_hand_computed_and_clipped():
    assert log_loss(np.array([1, 0]), np.array([0.8, 0.4])) == pytest.approx(-(math.log(0.8) + math.log(0.6)) / 2)
    # A confidently wrong 0/1 prediction is finite thanks to the clip.
    assert math.isfinite(log_loss(np.array([1, 0]), np.array([0.0, 1.0])))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_agrees_with_sklearn_on_random_data(seed):
    rng = np.random.default_rng(seed)
    n = 2000
    labels = rng.integers(0, 2, n)
    # Rounded scores force many ties.
    probs = np.round(np.clip(0.3 * labels + rng.random(n) * 0.7, 0.0, 1.0), 2)
    assert auc(labels, probs) == pytest.approx(roc_auc_score(labels, probs), abs=1e-12)
    clipped = np.clip(probs, 1e-7, 1 - 1e-7)
    assert log_loss(labels, probs) == pytest.approx(sk_log_loss(labels, clipped), rel=1e-9)


def test_gauc_agrees_with_per_user_sklearn():
    rng = np.random.default_rng(3)
    users = rng.integers(0, 30, 1500)
    labels = rng.integers(0, 2, 1500)
    probs = rng.random(1500)
    total, weights = 0.0, 0
    for u in np.unique(users):
        sel = users == u
        if len(np.unique(labels[sel])) == 2:
            total += sel.sum() * roc_auc_score(labels[sel], probs[sel])
            weights += sel.sum()
    assert gauc(users, labels, probs) == pytest.approx(total / weights, abs=1e-12)


def test_evaluate_returns_all_metrics():
    users = np.array([1, 1, 2, 2])
    labels = np.array([1, 0, 1, 0])
    probs = np.array([0.9, 0.2, 0.4, 0.6])
    result = evaluate(users, labels, probs)
    assert set(result) == {"auc", "gauc", "logloss", "n"}
    assert result["n"] == 4
    assert result["auc"] == pytest.approx(0.75)  # pairs: (0.9>0.2) (0.9>0.6) (0.4>0.2) (0.4<0.6)
    assert result["gauc"] == pytest.approx(0.5)  # user 1: 1.0, user 2: 0.0, equal weights
