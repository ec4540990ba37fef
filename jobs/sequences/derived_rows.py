"""The one nightly update of the per-sample tables (route_candidates, training_examples).

A nightly run derives rows only for the samples that are new or re-derived (a late behaviour raised
a stored sample's hist_len), reading only their users' sequences, MERGEs them in, then moves the
stored rows whose split the run's date changes. The stored table must have been built from the
same feature versions; otherwise the caller rebuilds it in full.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

from pyspark.sql import DataFrame

from jobs.runtime.tables import TableStore
from jobs.sequences.splits import resplit
from r2led_model.config import SplitConfig

# What identifies a derived row's inputs: a sample whose hist_len changed is derived again.
DERIVED_FROM = ["sample_id", "hist_len"]


@dataclass(frozen=True)
class IncrementalUpdate:
    new_samples: int  # samples derived now: new ones and re-derived ones
    inserted: int  # rows the MERGE inserted or replaced
    moved: int  # stored rows moved to another split


def versions_compatible(stored: Iterable[tuple], current: Iterable[tuple]) -> bool:
    """Whether a table whose rows carry the `stored` feature versions can be extended with rows of
    `current` ones: every stored version is current (an empty table always can)."""
    return set(stored) <= set(current)


def not_yet_derived(inputs: DataFrame, derived: DataFrame) -> DataFrame:
    """The rows of `inputs` without a derived row of the same (sample_id, hist_len)."""
    return inputs.join(derived.select(*DERIVED_FROM), DERIVED_FROM, "left_anti")


def upsert_derived(store: TableStore, table: str, new: DataFrame, sequences: DataFrame,
                   derive: Callable[[DataFrame, DataFrame], DataFrame], split: SplitConfig) -> IncrementalUpdate:
    """MERGE `derive(new, the sequences of new's users)` into `table`, then resplit it.

    `new` is persisted for the count and the derivation (read twice) and released after.
    """
    new = new.persist()
    try:
        count, inserted = new.count(), 0
        if count:
            owners = sequences.join(new.select("user_id").distinct(), "user_id", "left_semi")
            inserted = store.upsert(table, derive(new, owners))
    finally:
        new.unpersist()
    return IncrementalUpdate(new_samples=count, inserted=inserted, moved=resplit(store, table, split))
