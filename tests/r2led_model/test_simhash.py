"""SimHash signatures and Hamming distances on hand-made words, plus the θ/π property."""

from __future__ import annotations

import numpy as np
import pytest

from r2led_model.retrieval.simhash import (hamming, popcount, signatures_from_hyperplanes, simhash_hyperplanes,
                                           simhash_signatures, words_for)


def test_bits_follow_hand_made_hyperplanes():
    # Hyperplanes h0 = x axis, h1 = y axis, h2 = x + y, h3 = −x. Bit j is 1 when v · h_j > 0.
    planes = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.0]])
    vectors = np.array([
        [2.0, 1.0],    # dots 2, 1, 3, −2   → bits 0,1,2    → 0b0111 = 7
        [-1.0, 3.0],   # dots −1, 3, 2, 1   → bits 1,2,3    → 0b1110 = 14
        [0.0, 0.0],    # all dots 0 (not > 0) → 0
        [1.0, -1.0],   # dots 1, −1, 0, −1  → bit 0         → 0b0001 = 1
    ])
    words = signatures_from_hyperplanes(vectors, planes)
    assert words.dtype == np.uint64 and words.shape == (4, 1)
    assert words[:, 0].tolist() == [7, 14, 0, 1]


def test_bits_beyond_64_go_to_the_next_word_and_unused_bits_stay_zero():
    # 70 hyperplanes, all equal to +x: a vector with x > 0 sets all 70 bits.
    planes = np.tile([[1.0, 0.0]], (70, 1))
    words = signatures_from_hyperplanes(np.array([[1.0, 5.0], [-1.0, 5.0]]), planes)
    assert words.shape == (2, 2)
    assert int(words[0, 0]) == (1 << 64) - 1 and int(words[0, 1]) == (1 << 6) - 1  # bits 64..69 only
    assert words[1].tolist() == [0, 0]
    # Only bit 65 is +x: word 1 holds exactly 1 << 1.
    planes = np.tile([[-1.0, 0.0]], (70, 1))
    planes[65] = [1.0, 0.0]
    assert signatures_from_hyperplanes(np.array([[1.0, 0.0]]), planes).tolist() == [[0, 2]]


def test_signatures_are_deterministic_by_seed_and_match_the_hyperplanes():
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((50, 8))
    a = simhash_signatures(vectors, 100, seed=13)
    assert a.shape == (50, 2) and a.dtype == np.uint64
    assert np.array_equal(a, simhash_signatures(vectors, 100, seed=13))
    assert not np.array_equal(a, simhash_signatures(vectors, 100, seed=14))
    assert np.array_equal(a, signatures_from_hyperplanes(vectors, simhash_hyperplanes(8, 100, 13)))
    assert int(a[:, 1].max()) < (1 << 36)  # 100 bits: 64 + 36, the rest of word 1 is zero
    # The first 64 hyperplanes do not depend on how many more are drawn.
    assert np.array_equal(simhash_signatures(vectors, 64, seed=13)[:, 0], a[:, 0])


def test_hamming_of_hand_made_words():
    a = np.array([0b1011], dtype=np.uint64)
    b = np.array([0b0001], dtype=np.uint64)
    assert hamming(a, b) == 2
    assert hamming(a, a) == 0
    full = np.array([(1 << 64) - 1], dtype=np.uint64)
    assert hamming(full, np.zeros(1, dtype=np.uint64)) == 64
    # Two words: word 0 differs in 3 bits (0b111 vs 0), word 1 in 64 bits → 67.
    x = np.array([0b111, 0], dtype=np.uint64)
    y = np.array([0, (1 << 64) - 1], dtype=np.uint64)
    assert hamming(x, y) == 67
    assert popcount(np.array([0, 1, 0xFF, (1 << 63) | 1, (1 << 64) - 1], dtype=np.uint64)).tolist() == [0, 1, 8, 2, 64]


def test_hamming_broadcasts_and_agrees_with_bin_count():
    rng = np.random.default_rng(1)
    targets = rng.integers(0, 2**63, size=(5, 1, 3), dtype=np.int64).view(np.uint64) * np.uint64(2) + np.uint64(1)
    history = rng.integers(0, 2**63, size=(1, 7, 3), dtype=np.int64).view(np.uint64)
    d = hamming(targets, history)  # (5, 1, 3) vs (1, 7, 3) → (5, 7)
    assert d.shape == (5, 7)
    expected = [[sum(bin(int(t) ^ int(h)).count("1") for t, h in zip(targets[i, 0], history[0, j]))
                 for j in range(7)] for i in range(5)]
    assert d.tolist() == expected
    assert hamming(targets[0, 0], history[0]).tolist() == expected[0]  # (3,) vs (7, 3) → (7,)


def test_hamming_rejects_mismatched_widths_and_signed_words():
    with pytest.raises(ValueError):
        hamming(np.zeros((2, 1), np.uint64), np.zeros((2, 2), np.uint64))
    with pytest.raises(TypeError):
        hamming(np.zeros((2, 1), np.int64), np.zeros((2, 1), np.uint64))
    with pytest.raises(ValueError):
        words_for(0)


def test_normalised_hamming_estimates_angle_over_pi():
    # Pairs at known angles θ in (0, π): u and cos θ·u + sin θ·w with w ⊥ u (dimension 16).
    rng = np.random.default_rng(5)
    n, dim, bits = 3000, 16, 256
    u = rng.standard_normal((n, dim))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    w = rng.standard_normal((n, dim))
    w -= (w * u).sum(axis=1, keepdims=True) * u
    w /= np.linalg.norm(w, axis=1, keepdims=True)
    theta = rng.uniform(0.05, np.pi - 0.05, size=n)
    v = np.cos(theta)[:, None] * u + np.sin(theta)[:, None] * w
    signatures = simhash_signatures(np.vstack([u, v]), bits, seed=3)
    estimate = hamming(signatures[:n], signatures[n:]) / bits  # (n,)
    error = estimate - theta / np.pi
    # Per pair, the estimate is Binomial(bits, θ/π)/bits: standard deviation <= 0.5/√256 ≈ 0.031.
    assert abs(error.mean()) < 0.01
    assert np.abs(error).mean() < 0.035
    assert np.corrcoef(estimate, theta)[0, 1] > 0.97
