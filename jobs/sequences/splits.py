"""The time split in one place: the rule (train < valid_from <= valid < test_from <= test), the
same rule as a column over `ts`, the training window it implies, and the move of stored rows a
rolling split makes each nightly run."""

from __future__ import annotations

from pyspark.sql import Column
from pyspark.sql import functions as F

from jobs.runtime.tables import TableStore
from r2led_model.config import SplitConfig, parse_utc_timestamp
from r2led_model.sequences.sample_kernel import SplitRule


def split_rule(config: SplitConfig) -> SplitRule:
    if config.mode == "time":
        return SplitRule(mode="time", valid_from=parse_utc_timestamp(config.valid_from),
                         test_from=parse_utc_timestamp(config.test_from))
    return SplitRule(mode="last_n", last_n_valid=config.last_n_valid, last_n_test=config.last_n_test)


def training_window_end(config: SplitConfig) -> int | None:
    """Latest ts (exclusive) whose events may shape training-time statistics, or None for all."""
    return parse_utc_timestamp(config.valid_from) if config.mode == "time" else None


def split_column(config: SplitConfig) -> Column:
    """The time split as a column over `ts` (the same rule as the kernel's `assign_split`)."""
    if config.mode != "time":
        raise ValueError("sequences.split.mode: re-splitting stored rows needs the 'time' split")
    rule = split_rule(config)
    return (F.when(F.col("ts") >= rule.test_from, F.lit("test"))
            .when(F.col("ts") >= rule.valid_from, F.lit("valid")).otherwise(F.lit("train")))


def resplit(store: TableStore, table: str, config: SplitConfig) -> int:
    """Move stored rows whose split the current time rule changes (a rolling split moves a day per
    run); returns rows moved. Nothing to move commits nothing."""
    moved = F.col("split") != split_column(config)
    if store.read(table).where(moved).limit(1).count() == 0:
        return 0
    return store.update_where(table, moved, {"split": split_column(config)})
