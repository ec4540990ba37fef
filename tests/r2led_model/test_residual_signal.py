"""The residual check: a feature the scores lack raises the cross-fitted stack's AUC; one they already hold
does not; no user's rows are split across folds."""

from __future__ import annotations

import numpy as np

from r2led_model.evaluation.metrics import auc
from r2led_model.evaluation.residual_signal import logit, stacked_logits, user_folds

N = 20_000


def _world(seed: int = 0):
    rng = np.random.default_rng(seed)
    users = rng.integers(0, 400, N)
    seen, unseen = rng.normal(size=N), rng.normal(size=N)  # the model's signal, and a feature it lacks
    labels = (rng.random(N) < 1 / (1 + np.exp(-(seen + unseen)))).astype(np.int64)
    return users, labels, seen, unseen


def test_folds_keep_each_user_whole_and_are_balanced():
    users = np.repeat(np.arange(100), 7)[np.random.default_rng(1).permutation(700)]
    fold = user_folds(users, folds=2, seed=3)
    for user in np.unique(users):
        assert np.unique(fold[users == user]).size == 1
    assert (fold == 0).sum() == 350  # 50 users per fold


def test_a_missing_feature_raises_the_stack_and_a_held_one_does_not():
    users, labels, seen, unseen = _world()
    alone = stacked_logits(users=users, labels=labels, logits=seen, features=np.zeros((N, 0)))
    with_missing = stacked_logits(users=users, labels=labels, logits=seen, features=unseen[:, None])
    assert auc(labels, with_missing) > auc(labels, alone) + 0.05
    # The full signal already in the logit: stacking the same feature again adds nothing.
    full = seen + unseen
    alone = stacked_logits(users=users, labels=labels, logits=full, features=np.zeros((N, 0)))
    again = stacked_logits(users=users, labels=labels, logits=full, features=unseen[:, None])
    assert abs(auc(labels, again) - auc(labels, alone)) < 0.002
    assert abs(auc(labels, alone) - auc(labels, full)) < 0.002  # one monotone map per fold: near the raw ranking


def test_logit_inverts_the_sigmoid_and_clips():
    x = np.array([-3.0, 0.0, 2.5])
    assert np.allclose(logit(1 / (1 + np.exp(-x))), x)
    assert np.isfinite(logit(np.array([0.0, 1.0]))).all()
