"""A training example computed the slow, obvious way: one sample at a time, from plain Python
values of the stored tables, in the wide layout (every slot's item, category, SID codes, recency and
mask). build-training-set's narrow examples, widened by the model's item lookups, are checked against
it (never imported by production code)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any


def recency(sample_ts: int, behaviour_ts: int, buckets: int) -> int:
    hours = max(sample_ts - behaviour_ts, 0) / 3600.0
    return 1 + min(math.floor(math.log2(1.0 + hours)), buckets - 2)


def reference_example(sample: Mapping[str, Any], sequence: Mapping[str, Any] | None,
                      index: Mapping[int, tuple[int, int, list[int]]], routes: Sequence[str], levels: int,
                      short_window: int, long_history: int, buckets: int) -> dict[str, Any]:
    """`sample`: a route_candidates row joined with its label and item_id; `sequence`: the user's
    user_sequences row (None without one); `index`: item_id → (item_idx, category_idx, sid)."""
    missing = (0, 1, [0] * levels)  # padding item, unknown category, padding SID
    items = list(sequence["item_ids"]) if sequence else []
    times = list(sequence["ts"]) if sequence else []
    dropped = sequence["dropped"] if sequence else 0
    end = min(max(sample["hist_len"] - dropped, 0), len(items))

    def group(positions: Sequence[int | None]) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {"item": [], "cat": [], "sid": [], "recency": [], "mask": []}
        for position in positions:
            # A slot is real iff its item has an index: an item missing from it is padding too.
            if position is None or items[position] not in index:
                out["item"].append(0), out["cat"].append(0), out["recency"].append(0), out["mask"].append(0)
                out["sid"] += [0] * levels
                continue
            item_idx, category_idx, sid = index[items[position]]
            out["item"].append(item_idx), out["cat"].append(category_idx), out["mask"].append(1)
            out["recency"].append(recency(sample["ts"], times[position], buckets))
            out["sid"] += list(sid)
        return out

    target = index.get(sample["item_id"], missing)
    example = {"sample_id": sample["sample_id"], "user_id": sample["user_id"], "ts": sample["ts"],
               "label": sample["label"], "split": sample["split"], "hist_len": sample["hist_len"],
               "target_item": target[0], "target_cat": target[1], "target_sid": list(target[2])}
    windows = {f"r_{route}": [p if ok else None for p, ok in zip(sample[f"cand_{route}_pos"],
                                                                  sample[f"cand_{route}_mask"])] for route in routes}
    windows["short"] = [end - 1 - j if end - 1 - j >= 0 else None for j in range(short_window)]
    windows["long"] = [end - 1 - j if end - 1 - j >= 0 else None for j in range(long_history)]
    for name, positions in windows.items():
        for part, values in group(positions).items():
            example[f"{name}_{part}"] = values
    for route in routes:  # every behaviour the route matched, before its truncation to k: retrieve's count
        example[f"r_{route}_pool"] = sample[f"cand_{route}_pool"]
    return example
