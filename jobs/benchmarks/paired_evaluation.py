"""Paired comparisons of a benchmark's variants with R2LED on the same test rows, over every seed.

Each seeded run's test predictions are saved (`save_predictions`) beside the benchmark's tables, so a
later `--summarize` (or a run of other `--models`) compares variants trained in different sessions.
A variant's quality is its AUC averaged over its seeds; its difference with the reference is that mean
minus the reference's mean, and its 95% CI comes from the user bootstrap (`r2led_model.evaluation.paired_bootstrap`):
every replicate resamples users with replacement once and scores every seed of both models on it, so
the interval holds the test set's sampling noise and the seeds' spread together.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from r2led_model.evaluation.paired_bootstrap import user_bootstrap_aucs
from r2led_model.evaluation.segments import ordered_values
from r2led_model.training.trainer import RowPredictions

REFERENCE = "r2led"
REPS = 1000
LEVEL = 0.95
BOOTSTRAP_SEED = 0


def file_safe(label: str) -> str:
    """A variant's label as a file name: "r2led gate=sum" → r2led_gate-sum."""
    return re.sub(r"[^0-9A-Za-z_.+-]", "_", label.replace("=", "-").replace(" ", "_"))


def prediction_path(folder: Path, label: str, seed: int) -> Path:
    """`<folder>/predictions/<label>.seed<seed>.npz`, the label made file-safe (`file_safe`)."""
    return folder / "predictions" / f"{file_safe(label)}.seed{seed}.npz"


def save_predictions(path: Path, rows: RowPredictions) -> None:
    """One seeded run's test rows: sample ids, users, labels and click probabilities."""
    if rows.sample_ids is None:
        raise ValueError("test predictions without sample ids cannot be paired with another model's")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial.npz")
    np.savez_compressed(partial, sample_ids=rows.sample_ids, users=rows.users, labels=rows.labels, probs=rows.probs)
    partial.replace(path)


@dataclass(frozen=True)
class SeedScores:
    """A variant's test predictions over its seeds, rows ordered by sample id (the same rows for every variant)."""

    sample_ids: np.ndarray  # (N,)
    users: np.ndarray  # (N,)
    labels: np.ndarray  # (N,)
    probs: np.ndarray  # (S, N) one row per seed


def load_seed_scores(folder: Path, label: str, seeds: Sequence[int]) -> SeedScores | None:
    """The saved predictions of every seed of `label`, or None when any seed's file is missing."""
    paths = [prediction_path(folder, label, seed) for seed in seeds]
    if not paths or not all(p.is_file() for p in paths):
        return None
    runs = []
    for path in paths:
        with np.load(path) as saved:
            order = np.argsort(saved["sample_ids"], kind="stable")
            runs.append({name: saved[name][order] for name in ("sample_ids", "users", "labels", "probs")})
    first = runs[0]
    for path, run in zip(paths[1:], runs[1:]):
        if not np.array_equal(run["sample_ids"], first["sample_ids"]):
            raise ValueError(f"{path}: its test rows differ from {paths[0]}'s (the tables were rebuilt in between)")
    return SeedScores(sample_ids=first["sample_ids"], users=first["users"], labels=first["labels"].astype(np.int64),
                      probs=np.stack([run["probs"] for run in runs]))


def seed_mean_difference(*, users: np.ndarray, labels: np.ndarray, model: np.ndarray, reference: np.ndarray,
                         reps: int = REPS, seed: int = BOOTSTRAP_SEED, level: float = LEVEL) -> dict[str, float]:
    """Mean-over-seeds AUC of `model` (S_a, N) minus that of `reference` (S_b, N), with its paired user-bootstrap
    CI: {"auc", "reference_auc", "delta", "delta_low", "delta_high", "delta_se", "reps"}."""
    m, r = len(model), len(reference)
    full, replicates, _ = user_bootstrap_aucs(users=users, labels=labels, scores=[*model, *reference], reps=reps,
                                              seed=seed)
    differences = replicates[:, :m].mean(axis=1) - replicates[:, m:m + r].mean(axis=1)  # (reps,)
    differences = differences[np.isfinite(differences)]
    tail = (1.0 - level) / 2.0
    low, high = (np.quantile(differences, [tail, 1.0 - tail]) if differences.size else (np.nan, np.nan))
    return {"auc": float(full[:m].mean()), "reference_auc": float(full[m:].mean()),
            "delta": float(full[:m].mean() - full[m:].mean()), "delta_low": float(low), "delta_high": float(high),
            "delta_se": float(differences.std(ddof=1)) if differences.size > 1 else float("nan"),
            "reps": int(differences.size)}


def _aligned(scores: SeedScores, reference: SeedScores, label: str) -> SeedScores:
    if not np.array_equal(scores.sample_ids, reference.sample_ids):
        raise ValueError(f"{label}: its test rows differ from {REFERENCE}'s: pair only runs on the same tables")
    return scores


