"""What notebook 02 shows of a SID report: its metrics and its biggest prefixes, as tables."""

from __future__ import annotations

import pandas as pd

from r2led_model.sids.sid_report import SidReport


def sid_prefix_examples(report: SidReport) -> pd.DataFrame:
    """The report's biggest prefixes per level, one row each: level, prefix, items, example texts."""
    rows = [{"level": int(level), "prefix": str(entry["prefix"]), "items": entry["items"],
             "examples": " | ".join(entry["texts"])}
            for level, entries in report.to_dict()["examples"].items() for entry in entries]
    return pd.DataFrame(rows, columns=["level", "prefix", "items", "examples"])


def sid_metrics_frame(report: SidReport) -> pd.DataFrame:
    """The report's scalar metrics (usage, perplexity, collisions, NMI) as metric/value rows."""
    values = {**report.metrics, "collision_rate_after_dedup": report.collision_rate_after_dedup,
              **{f"nmi {name}": value for name, value in report.nmi.items()}}
    return pd.DataFrame({"metric": list(values), "value": [float(v) for v in values.values()]})
