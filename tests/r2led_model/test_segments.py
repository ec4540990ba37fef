"""Segment table: warmth bucket boundaries, rows landing in their slice, one-class slices without an interval,
per-slice paired intervals equal to a bootstrap of that slice alone, JSON-ready rows and the text layout."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from r2led_model.evaluation.metrics import auc
from r2led_model.evaluation.paired_bootstrap import paired_auc_differences
from r2led_model.evaluation.segments import format_segment_table, segment_table, warmth_bucket


def test_warmth_bucket_boundaries():
    counts = np.array([0, 1, 4, 5, 19, 20, 1000])
    assert warmth_bucket(counts).tolist() == ["0", "1-4", "1-4", "5-19", "5-19", "20+", "20+"]
    with pytest.raises(ValueError, match="non-negative"):
        warmth_bucket(np.array([3, -1]))


@pytest.fixture(scope="module")
def world():
    rng = np.random.default_rng(0)
    n_users, rows = 60, 10
    users = np.repeat(np.arange(n_users), rows)
    n = users.size
    labels = rng.integers(0, 2, n)
    # Each user: 2 rows in "0", 3 in "1-4", 3 in "5-19", 2 in "20+".
    impressions = np.tile([0, 0, 1, 4, 5, 19, 20, 50, 3, 7], n_users)
    dormant = np.tile([True, False, False, False, False, False, False, False, False, False], n_users)
    labels[dormant] = 0  # the dormant slice holds negatives only
    ref = 0.3 * labels + rng.random(n)
    scores = {"ref": ref, "good": labels + 0.1 * rng.random(n), "same": ref.copy()}
    segments = {"warmth": warmth_bucket(impressions), "dormant_target": dormant}
    table = segment_table(users=users, labels=labels, scores=scores, reference="ref", segments=segments, reps=200,
                          seed=1)
    return dict(users=users, labels=labels, scores=scores, segments=segments, table=table)


def _rows(table, segment, value, model=None):
    return [r for r in table if r["segment"] == segment and r["value"] == value and model in (None, r["model"])]


def test_rows_land_in_their_slice_in_bucket_order(world):
    table = world["table"]
    slices = list(dict.fromkeys((r["segment"], r["value"]) for r in table))
    assert slices == [("all", "all"), ("warmth", "0"), ("warmth", "1-4"), ("warmth", "5-19"), ("warmth", "20+"),
                      ("dormant_target", "False"), ("dormant_target", "True")]
    expected_n = {("all", "all"): 600, ("warmth", "0"): 120, ("warmth", "1-4"): 180, ("warmth", "5-19"): 180,
                  ("warmth", "20+"): 120, ("dormant_target", "False"): 540, ("dormant_target", "True"): 60}
    for (segment, value), n in expected_n.items():
        rows = _rows(table, segment, value)
        assert [r["model"] for r in rows] == ["ref", "good", "same"]
        assert {r["n"] for r in rows} == {n} and {r["n_users"] for r in rows} == {60}


def test_aucs_and_deltas_are_those_of_the_slice(world):
    mask = world["segments"]["warmth"] == "1-4"
    labels = world["labels"][mask]
    good, ref = _rows(world["table"], "warmth", "1-4", "good")[0], _rows(world["table"], "warmth", "1-4", "ref")[0]
    assert good["auc"] == pytest.approx(1.0) and ref["auc"] == pytest.approx(auc(labels, world["scores"]["ref"][mask]))
    assert good["delta"] == pytest.approx(good["auc"] - ref["auc"])
    assert 0.0 < good["delta_low"] <= good["delta"] <= good["delta_high"]
    # The slice's interval is a bootstrap of the slice's users and rows alone.
    direct = paired_auc_differences(users=world["users"][mask], labels=labels,
                                    scores={k: s[mask] for k, s in world["scores"].items()}, reference="ref",
                                    reps=200, seed=1)["good"]
    assert (good["delta_low"], good["delta_high"], good["delta_se"], good["reps"]) == (
        direct.low, direct.high, direct.se, direct.reps)


def test_reference_and_identical_model_rows(world):
    for row in _rows(world["table"], "all", "all"):
        if row["model"] == "ref":
            assert "delta" not in row
        if row["model"] == "same":
            assert (row["delta"], row["delta_low"], row["delta_high"]) == (0.0, 0.0, 0.0)


def test_one_class_slice_gives_nan_and_no_interval(world):
    rows = _rows(world["table"], "dormant_target", "True")
    assert all(math.isnan(r["auc"]) and r["n_pos"] == 0 for r in rows)
    assert not any("delta" in r for r in rows)


def test_rows_are_json_lines_of_plain_values(world):
    for row in world["table"]:
        assert all(type(v) in (str, int, float) for v in row.values()), row
        assert json.loads(json.dumps(row))["model"] == row["model"]


def test_format_lays_out_a_hand_made_table():
    rows = [
        {"segment": "all", "value": "all", "n": 1200, "model": "ref", "auc": 0.7},
        {"segment": "all", "value": "all", "n": 1200, "model": "r2led", "auc": 0.7312, "delta": 0.0312,
         "delta_low": 0.0101, "delta_high": 0.0523},
        {"segment": "text", "value": "noisy", "n": 80, "model": "ref", "auc": float("nan")},
        {"segment": "text", "value": "noisy", "n": 80, "model": "r2led", "auc": float("nan")},
    ]
    assert format_segment_table(rows) == "\n".join([
        "segment  value     n     ref                      r2led",
        "all      all    1200  0.7000  0.7312 [+0.0101, +0.0523]",
        "text     noisy    80     nan                        nan",
    ])


def test_unknown_reference_and_bad_lengths_are_refused(world):
    with pytest.raises(ValueError, match="reference 'nope'"):
        segment_table(users=world["users"], labels=world["labels"], scores=world["scores"], reference="nope",
                      segments={}, reps=10)
    with pytest.raises(ValueError, match="differ in length"):
        segment_table(users=world["users"], labels=world["labels"], scores=world["scores"], reference="ref",
                      segments={"text": np.array(["clean"] * 5)}, reps=10)