def paired_rows(folder: Path, labels: Sequence[str], seeds: Sequence[int], *,
                segments: Mapping[str, np.ndarray] | None = None, reps: int = REPS) -> list[dict]:
    """Per variant (and per segment value, when `segments` gives each test row's value, rows in sample-id
    order of `segments["sample_id"]`): its mean AUC and its paired CI against R2LED's.

    Rows are plain dicts: {"variant", "segment", "value", "n", "auc", "delta", "delta_low", "delta_high", ...};
    the whole test set is segment "all". A variant without saved predictions for every seed is left out.
    """
    reference = load_seed_scores(folder, REFERENCE, seeds)
    if reference is None:
        return []
    families: dict[str, np.ndarray] = {"all": np.full(reference.sample_ids.size, "all", dtype=object)}
    if segments:
        order = np.argsort(segments["sample_id"], kind="stable")
        if not np.array_equal(np.asarray(segments["sample_id"])[order], reference.sample_ids):
            raise ValueError("segments: their sample ids are not the test rows of the saved predictions")
        families.update({name: np.asarray(values)[order] for name, values in segments.items() if name != "sample_id"})
    out = []
    for label in labels:
        scores = load_seed_scores(folder, label, seeds)
        if scores is None:
            continue
        scores = _aligned(scores, reference, label)
        for family, values in families.items():
            for value in ordered_values(values):
                rows = values == value
                y = reference.labels[rows]
                entry = {"variant": label, "segment": family, "value": str(value), "n": int(rows.sum()),
                         "positives": int(y.sum())}
                if 0 < y.sum() < y.size:
                    entry.update(seed_mean_difference(users=reference.users[rows], labels=y,
                                                      model=scores.probs[:, rows], reference=reference.probs[:, rows],
                                                      reps=reps))
                out.append(entry)
    return out


def paired_comparisons(folder: Path, pairs: Sequence[tuple[str, str]], seeds: Sequence[int], *,
                       reps: int = REPS) -> list[dict]:
    """For each (variant, reference) pair, on the whole test set: the variant's mean-over-seeds AUC minus the
    reference's, with the paired user-bootstrap CI (as `paired_rows`, with any saved variant as the
    reference). A pair whose predictions are not saved for every seed gives {"variant", "reference",
    "missing"}."""
    out = []
    for label, against in pairs:
        scores, reference = load_seed_scores(folder, label, seeds), load_seed_scores(folder, against, seeds)
        if scores is None or reference is None:
            out.append({"variant": label, "reference": against,
                        "missing": [name for name, got in ((label, scores), (against, reference)) if got is None]})
            continue
        if not np.array_equal(scores.sample_ids, reference.sample_ids):
            raise ValueError(f"{label}: its test rows differ from {against}'s: pair only runs on the same tables")
        out.append({"variant": label, "reference": against, "n": int(reference.sample_ids.size),
                    **seed_mean_difference(users=reference.users, labels=reference.labels, model=scores.probs,
                                           reference=reference.probs, reps=reps)})
    return out


def format_comparisons(rows: Sequence[dict]) -> str:
    """The pairs of `paired_comparisons` as text lines."""
    lines = ["  paired comparisons (Δ AUC, mean over seeds, 95% CI from the user bootstrap; * = excludes 0)"]
    for row in rows:
        name = f"{row['variant']} − {row['reference']}"
        if "missing" in row:
            lines.append(f"    {name:<58} no saved predictions for {', '.join(row['missing'])}")
            continue
        excludes = row["delta_low"] > 0 or row["delta_high"] < 0
        lines.append(f"    {name:<58} {row['delta']:+.4f} [{row['delta_low']:+.4f}, {row['delta_high']:+.4f}]"
                     + ("*" if excludes else ""))
    return "\n".join(lines)


def overall(rows: Sequence[dict]) -> dict[str, dict]:
    """Each variant's whole-test-set row of `paired_rows`, by label."""
    return {r["variant"]: r for r in rows if r["segment"] == "all"}


def format_delta(row: Mapping | None) -> str:
    """"+0.0123 [+0.0051, +0.0190]" for a variant's paired row; "-" without one (or for the reference)."""
    if row is None or "delta_low" not in row or row["variant"] == REFERENCE:
        return "-"
    return f"{row['delta']:+.4f} [{row['delta_low']:+.4f}, {row['delta_high']:+.4f}]"


def format_segments(rows: Sequence[dict]) -> str:
    """Per segment value (columns): rows, R2LED's AUC, then per variant its Δ AUC vs R2LED, starred where the
    95% CI excludes 0."""
    columns = list(dict.fromkeys((r["segment"], r["value"]) for r in rows if r["segment"] != "all"))
    if not columns:
        return ""
    cells = {(r["variant"], r["segment"], r["value"]): r for r in rows}
    names = [f"{segment[:12]}={value}" for segment, value in columns]
    width = max(9, *(len(n) for n in names)) + 1
    lines = [f"  AUC per segment (Δ vs {REFERENCE}, mean over seeds; * = 95% CI excludes 0)",
             f"  {'':<28}" + "".join(f"{n:>{width}}" for n in names)]
    counts = [next(r["n"] for r in rows if (r["segment"], r["value"]) == c) for c in columns]
    lines.append(f"  {'test rows':<28}" + "".join(f"{n:>{width},}" for n in counts))
    for label in dict.fromkeys(r["variant"] for r in rows):
        parts = []
        for segment, value in columns:
            r = cells.get((label, segment, value))
            if r is None or "auc" not in r:
                parts.append(f"{'-':>{width}}")
            elif label == REFERENCE:
                parts.append(f"{r['auc']:>{width}.4f}")
            else:
                star = "*" if r["delta_low"] > 0 or r["delta_high"] < 0 else " "
                parts.append(f"{r['delta']:+.4f}{star}".rjust(width))
        lines.append(f"  {label[:28]:<28}" + "".join(parts))
    return "\n".join(lines)


def save_segments(folder: Path, segments: Mapping[str, np.ndarray]) -> None:
    """The dataset's test rows and their segment values (`row_segments`), beside the saved predictions."""
    path = folder / "predictions" / "segments.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **{name: np.asarray(values) for name, values in segments.items()})


def load_segments(folder: Path) -> dict[str, np.ndarray] | None:
    path = folder / "predictions" / "segments.npz"
    if not path.is_file():
        return None
    with np.load(path) as saved:
        return {name: saved[name] for name in saved.files}
