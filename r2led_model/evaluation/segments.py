"""AUC per segment of the test rows, each model beside a reference with its paired interval.

An overall AUC gain can live entirely in one slice (cold targets, dormant interests, noisy text) or
hide a loss in another. `segment_table` splits the rows by each segment family (warmth → "0",
"1-4", ...; dormant_target → True/False; ...) and, within every slice, reports each model's AUC and
its paired user-bootstrap difference to the reference (`paired_bootstrap`), resampling only the
users present in that slice.

Rows are flat dicts of strings, ints and floats, one per (segment, value, model), so they print as
JSON lines; `format_segment_table` lays them out as a fixed-width text table.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from r2led_model.evaluation.metrics import auc
from r2led_model.evaluation.paired_bootstrap import paired_auc_differences

WARMTH_BUCKETS = ("0", "1-4", "5-19", "20+")
_WARMTH_EDGES = np.array([1, 5, 20])  # first impression count of each bucket after "0"


def warmth_bucket(train_impressions: np.ndarray) -> np.ndarray:
    """(N,) warmth labels "0" / "1-4" / "5-19" / "20+" of targets with these training impression counts (N,)."""
    counts = np.asarray(train_impressions).reshape(-1)
    if (counts < 0).any():
        raise ValueError("warmth_bucket: impression counts must be non-negative")
    return np.asarray(WARMTH_BUCKETS)[np.searchsorted(_WARMTH_EDGES, counts, side="right")]


def ordered_values(values: np.ndarray) -> list:
    """The distinct values of a segment column, warmth buckets in their natural order, others sorted."""
    distinct = np.unique(values).tolist()
    if set(map(str, distinct)) <= set(WARMTH_BUCKETS):
        return sorted(distinct, key=lambda v: WARMTH_BUCKETS.index(str(v)))
    return distinct


def _segment_rows(*, segment: str, value: str, users: np.ndarray, labels: np.ndarray,
                  scores: Mapping[str, np.ndarray], reference: str, reps: int, seed: int,
                  level: float) -> list[dict]:
    n, n_pos = int(labels.size), int((labels > 0.5).sum())
    base = {"segment": segment, "value": value, "n": n, "n_pos": n_pos, "n_users": int(np.unique(users).size)}
    rows = [{**base, "model": name, "auc": auc(labels, s)} for name, s in scores.items()]
    if not (0 < n_pos < n):
        return rows  # one class only: no AUC, no interval
    differences = paired_auc_differences(users=users, labels=labels, scores=scores, reference=reference, reps=reps,
                                         seed=seed, level=level)
    for row in rows:
        d = differences.get(row["model"])
        if d is not None:
            row.update(delta=d.difference, delta_low=d.low, delta_high=d.high, delta_se=d.se, reps=d.reps)
    return rows


def segment_table(*, users: np.ndarray, labels: np.ndarray, scores: Mapping[str, np.ndarray], reference: str,
                  segments: Mapping[str, np.ndarray], reps: int = 1000, seed: int = 0,
                  level: float = 0.95) -> list[dict]:
    """Per (segment, value, model): n, n_pos, n_users, auc and, for models other than `reference`,
    delta = AUC(model) − AUC(reference) with delta_low / delta_high / delta_se / reps.

    users, labels: (N,); scores: model name → (N,); segments: family name → (N,) value of each row.
    The first rows are the whole set (segment "all", value "all"). A slice holding one class has
    NaN AUCs and no delta keys.
    """
    u = np.asarray(users).reshape(-1)
    y = np.asarray(labels).reshape(-1)
    if reference not in scores:
        raise ValueError(f"segment_table: reference {reference!r} is not among the models {sorted(scores)}")
    model_scores = {name: np.asarray(s).reshape(-1) for name, s in scores.items()}
    columns = {name: np.asarray(v).reshape(-1) for name, v in segments.items()}
    lengths = {"users": u.size, "labels": y.size, **{f"scores[{k}]": v.size for k, v in model_scores.items()},
               **{f"segments[{k}]": v.size for k, v in columns.items()}}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"segment_table: inputs differ in length: {lengths}")
    slices = [("all", "all", np.ones(y.size, bool))]
    for family, column in columns.items():
        slices += [(family, str(value), column == value) for value in ordered_values(column)]
    table = []
    for family, value, mask in slices:
        table += _segment_rows(segment=family, value=value, users=u[mask], labels=y[mask],
                               scores={k: s[mask] for k, s in model_scores.items()}, reference=reference,
                               reps=reps, seed=seed, level=level)
    return table


def _cell(row: dict) -> str:
    if "delta" not in row:
        return f"{row['auc']:.4f}"
    return f"{row['auc']:.4f} [{row['delta_low']:+.4f}, {row['delta_high']:+.4f}]"


def format_segment_table(rows: list[dict]) -> str:
    """Fixed-width text: segment, value, n, then per model "AUC [Δ low, Δ high]" (the reference: AUC alone)."""
    models = list(dict.fromkeys(row["model"] for row in rows))
    keyed: dict[tuple[str, str], dict[str, dict]] = {}
    for row in rows:
        keyed.setdefault((row["segment"], row["value"]), {})[row["model"]] = row
    lines = [["segment", "value", "n", *models]]
    for (segment, value), by_model in keyed.items():
        n = next(iter(by_model.values()))["n"]
        lines.append([segment, value, str(n), *(_cell(by_model[m]) if m in by_model else "" for m in models)])
    widths = [max(len(line[c]) for line in lines) for c in range(len(lines[0]))]
    return "\n".join("  ".join(text.ljust(width) if c < 2 else text.rjust(width)
                               for c, (text, width) in enumerate(zip(line, widths))).rstrip()
                     for line in lines)
