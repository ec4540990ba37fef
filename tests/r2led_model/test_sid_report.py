"""SID report arithmetic on hand-made codes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from r2led_model.sids.sid_report import build_report, normalized_mutual_information, prefix_keys


def test_nmi_is_one_for_the_same_partition_and_zero_for_independent_ones():
    a = np.array([0, 0, 1, 1, 2, 2])
    assert normalized_mutual_information(a, np.array([5, 5, 9, 9, 7, 7])) == pytest.approx(1.0)
    # Every combination of a 2-way and a 2-way label once: independent → 0.
    assert normalized_mutual_information(np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1])) == pytest.approx(0.0)


def test_nmi_hand_computed():
    # Truth splits 4 items 2/2; the clustering puts them all in one group except one item.
    truth, clusters = np.array([0, 0, 1, 1]), np.array([0, 0, 0, 1])
    h_truth = math.log(2)
    h_clusters = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    mutual = 0.5 * math.log(0.5 / (0.5 * 0.75)) + 0.25 * math.log(0.25 / (0.5 * 0.75)) + 0.25 * math.log(0.25 / (0.5 * 0.25))
    assert normalized_mutual_information(truth, clusters) == pytest.approx(2 * mutual / (h_truth + h_clusters))


def test_prefix_keys_group_by_leading_codes():
    codes = np.array([[1, 2, 3], [1, 2, 4], [1, 5, 3], [0, 2, 3]])
    assert len(set(prefix_keys(codes, 1))) == 2
    keys2 = prefix_keys(codes, 2)
    assert keys2[0] == keys2[1] and len(set(keys2)) == 3


def test_report_counts_collisions_examples_and_nmi():
    item_ids = np.array([10, 11, 12, 13, 14])
    semantic = np.array([[0, 0], [0, 0], [0, 1], [1, 0], [1, 0]])
    full = np.c_[semantic, [0, 1, 0, 0, 1]]  # dedup digits separate the two collision pairs
    report = build_report(codebook_version="cb-x", codebook_size=2, item_ids=item_ids, semantic_codes=semantic,
                          full_codes=full, truth={"topic": np.array([0, 0, 0, 1, 1])})
    assert report.metrics["collision_rate"] == pytest.approx(4 / 5)
    assert report.collision_rate_after_dedup == 0.0
    assert report.examples[1][0] == ([0], 3, [10, 11, 12])  # the biggest level-1 prefix first
    assert report.nmi["topic vs level-1 prefix"] == pytest.approx(1.0)
    report.texts = {10: "a film"}
    assert "a film" in report.summary() and "item 11" in report.summary()
