"""Raw-id requests → the model's inputs → click probabilities, with what each request was treated as.

The pipeline's steps, on one process's arrays: a request's history is cut at its time (behaviours
strictly before `request_ts`; same-second ones are not history, as for a logged sample) and to the
newest `max_stored` (as `user_sequences` stores it); the retrieval kernel ranks it per route
(`retrieve_routes_many`, as `retrieve` does); `features.example_slots` assembles the slots (as
`build-training-set` does); the model reads them with its item lookups. So a logged sample sent as
a raw request gets the score `predictions` holds for it.

Treatments, each reported in the output:
  * an item the catalogue does not know is scored as an out-of-vocabulary item (`known_item` false):
    no ID row, the unknown category, no SID codes, no route candidates;
  * an item without SIDs (no text) is scored with its ID and category (`has_sids` false);
  * a history behaviour whose item the catalogue does not know is not read (`unknown_history_items`);
  * an empty history (a user the pipeline has never seen) leaves every window and route empty.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from r2led_model.models import CTRTask
from r2led_model.models.inputs import pool_column
from r2led_model.retrieval.multi_route import (Histories, RouteCandidates, RoutePlan, Targets,
                                              retrieve_routes_many)
from r2led_model.sequences.features import PAD, HistoryFeatures, example_slots, route_group
from r2led_model.serving.catalog import ServingCatalog
from r2led_model.serving.requests import RawRequests
from r2led_model.tracking.bundle import predict_arrays

# The served model's output columns, score first (a Spark UDF of result type double reads the first).
OUTPUT_COLUMNS = ("score", "known_item", "has_sids", "history_length", "unknown_history_items")


@dataclass(frozen=True)
class AssembledRequests:
    inputs: dict[str, np.ndarray]  # layout-2 model inputs: `<group>_item`, `<group>_recency` (N, n), target_item and
    # r_<route>_pool (N,)
    history_item_idx: np.ndarray  # (M,) each behaviour's item index, 0 for an item the catalogue does not know
    first: np.ndarray  # (N,) each request's first behaviour the model reads (a row of the requests' behaviours)
    kept: np.ndarray  # (N,) how many it reads: those before the request, the newest `max_stored`

    def read_rows(self, requests: RawRequests) -> np.ndarray:
        """(M,) whether each behaviour of the requests is one the model reads."""
        owner = requests.owner
        offset = np.arange(len(owner)) - self.first[owner]  # (M,) from the request's first read behaviour
        return (offset >= 0) & (offset < self.kept[owner])


def request_inputs(requests: RawRequests, catalog: ServingCatalog) -> AssembledRequests:
    """The model inputs of every request, assembled as the pipeline assembles a logged sample's."""
    settings = catalog.settings
    owner = requests.owner  # (M,)
    before = requests.history_ts < requests.request_ts[owner]  # (M,); ascending, so a prefix of each history
    hist_len = np.bincount(owner, weights=before, minlength=len(requests)).astype(np.int64)  # (N,)
    kept = np.minimum(hist_len, settings.max_stored)  # (N,)
    dropped = hist_len - kept  # (N,) the oldest, cut as user_sequences cuts them
    first = requests.starts[:-1] + dropped  # (N,)
    codes, signatures, categories = catalog.features.features(requests.history_item_ids)
    histories = Histories(item_ids=requests.history_item_ids, ts=requests.history_ts, sid_codes=codes,
                          starts=first, lengths=kept, dropped=dropped, signatures=signatures, categories=categories)
    codes, signatures, categories = catalog.features.features(requests.item_ids)
    targets = Targets(item_ids=requests.item_ids, hist_len=hist_len, sid_codes=codes, signatures=signatures,
                      categories=categories)
    found = retrieve_routes_many(histories, targets, np.arange(len(requests)), settings.plan)
    history = HistoryFeatures(item_idx=catalog.index.item_indices(requests.history_item_ids),  # (M,)
                              ts=requests.history_ts)
    pools = known_pools(histories, targets, history.item_idx != PAD, settings.plan, found)
    slots = example_slots(history, first=first, ends=kept, sample_ts=requests.request_ts,
                          route_slots={route: (c.positions.astype(np.int64), c.mask) for route, c in found.items()},
                          short_window=settings.short_window, long_history=settings.long_history,
                          recency_buckets=settings.recency_buckets)
    return AssembledRequests(inputs={**slots, **pools, "target_item": catalog.index.item_indices(requests.item_ids)},
                             history_item_idx=history.item_idx, first=first, kept=kept)


def known_pools(histories: Histories, targets: Targets, known: np.ndarray, plan: RoutePlan,
                found: dict[str, RouteCandidates]) -> dict[str, np.ndarray]:
    """Each route's pool (`r_<route>_pool`, (N,) each) over the behaviours the model can read: a behaviour
    whose item the catalogue does not know reads as no behaviour in the slots, so it is no match either
    (the pipeline's histories hold known items only). known (M,) per behaviour of `histories`; `found`: the
    routes retrieved over every behaviour, whose pools stand when every behaviour is known."""
    if not known.all():
        lengths = histories.lengths
        owner = np.repeat(np.arange(len(lengths)), lengths)  # (R,) the request of each read row
        offset = np.arange(len(owner)) - np.repeat(np.cumsum(lengths) - lengths, lengths)  # (R,) within its request
        rows = histories.starts[owner] + offset  # (R,) rows of the requests' behaviours, in order
        keep = known[rows]  # (R,)
        rows = rows[keep]  # (R',) the read rows of known items
        lengths = np.bincount(owner[keep], minlength=len(lengths)).astype(np.int64)  # (N,)

        def taken(values: np.ndarray | None) -> np.ndarray | None:
            return None if values is None else values[rows]

        readable = Histories(item_ids=histories.item_ids[rows], ts=histories.ts[rows],
                             sid_codes=histories.sid_codes[rows], starts=np.cumsum(lengths) - lengths,
                             lengths=lengths, dropped=np.zeros_like(lengths),
                             signatures=taken(histories.signatures), vectors=taken(histories.vectors),
                             categories=taken(histories.categories))
        found = retrieve_routes_many(readable, replace(targets, hist_len=lengths), np.arange(len(lengths)), plan)
    return {pool_column(route_group(route)): c.pool_size.astype(np.int64) for route, c in found.items()}


def score_requests(task: CTRTask, catalog: ServingCatalog, requests: RawRequests,
                   input_columns: list[str]) -> pd.DataFrame:
    """OUTPUT_COLUMNS for every request, in order. `input_columns`: the layout-2 columns the model reads."""
    assembled = request_inputs(requests, catalog)
    inputs = assembled.inputs
    scores = predict_arrays(task, {c: inputs[c] for c in input_columns}) if len(requests) else np.zeros(0)
    target = inputs["target_item"]
    sid = task.model.item_lookup.sid.numpy()  # (R, L) the model's SID codes per item index
    in_lookup = (target != PAD) & (target < len(sid))  # (N,)
    has_sids = np.zeros(len(target), dtype=bool)
    has_sids[in_lookup] = (sid[target[in_lookup]] != PAD).any(axis=1)
    unknown = assembled.history_item_idx == PAD  # (M,)
    unread = np.bincount(requests.owner, weights=assembled.read_rows(requests) & unknown,
                         minlength=len(requests)).astype(np.int64)  # (N,)
    return pd.DataFrame({"score": scores, "known_item": target != PAD, "has_sids": has_sids,
                         "history_length": assembled.kept, "unknown_history_items": unread})
