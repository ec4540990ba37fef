"""Evaluation plots logged with every training run: ROC, calibration, loss curves; for R2LED, what its
refinement stage does by target warmth."""

from __future__ import annotations

from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # files only; no display on a scheduler
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def roc_figure(labels: np.ndarray, probs: np.ndarray, title: str):
    order = np.argsort(-probs, kind="stable")
    hits = labels[order] > 0
    tpr = np.concatenate([[0.0], np.cumsum(hits) / max(hits.sum(), 1)])
    fpr = np.concatenate([[0.0], np.cumsum(~hits) / max((~hits).sum(), 1)])
    figure, axes = plt.subplots(figsize=(4.5, 4.5))
    axes.plot(fpr, tpr, label="model")
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", label="chance")
    axes.set(xlabel="false positive rate", ylabel="true positive rate", title=title)
    axes.legend(loc="lower right")
    figure.tight_layout()
    return figure


def calibration_figure(labels: np.ndarray, probs: np.ndarray, title: str, bins: int = 10):
    """Mean predicted probability against the observed click rate, in equal-width bins."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(probs, edges) - 1, 0, bins - 1)
    filled = [b for b in range(bins) if np.any(which == b)]
    predicted = [probs[which == b].mean() for b in filled]
    observed = [labels[which == b].mean() for b in filled]
    figure, axes = plt.subplots(figsize=(4.5, 4.5))
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect")
    axes.plot(predicted, observed, marker="o", label="model")
    axes.set(xlabel="mean predicted probability", ylabel="observed click rate", title=title, xlim=(0, 1), ylim=(0, 1))
    axes.legend(loc="upper left")
    figure.tight_layout()
    return figure


def _fractional_epochs(history: Sequence[dict]) -> list[float]:
    """Each evaluation's x: its epoch plus the share of that epoch's steps done (the epoch's last evaluation
    is at its end); entries without a step (one evaluation per epoch) sit at their epoch + 1."""
    last_step: dict[float, float] = {}
    for h in history:
        last_step[h["epoch"]] = max(last_step.get(h["epoch"], 0.0), float(h.get("step", 0.0)))
    return [h["epoch"] + (float(h["step"]) / last_step[h["epoch"]] if h.get("step") and last_step[h["epoch"]] else 1.0)
            for h in history]


def loss_curves_figure(history: Sequence[dict]):
    epochs = _fractional_epochs(history)
    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.8))
    left.plot(epochs, [h["train_loss"] for h in history], marker="o", label="train loss")
    left.plot(epochs, [h["valid_logloss"] for h in history], marker="o", label="valid logloss")
    left.set(xlabel="epoch", title="loss")
    left.legend()
    right.plot(epochs, [h["valid_auc"] for h in history], marker="o", label="valid AUC")
    right.plot(epochs, [h["valid_gauc"] for h in history], marker="o", label="valid GAUC")
    right.set(xlabel="epoch", title="validation")
    right.legend()
    figure.tight_layout()
    return figure


def refinement_figure(diagnostics: dict, family: str = "warmth"):
    """R2LED's gate ID weight and route-fusion weights per value of one segment family
    (`r2led_model.evaluation.diagnostics.r2led_diagnostics`'s "by_segment"): a gate that chooses rises with warmth."""
    values = diagnostics.get("by_segment", {}).get(family, {})
    labels = list(values)
    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.8))
    gates = [v.get("gate_id_weight", {}).get("mean", np.nan) for v in values.values()]
    left.bar(labels, gates, color="tab:blue")
    left.set(xlabel=f"target {family}", ylabel="mean ID weight", ylim=(0, 1), title="SID-level gate")
    bottom = np.zeros(len(labels))
    routes = list(diagnostics.get("route_weight", {}))
    for route in routes:
        heights = np.array([v["route_weight"][route] for v in values.values()])
        right.bar(labels, heights, bottom=bottom, label=route)
        bottom += heights
    right.set(xlabel=f"target {family}", ylabel="mean weight", ylim=(0, 1), title="route fusion")
    if routes:
        right.legend(fontsize="small")
    figure.tight_layout()
    return figure
