"""`benchmark models`' residual check: what the item's target encoding and the user's click rate add to a
variant's saved test scores (`r2led_model.evaluation.residual_signal`), with paired CIs.

The content features (point in time, training labels only; `jobs.training.reference_rows.content_features`)
are saved beside the predictions when the references run (`--references`); each check compares the
cross-fitted stack of [logit, features] with the cross-fitted stack of the logit alone, so both sides get the
same per-fold recalibration and the difference is the features' alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from jobs.benchmarks.paired_evaluation import load_seed_scores, seed_mean_difference
from r2led_model.evaluation.residual_signal import logit, stacked_logits

FEATURE_SETS = {  # what the check stacks → the content features it reads
    "item's target encoding": ("item_ctr", "log1p_item_impressions"),
    "user's click rate": ("user_ctr",),
    "both": ("item_ctr", "log1p_item_impressions", "user_ctr"),
    "SID-prefix counts": ("log1p_same_l1", "log1p_same_l2", "log1p_same_l3", "log1p_history"),
}


def features_path(folder: Path) -> Path:
    return folder / "predictions" / "content_features.npz"


def save_content_features(folder: Path, frame: pd.DataFrame) -> None:
    """The test rows' content features (sample_id and each feature column), beside the saved predictions."""
    path = features_path(folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **{name: frame[name].to_numpy() for name in frame.columns})


def load_content_features(folder: Path) -> pd.DataFrame | None:
    path = features_path(folder)
    if not path.is_file():
        return None
    with np.load(path) as saved:
        return pd.DataFrame({name: saved[name] for name in saved.files})


def residual_rows(folder: Path, labels: Sequence[str], seeds: Sequence[int], *, reps: int = 1000) -> list[dict]:
    """Per variant of `labels` with saved predictions and per feature set: the stack's mean-over-seeds AUC
    minus the logit-alone stack's, with its paired user-bootstrap CI. [] without saved content features."""
    features = load_content_features(folder)
    if features is None:
        return []
    by_sample = features.set_index("sample_id")
    out = []
    for label in labels:
        scores = load_seed_scores(folder, label, seeds)
        if scores is None:
            continue
        if not np.isin(scores.sample_ids, by_sample.index.to_numpy()).all():
            raise ValueError(f"{label}: some test rows have no content features (the tables were rebuilt since)")
        rows = by_sample.loc[scores.sample_ids]
        own = np.stack([stacked_logits(users=scores.users, labels=scores.labels, logits=logit(p),
                                       features=np.zeros((p.size, 0))) for p in scores.probs])  # (S, N)
        for name, columns in FEATURE_SETS.items():
            x = rows[list(columns)].to_numpy(np.float64)  # (N, F)
            stacked = np.stack([stacked_logits(users=scores.users, labels=scores.labels, logits=logit(p), features=x)
                                for p in scores.probs])  # (S, N)
            out.append({"variant": label, "features": name, **seed_mean_difference(
                users=scores.users, labels=scores.labels, model=stacked, reference=own, reps=reps)})
    return out


def format_residuals(rows: Sequence[dict]) -> str:
    lines = ["  what stacking adds to a variant's logit (cross-fitted by user; Δ AUC against the logit alone, "
             "95% CI; * = excludes 0)"]
    for r in rows:
        excludes = r["delta_low"] > 0 or r["delta_high"] < 0
        lines.append(f"    {r['variant']:<28} + {r['features']:<24} {r['delta']:+.4f} "
                     f"[{r['delta_low']:+.4f}, {r['delta_high']:+.4f}]" + ("*" if excludes else ""))
    return "\n".join(lines)
