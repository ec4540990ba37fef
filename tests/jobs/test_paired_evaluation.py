"""Paired comparisons with R2LED from saved test predictions: alignment, seed means, segments, the table."""

from __future__ import annotations

import numpy as np
import pytest

from jobs.benchmarks.model_table import format_table
from jobs.benchmarks.model_variants import CONTROLS, init_seed, variant_config
from jobs.benchmarks.paired_evaluation import (load_seed_scores, paired_rows, prediction_path, save_predictions,
                                               save_segments, seed_mean_difference)
from r2led_model.config import load_config
from r2led_model.training.trainer import RowPredictions

USERS, ROWS_PER_USER = 200, 20


def _world(seed: int = 0):
    """Rows of 200 users; scores of a strong model (signal + small noise) and a weak one (more noise)."""
    rng = np.random.default_rng(seed)
    n = USERS * ROWS_PER_USER
    users = np.repeat(np.arange(USERS), ROWS_PER_USER)
    signal = rng.standard_normal(n)
    labels = (rng.random(n) < 1 / (1 + np.exp(-2 * signal))).astype(np.int64)
    sample_ids = rng.permutation(n).astype(np.int64) + 1000
    return sample_ids, users, labels, signal, rng


def _save(folder, label, seed, sample_ids, users, labels, probs, order=None):
    order = np.arange(sample_ids.size) if order is None else order
    save_predictions(prediction_path(folder, label, seed), RowPredictions(
        sample_ids=sample_ids[order], users=users[order], labels=labels[order].astype(np.float32),
        probs=probs[order].astype(np.float32)))


def test_identical_models_differ_by_exactly_zero_and_a_better_one_has_a_ci_above_zero():
    _, users, labels, signal, rng = _world()
    same = np.stack([signal, signal])
    out = seed_mean_difference(users=users, labels=labels, model=same, reference=same, reps=200)
    assert out["delta"] == 0.0 and out["delta_low"] == 0.0 and out["delta_high"] == 0.0
    weak = np.stack([signal + 2.0 * rng.standard_normal(signal.size) for _ in range(2)])
    out = seed_mean_difference(users=users, labels=labels, model=same, reference=weak, reps=200)
    assert out["delta"] > 0 and out["delta_low"] > 0 and out["delta_low"] < out["delta"] < out["delta_high"]


def test_saved_predictions_align_by_sample_id_whatever_the_row_order(tmp_path):
    sample_ids, users, labels, signal, rng = _world()
    _save(tmp_path, "r2led", 0, sample_ids, users, labels, signal)
    _save(tmp_path, "r2led", 1, sample_ids, users, labels, signal, order=rng.permutation(signal.size))
    scores = load_seed_scores(tmp_path, "r2led", [0, 1])
    assert np.array_equal(scores.sample_ids, np.sort(sample_ids))
    assert np.array_equal(scores.probs[0], scores.probs[1])
    assert load_seed_scores(tmp_path, "r2led", [0, 1, 2]) is None  # a seed not run yet: nothing to pair


