"""Single-process reference of ingest + sequences on UserBehavior-layout CSV (pyarrow + pandas).

The same transform as the Spark jobs, in one process, so the benchmark can put Spark's
throughput beside it on the same data: parse and validate, drop exact duplicates, write events;
build ascending per-user sequences truncated to `max_stored`; run the same sample kernel
(hist_len, split, negatives) over all users at once; write sequences and samples as Parquet.
Its counts are compared with Spark's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from r2led_model.config import Config, NegativeSamplingConfig, parse_utc_timestamp
from r2led_model.sequences.sample_kernel import NegativeRule, SplitRule, build_samples_sorted, group_starts

COLUMNS = ["user_id", "item_id", "category_id", "behavior", "ts"]


@dataclass
class ReferenceCounts:
    rows_read: int
    events: int
    users: int
    samples: int
    sampled_negatives: int


def _read_csvs(folder: Path) -> pd.DataFrame:
    files = sorted(folder.rglob("*.csv"))
    options = pacsv.ReadOptions(column_names=COLUMNS)
    convert = pacsv.ConvertOptions(column_types={c: pa.string() for c in COLUMNS})
    tables = [pacsv.read_csv(f, read_options=options, convert_options=convert) for f in files]
    return pa.concat_tables(tables).to_pandas()


def _as_id(text: pd.Series) -> pd.Series:
    return pd.to_numeric(text, errors="coerce")


def run_reference(config: Config, raw_events: Path, out: Path) -> ReferenceCounts:
    raw = _read_csvs(raw_events)
    user, item, ts = _as_id(raw["user_id"]), _as_id(raw["item_id"]), _as_id(raw["ts"])
    low, high = parse_utc_timestamp(config.ingest.min_date), parse_utc_timestamp(config.ingest.max_date)
    ok = (user.notna() & (user >= 0) & item.notna() & (item >= 0) & ts.notna()
          & (ts >= low) & (ts < high) & raw["behavior"].isin(config.ingest.behaviors))
    events = pd.DataFrame({
        "user_id": user[ok].astype(np.int64), "item_id": item[ok].astype(np.int64),
        "ts": ts[ok].astype(np.int64), "behavior": raw["behavior"][ok],
    }).drop_duplicates()
    events["event_date"] = pd.to_datetime(events["ts"], unit="s").dt.date
    out.mkdir(parents=True, exist_ok=True)
    pq.write_to_dataset(pa.Table.from_pandas(events, preserve_index=False), out / "events",
                        partition_cols=["event_date"], existing_data_behavior="delete_matching")

    seq_cfg = config.sequences
    events = events.sort_values(["user_id", "ts", "item_id", "behavior"], kind="stable", ignore_index=True)
    users = events["user_id"].to_numpy()
    user_start = group_starts(users)
    position = np.arange(len(users)) - user_start
    length = np.bincount(user_start, minlength=len(users))[user_start]  # the user's row count, per row
    newest = events[position >= length - seq_cfg.max_stored]
    sequences = newest.groupby("user_id", sort=False).agg(item_ids=("item_id", list), ts=("ts", list))
    pq.write_table(pa.Table.from_pandas(sequences.reset_index(), preserve_index=False), out / "user_sequences.parquet")

    # Sample ids only seed the negative draws here; any stable per-row hash will do.
    events["sample_id"] = (pd.util.hash_pandas_object(events[["user_id", "item_id", "ts", "behavior"]], index=False)
                           .to_numpy().astype(np.int64) & np.int64(0x7FFFFFFFFFFFFFFF))
    events["label"] = None
    valid_from = parse_utc_timestamp(seq_cfg.split.valid_from)
    samples = build_samples_sorted(
        events, in_history=np.ones(len(events), bool), is_sample=np.ones(len(events), bool),
        min_hist_len=seq_cfg.min_hist_len,
        split=SplitRule(mode="time", valid_from=valid_from, test_from=parse_utc_timestamp(seq_cfg.split.test_from)),
        negatives=_negative_rule(events, seq_cfg.negatives, valid_from),
    )
    pq.write_to_dataset(pa.Table.from_pandas(samples, preserve_index=False), out / "samples",
                        partition_cols=["split"], existing_data_behavior="delete_matching")
    return ReferenceCounts(rows_read=len(raw), events=len(events), users=int((position == 0).sum()),
                           samples=len(samples), sampled_negatives=int(samples["is_sampled_negative"].sum()))


def _negative_rule(events: pd.DataFrame, config: NegativeSamplingConfig, popularity_until: int) -> NegativeRule:
    counts = events.loc[events["ts"] < popularity_until, "item_id"].value_counts().sort_index()
    cdf = np.cumsum(counts.to_numpy(np.float64))
    return NegativeRule(ratio=config.ratio, oversample=config.oversample, seed=config.seed,
                        item_ids=counts.index.to_numpy(np.int64), cdf=cdf / cdf[-1])
