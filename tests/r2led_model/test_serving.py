"""The raw-id served model on a hand-made catalogue: the request contract's refusals, the point-in-time
cut, the stored-sequence cap, the treatments of unknown items and histories, and the registered
pyfunc answering raw ids (and refusing malformed requests with INVALID_PARAMETER_VALUE)."""

from __future__ import annotations

import dataclasses

import mlflow
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import torch
from mlflow.exceptions import MlflowException

from r2led_model.config import ModelConfig
from r2led_model.models import FeatureSpec, build_model
from r2led_model.retrieval.item_feature_lookup import ItemFeatureLookup
from r2led_model.retrieval.multi_route import RoutePlan, RouteSpec
from r2led_model.serving.catalog import ExampleSettings, ServingCatalog
from r2led_model.serving.requests import RawRequests, RequestError
from r2led_model.serving.scorer import OUTPUT_COLUMNS, request_inputs, score_requests
from r2led_model.tracking.bundle import DataVersions, ModelBundle
from r2led_model.tracking.mlflow_model import catalog_incompatibilities, log_ctr_model
from r2led_model.tracking.runs import tracked_run
from r2led_model.training.item_index_lookup import ItemIndexLookup

ITEMS = 30  # raw ids 1001..1030 ↔ item indices 1..30
SPEC = FeatureSpec(num_items=ITEMS + 1, num_categories=6, sid_levels=2, sid_vocab=5, routes=("sid1", "collab"),
                   route_k=(3, 2), short_window=3, long_history=6, recency_buckets=6)
MODEL = ModelConfig(embedding_dim=8, mlp_dims=(16,))
HOUR = 3600
T0 = 1_700_000_000


def make_catalog(max_stored: int = 50) -> ServingCatalog:
    rng = np.random.default_rng(3)
    ids = np.arange(1001, 1001 + ITEMS, dtype=np.int64)
    codes = rng.integers(0, 4, size=(ITEMS, 2)).astype(np.int32)
    codes[-1] = -1  # the last item has no text: no SID codes
    features = ItemFeatureLookup(item_ids=ids, codes=codes, signatures=rng.integers(0, 2**63, size=(ITEMS, 1)).astype(
        np.uint64), categories=rng.integers(0, 4, size=ITEMS).astype(np.int64))
    plan = RoutePlan(routes=(RouteSpec("sid1", 1, 3), RouteSpec("collab", 0, 2)), levels=2)
    return ServingCatalog(features=features, index=ItemIndexLookup.from_arrow(
        pa.table({"item_id": ids, "item_idx": np.arange(1, ITEMS + 1)})),
        settings=ExampleSettings(plan=plan, short_window=3, long_history=6, recency_buckets=6, max_stored=max_stored),
        codebook_version="cb-test", collab_version="cv-test")


def make_bundle(catalog: ServingCatalog) -> ModelBundle:
    torch.manual_seed(0)
    model = build_model(MODEL.name, spec=SPEC, config=MODEL)
    category = np.r_[0, catalog.features.categories + 2]  # (R,) category index = id + 2; row 0 padding
    sid = np.r_[[[0, 0]], np.where(catalog.features.codes >= 0, catalog.features.codes + 1, 0)]  # (R, 2)
    model.item_lookup.set(category, sid)
    return ModelBundle(MODEL, SPEC, DataVersions("cb-test", "cv-test"), model.state_dict())


def frame(*requests: tuple[int, int, list[int], list[int]]) -> pd.DataFrame:
    return pd.DataFrame([{"item_id": i, "request_ts": t, "history_item_ids": h, "history_ts": s}
                         for i, t, h, s in requests])


@pytest.fixture(scope="module")
def served():
    catalog = make_catalog()
    bundle = make_bundle(catalog)
    task = bundle.build()

    def score(requests: pd.DataFrame, on: ServingCatalog = catalog) -> pd.DataFrame:
        return score_requests(task, on, RawRequests.from_frame(requests), bundle.input_columns)

    return catalog, bundle, score


