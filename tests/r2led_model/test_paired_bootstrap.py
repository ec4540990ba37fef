"""Paired user bootstrap: weighted AUC against sklearn and by hand, and intervals that behave as they must
(zero for identical models, above zero for a dominant one, covering a known difference, shrinking with
more users, wider than a row bootstrap when a user's rows move together)."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

from r2led_model.evaluation.metrics import auc
from r2led_model.evaluation.paired_bootstrap import (bootstrap_auc, paired_auc_difference, paired_auc_differences,
                                                     weighted_auc)


def test_weighted_auc_hand_computed_with_ties_and_weights():
    # Pairs (pos, neg): (0.8, 0.3) win, (0.8, 0.5) win, (0.5, 0.3) win, (0.5, 0.5) tie → 3.5 / 4 unweighted.
    labels = np.array([1, 0, 1, 0])
    scores = np.array([0.8, 0.3, 0.5, 0.5])
    assert weighted_auc(labels, scores, np.ones(4)) == pytest.approx(3.5 / 4)
    # Weight 3 on the tied positive: pairs weigh 1·1 (win), 1·1 (win), 3·1 (win), 3·1 (tie) → 6.5 / 8.
    assert weighted_auc(labels, scores, np.array([1, 1, 3, 1])) == pytest.approx(6.5 / 8)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_weighted_auc_agrees_with_sklearn_and_unweighted_auc(seed):
    rng = np.random.default_rng(seed)
    n = 3000
    labels = rng.integers(0, 2, n)
    scores = np.round(0.3 * labels + rng.random(n), 2)  # rounded: many ties
    weights = rng.integers(0, 5, n).astype(float)
    assert weighted_auc(labels, scores, weights) == pytest.approx(
        roc_auc_score(labels, scores, sample_weight=weights), abs=1e-12)
    assert weighted_auc(labels, scores, np.ones(n)) == pytest.approx(auc(labels, scores), abs=1e-12)


def test_weighted_auc_nan_when_a_class_has_no_weight_and_rejects_bad_input():
    labels = np.array([1, 0, 1, 0])
    scores = np.array([0.8, 0.3, 0.5, 0.5])
    assert math.isnan(weighted_auc(labels, scores, np.array([0.0, 1.0, 0.0, 2.0])))
    with pytest.raises(ValueError, match="differ in length"):
        weighted_auc(labels, scores, np.ones(3))
    with pytest.raises(ValueError, match="non-negative"):
        weighted_auc(labels, scores, np.array([1.0, -1.0, 1.0, 1.0]))


def test_lengths_are_checked():
    with pytest.raises(ValueError, match="differ in length"):
        paired_auc_difference(users=np.arange(4), labels=np.array([0, 1, 0, 1]), scores_a=np.zeros(4),
                              scores_b=np.zeros(5))


def _users_with_both_classes(n_users: int, rows_per_user: int):
    users = np.repeat(np.arange(n_users), rows_per_user)
    labels = np.tile(np.arange(rows_per_user) % 2, n_users)  # every user: half positives
    return users, labels


def test_identical_models_differ_by_exactly_zero():
    rng = np.random.default_rng(0)
    users, labels = _users_with_both_classes(50, 6)
    scores = 0.5 * labels + rng.random(labels.size)
    result = paired_auc_difference(users=users, labels=labels, scores_a=scores, scores_b=scores.copy(), reps=200)
    assert (result.difference, result.low, result.high, result.se) == (0.0, 0.0, 0.0, 0.0)
    assert (result.reps, result.n_rows, result.n_users) == (200, 300, 50)


def test_a_model_better_on_every_user_has_an_interval_above_zero():
    rng = np.random.default_rng(1)
    users, labels = _users_with_both_classes(40, 10)
    noisy = 0.4 * labels + rng.random(labels.size)  # AUC about 0.7
    perfect = labels + 0.1 * rng.random(labels.size)  # every positive above every negative
    result = paired_auc_difference(users=users, labels=labels, scores_a=perfect, scores_b=noisy, reps=300)
    assert result.difference == pytest.approx(1.0 - auc(labels, noisy))
    assert 0.0 < result.low <= result.difference <= result.high


def test_interval_covers_a_known_population_difference():
    # Scores N(0, 1) for negatives, N(δ, 1) for positives: population AUC = Φ(δ / √2).
    rng = np.random.default_rng(2)
    n_users, rows = 400, 10
    users = np.repeat(np.arange(n_users), rows)
    labels = rng.integers(0, 2, users.size)
    a = rng.normal(size=users.size) + 1.0 * labels
    b = rng.normal(size=users.size) + 0.5 * labels
    truth = norm.cdf(1.0 / math.sqrt(2)) - norm.cdf(0.5 / math.sqrt(2))  # ≈ 0.122
    result = paired_auc_difference(users=users, labels=labels, scores_a=a, scores_b=b, reps=500, seed=3)
    assert result.low < truth < result.high
    assert result.low < result.difference < result.high
    assert result.high - result.low < 0.08  # informative, not merely wide


def test_se_shrinks_as_one_over_sqrt_users_when_data_is_duplicated():
    rng = np.random.default_rng(4)
    users, labels = _users_with_both_classes(60, 8)
    a = 0.6 * labels + rng.random(labels.size)
    b = 0.3 * labels + rng.random(labels.size)
    base = paired_auc_difference(users=users, labels=labels, scores_a=a, scores_b=b, reps=1000)
    copies = 4  # the same rows again under fresh user ids: AUCs unchanged, 4× the users
    big = paired_auc_difference(users=np.concatenate([users + 1000 * k for k in range(copies)]),
                                labels=np.tile(labels, copies), scores_a=np.tile(a, copies),
                                scores_b=np.tile(b, copies), reps=1000)
    assert big.difference == pytest.approx(base.difference, abs=1e-12)
    assert big.se / base.se == pytest.approx(1 / math.sqrt(copies), rel=0.15)


def test_user_bootstrap_is_wider_than_row_bootstrap_when_rows_of_a_user_move_together():
    # The model ranks some users' rows right and others' inverted: which users are drawn decides the AUC.
    rng = np.random.default_rng(5)
    n_users, rows = 80, 20
    users = np.repeat(np.arange(n_users), rows)
    labels = rng.integers(0, 2, users.size)
    direction = np.repeat(rng.choice([-1.0, 1.0], n_users, p=[0.3, 0.7]), rows)
    scores = direction * labels + 0.5 * rng.random(users.size)
    by_user = bootstrap_auc(users=users, labels=labels, scores=scores, reps=500)
    by_row = bootstrap_auc(users=np.arange(users.size), labels=labels, scores=scores, reps=500)  # one row per "user"
    assert by_user.auc == by_row.auc == pytest.approx(auc(labels, scores))
    assert by_user.se > 2.0 * by_row.se
    assert by_user.high - by_user.low > 2.0 * (by_row.high - by_row.low)


def test_row_order_does_not_matter_and_pairs_share_their_draws():
    rng = np.random.default_rng(6)
    users = rng.integers(0, 30, 400)
    labels = rng.integers(0, 2, 400)
    a, b, c = (k * labels + rng.random(400) for k in (0.8, 0.4, 0.2))
    result = paired_auc_difference(users=users, labels=labels, scores_a=a, scores_b=b, reps=200, seed=7)
    perm = rng.permutation(400)
    shuffled = paired_auc_difference(users=users[perm], labels=labels[perm], scores_a=a[perm], scores_b=b[perm],
                                     reps=200, seed=7)
    for field in ("difference", "low", "high", "se"):
        assert getattr(shuffled, field) == pytest.approx(getattr(result, field), abs=1e-12)
    # A third model alongside changes nothing for the pair (a, b).
    many = paired_auc_differences(users=users, labels=labels, scores={"a": a, "b": b, "c": c}, reference="b",
                                  reps=200, seed=7)
    assert many["a"] == result and set(many) == {"a", "c"}


def test_bootstrap_auc_interval_brackets_the_auc():
    rng = np.random.default_rng(8)
    users = rng.integers(0, 100, 2000)
    labels = rng.integers(0, 2, 2000)
    scores = 0.5 * labels + rng.random(2000)
    result = bootstrap_auc(users=users, labels=labels, scores=scores, reps=300)
    assert result.auc == pytest.approx(auc(labels, scores))
    assert result.low < result.auc < result.high and result.se > 0
    assert (result.n_rows, result.n_users, result.reps) == (2000, 100, 300)


def test_one_class_gives_nan_not_an_error():
    result = bootstrap_auc(users=np.array([1, 1, 2]), labels=np.ones(3), scores=np.array([0.1, 0.2, 0.3]), reps=10)
    assert math.isnan(result.auc) and math.isnan(result.low) and result.reps == 0


def test_forty_thousand_rows_thousand_reps_in_seconds():
    rng = np.random.default_rng(9)
    n = 40_000
    users = rng.integers(0, 2_500, n)
    labels = rng.random(n) < 0.2
    a = 0.3 * labels + rng.random(n)
    b = 0.25 * labels + rng.random(n)
    start = time.perf_counter()
    result = paired_auc_difference(users=users, labels=labels, scores_a=a, scores_b=b, reps=1000)
    assert time.perf_counter() - start < 6.0  # about 1 s alone; slack for a shared machine
    assert result.low > 0 and result.n_users == 2_500
