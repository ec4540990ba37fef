"""The numpy Codebook artifact on hand-made codebooks whose codes are computed by hand."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest

from r2led_model.sids.codebook import Codebook, dedup_digits, sid_metrics

# Level 1 codes are coarse (spacing 10), level 2 codes are fine (spacing 1); d = 2, K = 3.
LEVEL1 = [[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]]
LEVEL2 = [[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]


def identity_codebook() -> Codebook:
    """Identity encoder (one layer, W = I, b = 0), L = 2 levels of K = 3 codes in d = 2."""
    return Codebook(encoder_weights=((np.eye(2), np.zeros(2)),), codebooks=np.array([LEVEL1, LEVEL2]),
                    input_dim=2)


def test_assign_codes_matches_hand_computed_codes():
    vectors = np.array([
        [10.9, 0.2],  # l1: to (10,0) .85, others ~119 → 1; r = (.9,.2): to (1,0) .05, (0,0) .85, (0,1) 1.45 → 1
        [0.1, 9.2],   # l1: (0,10) → 2; r = (.1,-.8): to (0,0) .65, (1,0) 1.45, (0,1) 3.25 → 0
        [-1.0, -1.0],  # l1: (0,0) 2 vs 122 → 0; r = (-1,-1): to (0,0) 2, (1,0) 5, (0,1) 5 → 0
        [10.0, 1.0],  # exactly (10,0) + (0,1) → (1, 2)
        [0.0, 11.0],  # exactly (0,10) + (0,1) → (2, 2)
    ])
    codes = identity_codebook().assign_codes(vectors)
    assert codes.dtype == np.int64
    assert codes.tolist() == [[1, 1], [2, 0], [0, 0], [1, 2], [2, 2]]


def test_ties_go_to_the_lowest_index():
    vectors = np.array([
        [5.0, 0.0],  # l1: (0,0) and (10,0) both at 25 → 0; r = (5,0): (1,0) 16 < 25 < 26 → 1
        [0.5, 0.5],  # l1 → 0; r = (.5,.5) is 0.5 from all three level-2 codes → 0
        [0.6, 0.6],  # l1 → 0; r = (.6,.6): (1,0) and (0,1) both .52 < .72 → 1
    ])
    assert identity_codebook().assign_codes(vectors).tolist() == [[0, 1], [0, 0], [0, 1]]


def test_decode_and_quantize_agree_and_rebuild_sums_of_codes():
    book = identity_codebook()
    rng = np.random.default_rng(0)
    vectors = rng.normal(scale=6.0, size=(50, 2))
    np.testing.assert_array_equal(book.decode_codes(book.assign_codes(vectors)), book.quantize(vectors))
    # Every sum of one level-1 and one level-2 code quantises to itself (its own codes, exactly).
    sums = np.array([np.add(a, b) for a in LEVEL1 for b in LEVEL2])  # (9, 2)
    expected = [[i, j] for i in range(3) for j in range(3)]
    assert book.assign_codes(sums).tolist() == expected
    np.testing.assert_array_equal(book.quantize(sums), sums)
    assert book.decode_codes(np.array([[1, 2]])).tolist() == [[10.0, 1.0]]


def test_encoder_applies_relu_between_layers_but_not_after_the_last():
    first = (np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]]), np.zeros(3))
    last = (np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]), np.array([-5.0, 1.0]))
    book = Codebook(encoder_weights=(first, last), codebooks=np.zeros((1, 2, 2)), input_dim=2)
    # x = (2, -3): W1 x = (2, -2, -3) → ReLU (2, 0, 0) → W2 h + b = (2 - 5, 0 + 1) = (-3, 1), kept negative.
    assert book.encode(np.array([[2.0, -3.0]])).tolist() == [[-3.0, 1.0]]


@pytest.mark.parametrize(("vectors", "message"), [
    (np.zeros((4, 3)), "wrong dimension 3"),
    (np.zeros(2), "2-D"),
    (np.array([[np.nan, 0.0], [1.0, 1.0], [0.0, np.inf], [np.nan, np.nan]]), "3 row"),
])
def test_bad_input_is_rejected_with_the_problem_named(vectors, message):
    book = identity_codebook()
    with pytest.raises(ValueError, match=message):
        book.assign_codes(vectors)


def test_codes_out_of_range_are_rejected_by_decode():
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        identity_codebook().decode_codes(np.array([[0, 3]]))


def test_save_load_round_trip_keeps_content_and_version(tmp_path):
    rng = np.random.default_rng(1)
    layers = ((rng.normal(size=(4, 3)), rng.normal(size=4)), (rng.normal(size=(2, 4)), np.zeros(2)))
    book = Codebook(encoder_weights=layers, codebooks=rng.normal(size=(3, 5, 2)), input_dim=3)
    for name in ("codebook.npz", "no_suffix.bin"):
        loaded = Codebook.load(book.save(tmp_path / name))
        assert (tmp_path / name).is_file()
        assert loaded == book and loaded.version == book.version
        x = rng.normal(size=(20, 3))
        np.testing.assert_array_equal(loaded.assign_codes(x), book.assign_codes(x))
    assert book.version.startswith("cb-") and len(book.version) == 15


def test_version_is_a_content_hash():
    book = identity_codebook()
    assert identity_codebook().version == book.version  # same content, separately built
    nudged = np.array([LEVEL1, LEVEL2])
    nudged[1, 2, 0] = np.nextafter(0.0, 1.0)  # the smallest possible change of one code value
    assert Codebook(encoder_weights=book.encoder_weights, codebooks=nudged, input_dim=2).version != book.version
    weight = np.eye(2)
    weight[0, 1] = 1e-12
    other = Codebook(encoder_weights=((weight, np.zeros(2)),), codebooks=book.codebooks, input_dim=2)
    assert other.version != book.version and other != book


def test_pickled_copy_is_equal_and_still_read_only():
    book = identity_codebook()
    copy = pickle.loads(pickle.dumps(book))  # what a Spark broadcast does
    assert copy == book and copy.version == book.version
    assert not copy.codebooks.flags.writeable and not copy.encoder_weights[0][0].flags.writeable


def test_load_rejects_another_format_version(tmp_path):
    path = tmp_path / "old.npz"
    np.savez(path, format_version=np.array(99), input_dim=np.array(2), num_layers=np.array(0),
             codebooks=np.zeros((1, 2, 2)))
    with pytest.raises(ValueError, match="format version 99"):
        Codebook.load(path)


def test_arrays_are_read_only_copies():
    weight = np.eye(2)
    book = Codebook(encoder_weights=((weight, np.zeros(2)),), codebooks=np.array([LEVEL1, LEVEL2]), input_dim=2)
    weight[0, 0] = 7.0  # the caller's array changing later does not change the artifact
    assert book.encoder_weights[0][0][0, 0] == 1.0
    with pytest.raises(ValueError):
        book.codebooks[0, 0, 0] = 1.0


def test_dedup_digits_orders_collisions_by_item_id_whatever_the_row_order():
    codes = np.array([[1, 2], [0, 0], [1, 2], [1, 2], [0, 0], [3, 1]])
    item_ids = np.array([30, 5, 10, 20, 2, 7])
    # (1,2) holds items 10, 20, 30 → 0, 1, 2; (0,0) holds 2, 5 → 0, 1; (3,1) holds 7 alone → 0.
    expected = np.array([2, 1, 0, 1, 0, 0])
    np.testing.assert_array_equal(dedup_digits(codes, item_ids), expected)
    order = np.array([5, 3, 0, 4, 1, 2])
    np.testing.assert_array_equal(dedup_digits(codes[order], item_ids[order]), expected[order])
    with pytest.raises(ValueError, match="1 duplicate"):
        dedup_digits(codes, np.array([1, 2, 3, 4, 5, 5]))


def test_sid_metrics_on_a_hand_made_code_matrix():
    codes = np.array([[0, 1], [0, 1], [0, 2], [1, 0]])
    m = sid_metrics(codes, codebook_size=4)
    # Level 1: codes {0: 3, 1: 1} → usage 2/4; perplexity exp(H(.75, .25)) ≈ 1.7548.
    assert m["usage_l1"] == 0.5
    assert m["perplexity_l1"] == pytest.approx(math.exp(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25))))
    # Level 2: codes {1: 2, 2: 1, 0: 1} → usage 3/4; H = ln 2^1.5 so perplexity 2√2.
    assert m["usage_l2"] == 0.75
    assert m["perplexity_l2"] == pytest.approx(2 * math.sqrt(2))
    # Only (0,1) is shared, by 2 of the 4 items.
    assert m["collision_rate"] == 0.5 and m["distinct_tuples"] == 3 and m["num_items"] == 4
    # Prefix (0) holds 3 items, (1) holds 1; full tuples hold 2, 1, 1.
    assert (m["items_per_prefix_mean_l1"], m["items_per_prefix_max_l1"]) == (2.0, 3.0)
    assert m["items_per_prefix_mean_l2"] == pytest.approx(4 / 3) and m["items_per_prefix_max_l2"] == 2.0


def test_sid_metrics_bounds_on_all_distinct_codes():
    codes = np.array([[0], [1], [2], [3]])
    m = sid_metrics(codes, codebook_size=4)
    assert m["usage_l1"] == 1.0 and m["perplexity_l1"] == pytest.approx(4.0) and m["collision_rate"] == 0.0