HISTORY = ([1003, 1007, 1011, 1003, 1019, 1002, 1024], [T0 + h * HOUR for h in (0, 5, 9, 20, 30, 31, 40)])


def test_a_request_reads_only_behaviours_strictly_before_its_time(served):
    catalog, _, score = served
    items, times = HISTORY
    at = times[4]  # the fifth behaviour happened at the request's own second
    out = score(frame((1005, at, items[:5], times[:5]), (1005, at, items[:4], times[:4])))
    assert list(out.columns) == list(OUTPUT_COLUMNS)
    assert out["history_length"].tolist() == [4, 4]
    assert out["score"][0] == out["score"][1]
    later = score(frame((1005, times[-1] + HOUR, items, times)))
    assert later["history_length"][0] == 7 and later["score"][0] != out["score"][0]
    # Slots hold item indices (raw id − 1000) of the history before the request, most recent first.
    inputs = request_inputs(RawRequests.from_frame(frame((1005, at, items[:5], times[:5]))), catalog).inputs
    assert inputs["short_item"].tolist() == [[3, 11, 7]] and inputs["target_item"].tolist() == [5]
    assert set(inputs["r_sid1_item"][0]) | set(inputs["r_collab_item"][0]) <= {0, 3, 7, 11}


def test_a_history_longer_than_the_stored_cap_keeps_its_newest_behaviours(served):
    catalog, bundle, _ = served
    capped = make_catalog(max_stored=3)
    items, times = HISTORY
    task = bundle.build()
    full = score_requests(task, capped, RawRequests.from_frame(frame((1005, times[-1] + 1, items, times))),
                          bundle.input_columns)
    newest = score_requests(task, capped, RawRequests.from_frame(frame((1005, times[-1] + 1, items[-3:],
                                                                         times[-3:]))), bundle.input_columns)
    assert full["history_length"][0] == newest["history_length"][0] == 3
    assert full["score"][0] == newest["score"][0]


def test_unknown_items_and_empty_histories_are_treated_as_stated_and_reported(served):
    _, _, score = served
    items, times = HISTORY
    now = times[-1] + HOUR
    out = score(frame((987_654_321, now, items, times), (55, now, items, times), (1030, now, items, times),
                      (1005, now, [], []), (1005, now, [5, 6], [times[0], times[1]]), (1005, now, items, times)))
    assert out["known_item"].tolist() == [False, False, True, True, True, True]
    assert out["has_sids"].tolist() == [False, False, False, True, True, True]  # 1030 has no text
    # Two unknown targets are the same out-of-vocabulary item: one score, a real probability.
    assert out["score"][0] == out["score"][1] and 0 < out["score"][0] < 1
    # A history of unknown items reads as no history, and says how many it could not read.
    assert out["unknown_history_items"].tolist() == [0, 0, 0, 0, 2, 0]
    assert out["history_length"].tolist() == [7, 7, 7, 0, 2, 7]
    assert out["score"][3] == out["score"][4] != out["score"][5]


@pytest.mark.parametrize("bad, message", [
    (frame((1005, T0, [1001], [T0 - 5])).drop(columns="history_ts"), "lacks column"),
    (frame(("1005", T0, [1001], [T0 - 5])), r"row 0: item_id '1005' is not an integer"),
    (frame((1005, T0, [1001], [T0 - 5]), (1005.5, T0, [1001], [T0 - 5])), "row 1: item_id 1005.5"),
    (frame((1005, T0, [1001, "x"], [T0 - 5, T0 - 4])), "row 0: history_item_ids holds 'x'"),
    (frame((1005, T0, [1001, 1002], [T0 - 5])), "row 0: 2 history_item_ids but 1 history_ts"),
    (frame((1005, T0, [1001, 1002], [T0 - 4, T0 - 5])), "row 0: history_ts is not ascending"),
    (frame((1005, T0, [1001], [T0 - 5]), (1005, T0, [1001, 1002], [T0 - 5, T0 + 60])),
     f"row 1: history_ts holds {T0 + 60}, after request_ts {T0}"),
    (frame((None, T0, [1001], [T0 - 5])), "row 0: item_id"),
])
def test_a_malformed_request_is_refused_with_a_message_and_no_score(bad, message):
    with pytest.raises(RequestError, match=message):
        RawRequests.from_frame(bad)