def test_paired_rows_per_segment_and_the_table_shows_the_interval(tmp_path):
    sample_ids, users, labels, signal, rng = _world()
    # "din" is as good as r2led on cold targets and much worse on warm ones.
    warm = rng.random(signal.size) < 0.5
    for seed in (0, 1):
        _save(tmp_path, "r2led", seed, sample_ids, users, labels, signal + 0.3 * rng.standard_normal(signal.size))
        din = np.where(warm, signal + 3.0 * rng.standard_normal(signal.size),
                       signal + 0.3 * rng.standard_normal(signal.size))
        _save(tmp_path, "din", seed, sample_ids, users, labels, din)
    save_segments(tmp_path, {"sample_id": sample_ids, "warmth": np.where(warm, "20+", "0")})
    segments = dict(np.load(tmp_path / "predictions" / "segments.npz"))
    rows = paired_rows(tmp_path, ["r2led", "din"], [0, 1], segments=segments, reps=200)
    din = {(r["segment"], r["value"]): r for r in rows if r["variant"] == "din"}
    assert din[("warmth", "20+")]["delta_high"] < 0  # resolved: worse where warm
    assert din[("warmth", "0")]["delta_low"] < 0 < din[("warmth", "0")]["delta_high"]  # a tie where cold
    assert din[("all", "all")]["n"] == signal.size and din[("warmth", "0")]["n"] == int((~warm).sum())

    base = {"bench": "models_quality", "env": "w", "train_rows": 1, "test_rows": signal.size, "seeds": [0, 1],
            "device": "cpu", "auc": 0.7, "auc_std": 0.0, "gauc": 0.7, "gauc_std": 0.0, "logloss": 0.5,
            "logloss_std": 0.0, "train_s": 1.0, "train_samples_per_s": 1.0, "predictions_dir": str(tmp_path)}
    tuned = {"training.learning_rate": 0.0012345, "model.embedding_dim": 16}
    table = format_table([{**base, "variant": "r2led", "model": "r2led", "tuned": tuned, "tuning_trials": 8},
                          {**base, "variant": "din", "model": "din"}])
    assert "r2led      embedding_dim=16, learning_rate=0.00123" in table and "8 trials each" in table
    overall = next(r for r in paired_rows(tmp_path, ["r2led", "din"], [0, 1]) if r["variant"] == "din")
    assert f"{overall['delta']:+.4f} [{overall['delta_low']:+.4f}, {overall['delta_high']:+.4f}]" in table
    assert "warmth=20+" in table and "AUC per segment" in table


def test_controls_and_init_seeds():
    config = load_config("oracle")
    controls = {v.label: v for v in CONTROLS}
    sid = variant_config(config, controls["sim_soft+sid"], None)
    assert sid.model.name == "sim_soft" and sid.model.item_sids
    prefix = variant_config(config, controls["sim_hard sid2-prefix"], None)
    assert (prefix.model.sim_hard.match, prefix.model.sim_hard.sid_prefix, prefix.model.item_sids) == (
        "sid_prefix", 2, False)
    seeds = {init_seed(label, 0) for label in ("sim_hard", "sim_soft", "eta", "twin", "r2led")}
    assert len(seeds) == 5 and init_seed("eta", 1) != init_seed("eta", 0) and init_seed("eta", 1) == init_seed("eta", 1)


def test_predictions_without_sample_ids_are_refused(tmp_path):
    with pytest.raises(ValueError, match="sample ids"):
        save_predictions(tmp_path / "x.npz", RowPredictions(sample_ids=None, users=np.zeros(1), labels=np.zeros(1),
                                                            probs=np.zeros(1)))


def test_paired_comparisons_take_any_saved_variant_as_the_reference(tmp_path):
    from jobs.benchmarks.paired_evaluation import format_comparisons, paired_comparisons

    rng = np.random.default_rng(3)
    n = 400
    users, labels = rng.integers(0, 40, n), rng.integers(0, 2, n)
    good = labels + rng.normal(0, 0.6, n)  # informative
    poor = labels + rng.normal(0, 3.0, n)  # barely
    for label, scores in (("a", good), ("b", poor)):
        for seed in (0, 1):
            save_predictions(prediction_path(tmp_path, label, seed),
                             RowPredictions(sample_ids=np.arange(n), users=users, labels=labels,
                                            probs=1 / (1 + np.exp(-(scores + rng.normal(0, 0.01, n))))))
    rows = paired_comparisons(tmp_path, [("a", "b"), ("b", "a"), ("a", "missing")], [0, 1], reps=200)
    assert rows[0]["delta"] > 0 and rows[0]["delta_low"] > 0  # a is clearly better than b
    assert rows[1]["delta"] == pytest.approx(-rows[0]["delta"])
    assert rows[2]["missing"] == ["missing"]
    text = format_comparisons(rows)
    assert "a − b" in text and "*" in text.splitlines()[1] and "no saved predictions for missing" in text
