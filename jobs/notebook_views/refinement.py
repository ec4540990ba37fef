"""What notebook 04 shows of a trained R2LED's refinement stage, per segment of the test rows."""

from __future__ import annotations

from typing import Any, Mapping

import pandas as pd


def refinement_view(diagnostics: Mapping[str, Any] | None, family: str = "warmth") -> pd.DataFrame:
    """One row per value of a segment family of R2LED's diagnostics (`TrainResult.diagnostics`): test rows,
    the gate's mean ID weight, each route's fusion weight and the weights' entropy. Empty for other models."""
    values = (diagnostics or {}).get("by_segment", {}).get(family, {})
    return pd.DataFrame([{family: value, "rows": d["rows"],
                          "gate_id_weight": d.get("gate_id_weight", {}).get("mean"),
                          **{f"weight_{route}": w for route, w in d["route_weight"].items()},
                          "route_entropy": d["route_entropy"]} for value, d in values.items()])