def test_the_catalogue_round_trips_and_must_fit_the_model():
    catalog = make_catalog()
    again = ServingCatalog.from_bytes(catalog.to_bytes())
    assert again.settings == catalog.settings and again.codebook_version == "cb-test"
    for name in ("item_ids", "codes", "signatures", "categories"):
        np.testing.assert_array_equal(getattr(again.features, name), getattr(catalog.features, name))
    np.testing.assert_array_equal(again.index.item_indices(np.array([1001, 5, 1030])), [1, 0, 30])
    bundle = make_bundle(catalog)
    assert catalog_incompatibilities(bundle, catalog) == []
    other = ServingCatalog(features=catalog.features, index=catalog.index, settings=ExampleSettings(
        plan=catalog.settings.plan, short_window=5, long_history=6, recency_buckets=6, max_stored=50),
        codebook_version="cb-other", collab_version="cv-test")
    problems = catalog_incompatibilities(bundle, other)
    assert any("codebook_version" in p for p in problems) and any("short_window" in p for p in problems)


def test_the_registered_model_takes_raw_ids_and_refuses_a_malformed_request(make_config, served):
    catalog, bundle, score = served
    config = make_config()
    with tracked_run(config, "log"):
        registered = log_ctr_model(bundle, {}, "raw", tags={}, catalog=catalog)
    model = mlflow.pyfunc.load_model(f"models:/raw/{registered.version}")
    inputs = model.metadata.get_input_schema().input_names()
    assert inputs == ["item_id", "request_ts", "history_item_ids", "history_ts"]
    items, times = HISTORY
    requests = frame((1005, times[-1] + HOUR, items, times), (987_654_321, times[-1] + HOUR, [], []))
    out = model.predict(requests)
    pd.testing.assert_frame_equal(out.reset_index(drop=True), score(requests))
    with pytest.raises(MlflowException, match="after request_ts") as refused:
        model.predict(frame((1005, T0, [1001], [T0 + 5])))
    assert refused.value.error_code == "INVALID_PARAMETER_VALUE"


def test_a_request_carries_each_routes_whole_history_pool_for_a_model_that_reads_it(served):
    catalog, _, _ = served
    items, times = HISTORY
    request = RawRequests.from_frame(frame((1005, times[-1] + HOUR, items, times)))
    inputs = request_inputs(request, catalog).inputs
    codes = dict(zip(catalog.features.item_ids.tolist(), catalog.features.codes[:, 0].tolist()))
    sid1_matches = sum(codes[i] == codes[1005] and codes[i] >= 0 for i in items)
    assert inputs["r_sid1_pool"].tolist() == [sid1_matches]
    assert inputs["r_collab_pool"].tolist() == [len(items)]  # the collaborative route's pool is the whole history
    # Unknown history items read as no behaviour: no slot, and no match in any pool.
    mixed = RawRequests.from_frame(frame((1005, times[-1] + HOUR, [5, 6, *items], [times[0], times[0], *times])))
    assert request_inputs(mixed, catalog).inputs["r_collab_pool"].tolist() == [len(items)]
    # A model whose occupancy counts the whole history names the pools in its inputs, and the scorer supplies them.
    config = ModelConfig(embedding_dim=8, mlp_dims=(16,), r2led=dataclasses.replace(
        MODEL.r2led, occupancy_counts="history"))
    torch.manual_seed(0)
    model = build_model(config.name, spec=SPEC, config=config)
    lookup = make_bundle(catalog).build().model.item_lookup
    model.item_lookup.set(lookup.category, lookup.sid)
    bundle = ModelBundle(config, SPEC, DataVersions("cb-test", "cv-test"), model.state_dict())
    assert {"r_sid1_pool", "r_collab_pool"} <= set(bundle.input_columns)
    out = score_requests(bundle.build(), catalog, request, bundle.input_columns)
    assert np.isfinite(out["score"]).all()
