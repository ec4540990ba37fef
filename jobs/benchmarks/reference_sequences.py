"""Single-process reference of ingest + sequences on UserBehavior-layout CSV (pyarrow + pandas).

The same transform as the Spark jobs, vectorised in one process, so the benchmark can put
Spark's throughput beside it on the same data: parse and validate, drop exact duplicates, write
events; build ascending per-user sequences truncated to `max_stored`; compute hist_len
(behaviours strictly before ts), the split and popularity-proportional negatives excluding
touched items; write sequences and samples as Parquet. Its counts are compared with Spark's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from r2led_model.config import Config, parse_utc_timestamp

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
    stamps = events["ts"].to_numpy()
    starts = np.r_[0, np.flatnonzero(users[1:] != users[:-1]) + 1]
    user_start = np.repeat(starts, np.diff(np.r_[starts, len(users)]))
    # hist_len: rows of the same user with a strictly smaller ts = first index of (user, ts) − user start.
    new_stamp = np.r_[True, (users[1:] != users[:-1]) | (stamps[1:] != stamps[:-1])]
    stamp_start = np.maximum.accumulate(np.where(new_stamp, np.arange(len(users)), 0))
    hist_len = stamp_start - user_start

    position = np.arange(len(users)) - user_start
    length = np.diff(np.r_[starts, len(users)])
    kept = position >= np.repeat(length, length) - seq_cfg.max_stored
    newest = events[kept]
    sequences = newest.groupby("user_id", sort=False).agg(item_ids=("item_id", list), ts=("ts", list))
    pq.write_table(pa.Table.from_pandas(sequences.reset_index(), preserve_index=False), out / "user_sequences.parquet")

    split_cfg = seq_cfg.split
    valid_from, test_from = parse_utc_timestamp(split_cfg.valid_from), parse_utc_timestamp(split_cfg.test_from)
    split = np.where(stamps >= test_from, "test", np.where(stamps >= valid_from, "valid", "train"))
    samples = pd.DataFrame({"user_id": users, "item_id": events["item_id"].to_numpy(), "ts": stamps,
                            "label": 1, "hist_len": hist_len, "split": split, "is_sampled_negative": False})
    negatives = _negatives(events, samples, seq_cfg.negatives.ratio, seq_cfg.negatives.oversample,
                           seq_cfg.negatives.seed, valid_from)
    all_samples = pd.concat([samples, negatives], ignore_index=True)
    pq.write_to_dataset(pa.Table.from_pandas(all_samples, preserve_index=False), out / "samples",
                        partition_cols=["split"], existing_data_behavior="delete_matching")
    return ReferenceCounts(rows_read=len(raw), events=len(events), users=len(starts),
                           samples=len(all_samples), sampled_negatives=len(negatives))


def _negatives(events: pd.DataFrame, samples: pd.DataFrame, ratio: int, oversample: int, seed: int,
               popularity_until: int) -> pd.DataFrame:
    window = events[events["ts"] < popularity_until]
    counts = window["item_id"].value_counts().sort_index()
    ids, cdf = counts.index.to_numpy(np.int64), np.cumsum(counts.to_numpy(np.float64))
    cdf /= cdf[-1]
    draws = ratio * oversample
    rng = np.random.default_rng(seed)
    picks = ids[np.minimum(np.searchsorted(cdf, rng.random((len(samples), draws)), side="right"), len(ids) - 1)]
    # (n, draws) → long format, then drop touched items and repeats, keep the first `ratio` per positive.
    candidates = pd.DataFrame({"row": np.repeat(np.arange(len(samples)), draws), "draw": np.tile(np.arange(draws), len(samples)),
                               "user_id": np.repeat(samples["user_id"].to_numpy(), draws), "item_id": picks.ravel()})
    touched = events[["user_id", "item_id"]].drop_duplicates().assign(touched=True)
    candidates = candidates.merge(touched, on=["user_id", "item_id"], how="left")
    candidates = candidates[candidates["touched"].isna()].drop_duplicates(["row", "item_id"])
    candidates = candidates[candidates.groupby("row").cumcount() < ratio]
    base = samples.iloc[candidates["row"].to_numpy()].reset_index(drop=True)
    return base.assign(item_id=candidates["item_id"].to_numpy(), label=0, is_sampled_negative=True)
