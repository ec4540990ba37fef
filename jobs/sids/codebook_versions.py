"""Which codebook a table's SIDs come from: checked wherever SIDs are read against a codebook
(retrieval, a model trained with one)."""

from __future__ import annotations

from pyspark.sql import DataFrame

from r2led_model.sids.codebook_store import CodebookVersionError


def require_codebook_version(item_sids: DataFrame, expected: str) -> None:
    """Refuse SIDs from any codebook other than `expected` (e.g. the one a model was trained with)."""
    found = sorted(r[0] for r in item_sids.select("codebook_version").distinct().collect())
    if found != [expected]:
        raise CodebookVersionError(f"item_sids holds codebook version(s) {found}, expected {expected}; "
                                   "re-run assign-sids with that codebook or retrain with the current one")
