"""What a model's scores miss: a logistic regression stacked on its logit and a few features, cross-fitted by user.

If the item's target encoding, stacked on a model's logit, raises test AUC, the model has not learned the item's
quality as well as a counting feature does; if it adds nothing, that information is already in the logit. The
stack is fitted on half of the test users and scored on the other half (and the other way round), so no row
is scored by a regression that saw its label; it has a handful of weights, so the fitting noise is small next
to the test set's.
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression

FOLDS = 2


def user_folds(users: np.ndarray, *, folds: int = FOLDS, seed: int = 0) -> np.ndarray:
    """(N,) fold of each row: every user's rows in one fold, users dealt to folds in a seeded random order."""
    distinct = np.unique(users)
    order = np.random.default_rng(seed).permutation(distinct.size)
    fold_of_user = np.empty(distinct.size, np.int64)
    fold_of_user[order] = np.arange(distinct.size) % folds
    return fold_of_user[np.searchsorted(distinct, users)]


def stacked_logits(*, users: np.ndarray, labels: np.ndarray, logits: np.ndarray, features: np.ndarray,
                   folds: int = FOLDS, seed: int = 0) -> np.ndarray:
    """(N,) each row's logit from a standardised LR on [logit, features] fitted on the other folds' rows.

    users, labels, logits (N,); features (N, F).
    """
    x = np.column_stack([logits, features]).astype(np.float64)  # (N, 1 + F)
    fold = user_folds(users, folds=folds, seed=seed)
    out = np.empty(x.shape[0])
    for k in range(folds):
        fit, score = fold != k, fold == k
        if not score.any():
            continue
        mean, std = x[fit].mean(axis=0), x[fit].std(axis=0)
        std[std == 0] = 1.0
        if np.unique(labels[fit]).size < 2:
            raise ValueError("residual_signal: a fold's fitting rows hold one class only")
        model = LogisticRegression(max_iter=1000).fit((x[fit] - mean) / std, labels[fit])
        out[score] = model.decision_function((x[score] - mean) / std)
    return out


def logit(probs: np.ndarray) -> np.ndarray:
    """Log-odds of probabilities, clipped away from 0 and 1."""
    p = np.clip(np.asarray(probs, np.float64), 1e-7, 1 - 1e-7)
    return np.log(p / (1 - p))
