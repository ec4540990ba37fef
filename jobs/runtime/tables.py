"""The only module that knows where tables live and how they are read and written.

Tables are addressed by logical name (design.md §3). With `tables.backend: path` each is a
Delta folder `<tables.root>/<name>`; with `catalog` it is the managed table
`<catalog>.<schema>.<name>`. Reads check the contract schema; writes are idempotent:
a full overwrite, an overwrite of the partitions a run owns, or an insert-only MERGE on a key.
"""

from __future__ import annotations

import logging
import os
import time
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping, Sequence

from delta.exceptions import (
    ConcurrentAppendException,
    ConcurrentDeleteDeleteException,
    ConcurrentDeleteReadException,
    ConcurrentTransactionException,
    ConcurrentWriteException,
    DeltaConcurrentModificationException,
    MetadataChangedException,
    ProtocolChangedException,
)
from delta.tables import DeltaTable
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from jobs.runtime import commit_guard
from r2led_model.config import TablesConfig

log = logging.getLogger(__name__)


# A commit that lost a race with another writer's (optimistic concurrency): nothing of it is in the table.
COMMIT_CONFLICTS = (DeltaConcurrentModificationException, ConcurrentWriteException, MetadataChangedException,
                    ProtocolChangedException, ConcurrentAppendException, ConcurrentDeleteReadException,
                    ConcurrentDeleteDeleteException, ConcurrentTransactionException)


class SchemaMismatchError(ValueError):
    """A table or DataFrame does not carry the columns its contract promises."""


class TableNotFoundError(LookupError):
    """A job asked for a table that no earlier job has written."""


class DamagedTableError(RuntimeError):
    """A table's folder holds data files but no Delta log: writing there would replace the table."""


# A task writing `in_task_order` keeps up to this many files open (one per partition value); past
# it Spark sorts the rest by partition value (correct, only slower).
_OPEN_FILES_PER_TASK = 16


@dataclass(frozen=True)
class TableSpec:
    name: str
    schema: T.StructType  # required columns; more are allowed
    partition_by: tuple[str, ...] = ()
    key: tuple[str, ...] = ()
    doc: str = ""
    # Shuffle rows by partition value before writing: one file per partition value and task
    # instead of one per value in every task. Right for many small date partitions, wrong for a
    # handful of huge ones (it would serialise the write).
    cluster_by_partition: bool = False
    # The partition value is a function of the key (events: event_date of ts), so an insert-only
    # MERGE may look for a key only in the partitions its source rows fall in.
    partition_follows_key: bool = False
    # Consecutive rows repeat most of their arrays (training_examples: a task writes each user's samples
    # together, and their history windows overlap): written with `repeating_array_settings`.
    repeating_arrays: bool = False


REPEATING_ARRAYS_CODEC = "zstd"


def repeating_array_settings(schema: T.StructType) -> dict[str, str]:
    """Session settings under which Parquet stores `schema`'s array columns so that a row repeating the
    previous row's values costs a few bytes: zstd (whose matches reach across rows) and no dictionary
    for the arrays' values (a dictionary bit-packs them, so a window shifted by one slot no longer
    repeats byte for byte). Readers need nothing: both are standard Parquet."""
    settings = {"spark.sql.parquet.compression.codec": REPEATING_ARRAYS_CODEC}
    for field in schema.fields:
        if isinstance(field.dataType, T.ArrayType):
            # Spark writes lists in Parquet's three-level form: <column>.list.element holds the values.
            settings[f"parquet.enable.dictionary#{field.name}.list.element"] = "false"
    return settings


def _fields(*pairs: tuple[str, T.DataType]) -> T.StructType:
    return T.StructType([T.StructField(n, t, True) for n, t in pairs])


_LONG, _INT, _STR, _DOUBLE = T.LongType(), T.IntegerType(), T.StringType(), T.DoubleType()

TABLES: dict[str, TableSpec] = {
    spec.name: spec
    for spec in (
        TableSpec(
            "events",
            _fields(("user_id", _LONG), ("item_id", _LONG), ("ts", _LONG), ("behavior", _STR),
                    ("label", _INT), ("value", _DOUBLE), ("source", _STR),
                    ("ingest_run_id", _STR), ("event_date", T.DateType())),
            partition_by=("event_date",),
            key=("user_id", "item_id", "ts", "behavior", "label", "value"),
            cluster_by_partition=True,
            partition_follows_key=True,
            doc="one behaviour; label is null for positive-only sources; ts is epoch seconds UTC",
        ),
        TableSpec(
            "events_rejected",
            _fields(("raw", _STR), ("reason", _STR), ("source_file", _STR),
                    ("ingest_run_id", _STR), ("occurrence", _INT)),
            key=("source_file", "raw", "reason", "occurrence"),
            doc="one bad input row, verbatim, with why it was refused; occurrence numbers identical rows of "
                "one file (1, 2, ...) so each copy is stored (a table from before it gains it as 1: ingest)",
        ),
        TableSpec(
            "items",
            _fields(("item_id", _LONG), ("category_id", _LONG), ("text", _STR), ("source", _STR)),
            key=("item_id",),
            doc="one item; category_id and text are nullable",
        ),
        TableSpec(
            "user_sequences",
            _fields(("user_id", _LONG), ("item_ids", T.ArrayType(_LONG)), ("ts", T.ArrayType(_LONG)),
                    ("category_ids", T.ArrayType(_LONG)), ("behaviors", T.ArrayType(_STR)),
                    ("length", _INT), ("dropped", _LONG)),
            key=("user_id",),
            doc="one user; ascending ts; the newest `max_stored` behaviours; `dropped` older ones not "
                "stored, so a sample's history is item_ids[: hist_len - dropped]",
        ),
        TableSpec(
            "samples",
            _fields(("sample_id", _LONG), ("user_id", _LONG), ("item_id", _LONG), ("ts", _LONG),
                    ("label", _INT), ("split", _STR), ("hist_len", _LONG), ("is_sampled_negative", T.BooleanType())),
            partition_by=("split",),
            key=("sample_id",),
            doc="one labelled impression; hist_len counts the user's behaviours strictly before ts",
        ),
        TableSpec(
            "item_embeddings",
            _fields(("item_id", _LONG), ("vector", T.ArrayType(T.FloatType())), ("encoder", _STR),
                    ("encoder_version", _STR)),
            key=("item_id",),
            doc="one item's content vector; encoder names the text encoder, or the ALS imputation for "
                "items without text",
        ),
        TableSpec(
            "item_sids",
            _fields(("item_id", _LONG), ("codes", T.ArrayType(_INT)), ("semantic_codes", T.ArrayType(_INT)),
                    ("dedup_digit", _INT), ("codebook_version", _STR)),
            key=("item_id",),
            doc="one item's SID: codes = the L semantic codes (+ the dedup digit when enabled)",
        ),
        TableSpec(
            "item_collab_vectors",
            _fields(("item_id", _LONG), ("vector", T.ArrayType(T.FloatType())), ("signature", T.ArrayType(_LONG)),
                    ("source", _STR), ("version", _STR)),
            key=("item_id",),
            doc="one item's collaborative vector and its SimHash signature (uint64 words stored as longs)",
        ),
        TableSpec(
            "route_candidates",
            _fields(("sample_id", _LONG), ("user_id", _LONG), ("ts", _LONG), ("hist_len", _LONG), ("split", _STR),
                    ("codebook_version", _STR), ("collab_version", _STR)),
            partition_by=("split",),
            key=("sample_id",),
            doc="one sample's candidates per route: cand_<route>_pos/_item/_mask (fixed length k) and _pool; "
                "the sample's item_id and label beside its keys (absent from tables written before they were "
                "carried: build-training-set then joins them from samples)",
        ),
        TableSpec(
            "item_index",
            _fields(("item_id", _LONG), ("item_idx", _LONG), ("category_id", _LONG), ("category_idx", _INT),
                    ("sid", T.ArrayType(_INT))),
            key=("item_id",),
            doc="dense model indices: item_idx from 1, category_idx 1 = unknown, sid = codes + 1 (0 = padding)",
        ),
        TableSpec(
            "training_examples",
            _fields(("sample_id", _LONG), ("user_id", _LONG), ("ts", _LONG), ("label", _INT), ("split", _STR),
                    ("hist_len", _LONG), ("target_item", _LONG), ("codebook_version", _STR),
                    ("collab_version", _STR)),
            partition_by=("split",),
            key=("sample_id",),
            repeating_arrays=True,
            doc="one sample in input layout 2 (r2led_model/models/inputs.py; column input_layout, absent from "
                "tables written before it): target_item and, per slot of r_<route>_*, short_* and long_*, the "
                "item index (ARRAY<INT>) and its recency bucket (ARRAY<TINYINT>), and per route r_<route>_pool "
                "(INT, its matches before truncation to k); the model looks up categories "
                "and SID codes (item_index); the arrays' columns follow the layout (build_training_set."
                "output_columns), so only the scalars are checked here; padding rules in r2led_model/sequences/features.py",
        ),
        TableSpec(
            "predictions",
            _fields(("sample_id", _LONG), ("user_id", _LONG), ("item_id", _LONG), ("ts", _LONG), ("score", T.DoubleType()),
                    ("model_name", _STR), ("model_version", _STR), ("score_date", _STR)),
            partition_by=("score_date",),
            key=("sample_id", "model_name", "model_version"),
            doc="one scored sample: click probability from a registered model version, per scored date",
        ),
        TableSpec(
            "candidate_scores",
            _fields(("run_id", _STR), ("pair_id", _LONG), ("user_id", _LONG), ("item_id", _LONG), ("ts", _LONG),
                    ("score", T.DoubleType()), ("model_name", _STR), ("model_version", _STR),
                    ("has_history", T.BooleanType()), ("known_item", T.BooleanType()), ("has_sids", T.BooleanType()),
                    ("rejected", _STR)),
            partition_by=("run_id",),
            key=("run_id", "pair_id"),
            doc="one (user, item, ts) pair of `score --candidates`: its click probability (null when rejected, "
                "with the reason), the model version, and how the user and item were treated",
        ),
        TableSpec(
            "pipeline_runs",
            _fields(("run_date", _STR), ("stage", _STR), ("status", _STR), ("rows_in", _LONG), ("rows_out", _LONG),
                    ("seconds", _DOUBLE), ("table_versions", _STR), ("detail", _STR), ("recorded_at", _LONG)),
            key=("run_date", "stage", "recorded_at"),
            doc="the ledger of dated pipeline runs, append-only: one row per stage attempt (done or failed); a "
                "(run_date, stage) stands as its latest recorded_at (epoch ms, increasing); table_versions is "
                "JSON of the Delta versions the stage left (jobs/orchestration/ledger.py)",
        ),
        TableSpec(
            "sampled_batches",
            _fields(("ingest_run_id", _STR), ("events", _LONG)),
            key=("ingest_run_id",),
            doc="one ingest batch of `events` and how many of its events sequences had when it sampled them: "
                "a batch missing here, or holding more events now, is sampled by the next sequences run",
        ),
        TableSpec(
            "pipeline_lock",
            _fields(("name", _STR), ("owner", _STR), ("run_date", _STR), ("taken_at", _LONG),
                    ("heartbeat_at", _LONG), ("timeout_s", _LONG), ("command", _STR)),
            key=("name",),
            doc="the workspace's run lock: one row; owner is null when free; taken_at and heartbeat_at are "
                "epoch seconds UTC; timeout_s is the holder's own staleness timeout; command names the holding "
                "run (jobs/runtime/run_lock.py)",
        ),
        TableSpec(
            "items_rejected",
            _fields(("item_id", _LONG), ("stage", _STR), ("reason", _STR)),
            key=("item_id", "stage"),
            doc="an item a stage could not process (e.g. no text and no training interactions)",
        ),
    )
}


def first_data_file(folder: Path) -> Path | None:
    """A Parquet file anywhere under `folder` (None if there is none, or no folder): stops at the first."""
    if not folder.is_dir():
        return None
    for current, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d != "_delta_log")
        for file in sorted(files):
            if file.endswith(".parquet"):
                return Path(current) / file
    return None


def _has_commits(log_dir: Path) -> bool:
    """A Delta log with at least one commit or checkpoint (a folder whose every commit was deleted has none).
    Only a local folder is listed; elsewhere Delta's own answer stands."""
    if not log_dir.is_dir():
        return not log_dir.parent.exists()  # not a local path: isDeltaTable decided
    return any(p.suffix == ".json" or p.name.endswith(".checkpoint.parquet") for p in log_dir.iterdir())


def spec_for(name: str) -> TableSpec:
    try:
        return TABLES[name]
    except KeyError:
        raise TableNotFoundError(f"no table contract named {name!r} (known: {', '.join(sorted(TABLES))})") from None


def check_schema(actual: T.StructType, spec: TableSpec, what: str) -> None:
    """Raise SchemaMismatchError listing missing, wrongly typed and extra columns."""
    have = {f.name: f.dataType for f in actual.fields}
    missing = [f.name for f in spec.schema.fields if f.name not in have]
    wrong = [f"{f.name} ({have[f.name].simpleString()}, expected {f.dataType.simpleString()})"
             for f in spec.schema.fields if f.name in have and have[f.name] != f.dataType]
    if missing or wrong:
        extra = sorted(set(have) - {f.name for f in spec.schema.fields})
        raise SchemaMismatchError(
            f"{what} does not match the '{spec.name}' contract: missing columns {missing or 'none'}; "
            f"wrong types {wrong or 'none'}; extra columns {extra or 'none'}"
        )


class TableStore:
    """Reads and writes the contract tables under one configured root."""

    def __init__(self, spark: SparkSession, config: TablesConfig):
        self.spark = spark
        self.config = config

    # ---- addressing -------------------------------------------------------------------

    def location(self, name: str) -> str:
        spec_for(name)
        if self.config.backend == "catalog":
            return f"{self.config.catalog}.{self.config.schema}.{name}"
        return str(Path(self.config.root).resolve() / name)

    def sql_name(self, name: str) -> str:
        """How SQL statements name the table: the catalog name, or delta.`<folder>`."""
        where = self.location(name)
        return where if self.config.backend == "catalog" else "delta.`" + where.replace("`", "``") + "`"

    def exists(self, name: str) -> bool:
        """Whether the table exists. A folder with data files and no Delta log (a partial restore, a sync
        that missed `_delta_log`) is neither: DamagedTableError, since a write would start a new table
        over the old files and a read would find nothing."""
        where = self.location(name)
        if self.config.backend == "catalog":
            return self.spark.catalog.tableExists(where)
        if DeltaTable.isDeltaTable(self.spark, where) and _has_commits(Path(where) / "_delta_log"):
            return True
        damaged = first_data_file(Path(where))
        if damaged is not None:
            raise DamagedTableError(
                f"table {name!r}: {where} holds data files ({damaged.relative_to(where)}, ...) but no Delta log "
                f"({where}/_delta_log is missing or empty); nothing was read or written. Restore the folder's "
                f"_delta_log from a backup, or move the folder away to rebuild the table (a dated run: "
                f"`pipeline --date D --rebuild-from STAGE` moves it aside and rebuilds from the stage that writes it)")
        return False

    def delta(self, name: str) -> DeltaTable:
        where = self.location(name)
        if self.config.backend == "catalog":
            return DeltaTable.forName(self.spark, where)
        return DeltaTable.forPath(self.spark, where)

    def version(self, name: str) -> int | None:
        """The table's current Delta version, or None if it does not exist yet."""
        if not self.exists(name):
            return None
        return int(self.delta(name).history(1).select("version").first()[0])

    # ---- reading ----------------------------------------------------------------------

    def read(self, name: str) -> DataFrame:
        spec = spec_for(name)
        if not self.exists(name):
            raise TableNotFoundError(f"table {name!r} does not exist at {self.location(name)}; run the job that writes it first")
        where = self.location(name)
        df = (self.spark.read.table(where) if self.config.backend == "catalog"
              else self.spark.read.format("delta").load(where))
        check_schema(df.schema, spec, f"table {where}")
        return df

    def size_in_bytes(self, name: str) -> int:
        """The bytes of the table's live data files (Delta's table detail)."""
        return int(self.delta(name).detail().select("sizeInBytes").first()[0])

    def active_files(self, name: str, partition: Mapping[str, str] | None = None) -> list[str]:
        """The data files of the table's current snapshot (optionally one partition), as URIs.

        Reading a Delta folder as plain Parquet would also return files that later commits removed;
        this asks Delta for the live files instead.
        """
        files = self.delta(name).toDF().inputFiles()
        wanted = [f"/{key}={value}/" for key, value in (partition or {}).items()]
        return sorted(f for f in files if all(w in f for w in wanted))

    def files_with_deletion_vectors(self, name: str) -> list[str]:
        """Live files of the current snapshot that still physically hold rows the snapshot deleted,
        i.e. rows a deletion vector marks (UPDATE, MERGE or DELETE on a table with
        `delta.enableDeletionVectors`). Delta readers skip those rows; a reader of the bare Parquet
        files (Petastorm) would not.

        Public APIs only (no Delta log internals, so Spark Connect works too): each live file's rows
        as Delta reads them, against its rows as plain Parquet. A table whose protocol lacks the
        deletionVectors feature cannot have any and is not scanned.
        """
        detail = self.delta(name).detail()
        if "tableFeatures" in detail.columns and "deletionVectors" not in (detail.first()["tableFeatures"] or []):
            return []
        files = self.delta(name).toDF().inputFiles()
        if not files:
            return []
        file = F.col("_metadata.file_path")
        # Explicit files: Spark infers no partition columns and lists nothing else in the folder.
        stored = dict(self.spark.read.parquet(*files).groupBy(file).count().collect())  # one row per file
        live = dict(self.read(name).groupBy(file).count().collect())
        return sorted(f for f, rows in stored.items() if live.get(f, 0) != rows)

    def purge_deletion_vectors(self, name: str) -> None:
        """Rewrite the files that carry deletion vectors without their deleted rows, in one commit
        (`REORG TABLE ... APPLY (PURGE)`); the rows the table reads are unchanged."""
        self._before_commit(f"a purge of {name}")
        self.spark.sql(f"REORG TABLE {self.sql_name(name)} APPLY (PURGE)")
        commit_guard.after_commit(f"purge of {name}")
        log.info("purged the deletion vectors of %s", self.location(name))

    # ---- writing ----------------------------------------------------------------------

    def overwrite(self, name: str, df: DataFrame, *, in_task_order: bool = False) -> None:
        """Replace the whole table in one Delta commit (readers see old or new, never half).

        `in_task_order`: each task's rows already come in the order its files should hold; they are
        written as they come, one open file per partition value, instead of being sorted by the
        partition columns first (a sort that spills wide rows to disk).
        """
        spec = self._conform(name, df)
        if in_task_order and spec.partition_by:
            with self._session_conf({"spark.sql.maxConcurrentOutputFileWriters": str(_OPEN_FILES_PER_TASK)}):
                self._write(spec, df, mode="overwrite", options={"overwriteSchema": "true"})
        else:
            self._write(spec, df, mode="overwrite", options={"overwriteSchema": "true"})

    @contextmanager
    def _session_conf(self, settings: Mapping[str, str]) -> Iterator[None]:
        """`settings` in force on the session for the block, then what was there before."""
        previous = {key: self.spark.conf.get(key, None) for key in settings}
        for key, value in settings.items():
            self.spark.conf.set(key, value)
        try:
            yield
        finally:
            for key, value in previous.items():
                if value is None:
                    self.spark.conf.unset(key)
                else:
                    self.spark.conf.set(key, value)

    def _file_settings(self, spec: TableSpec | None,
                       schema: T.StructType | None = None) -> AbstractContextManager[None]:
        """The session settings `spec`'s data files (of `schema`, by default the table's) are written under,
        for a block that writes them (none for most tables)."""
        if spec is None or not spec.repeating_arrays:
            return self._session_conf({})
        return self._session_conf(repeating_array_settings(schema or self.read(spec.name).schema))

    def overwrite_partitions(self, name: str, df: DataFrame, where: str) -> None:
        """Atomically replace the rows matching the SQL predicate `where` with `df`."""
        spec = self._conform(name, df)
        if not self.exists(name):
            self._write(spec, df, mode="overwrite", options={})
            return
        self._write(spec, df, mode="overwrite", options={"replaceWhere": where})

    def insert_new(self, name: str, df: DataFrame, key: Sequence[str] | None = None,
                   already_distinct: bool = False) -> int:
        """MERGE rows whose key is not yet in the table; returns rows inserted.

        Re-running with the same input inserts nothing, which is what makes ingest idempotent.
        Null-safe key equality, so a null label matches a null label. `already_distinct` skips the
        de-duplication shuffle for input the caller has de-duplicated on the key.
        """
        spec = self._conform(name, df)
        key = tuple(key or spec.key)
        df = df.select(*self._columns(spec, df))
        if not already_distinct:
            df = df.dropDuplicates(list(key))
        if not self.exists(name):
            self._write(spec, df, mode="overwrite", options={})
            return int(self.read(name).count())
        if df.limit(1).count() == 0:
            return 0  # no commit: a nightly stage with nothing new leaves the table's version alone
        condition = " AND ".join(f"t.`{k}` <=> s.`{k}`" for k in key)
        if spec.partition_by and spec.partition_follows_key:
            # Restrict the target scan to the partitions present in the source (partition pruning).
            parts = [r[0] for r in df.select(spec.partition_by[0]).distinct().collect()]
            if parts:
                values = ", ".join(f"'{v}'" for v in parts)
                condition = f"t.`{spec.partition_by[0]}` IN ({values}) AND " + condition
        self._before_commit(f"a merge into {name}")
        with self._file_settings(spec, df.schema):
            (self.delta(name).alias("t").merge(df.alias("s"), condition)
             .whenNotMatchedInsertAll().execute())
        metrics = self.delta(name).history(1).select("operationMetrics").first()[0] or {}
        commit_guard.after_commit(f"merge into {name}")
        return int(metrics.get("numTargetRowsInserted", 0))

    def create_if_missing(self, name: str, properties: Mapping[str, str] | None = None) -> None:
        """Create the empty table with its contract columns (and table properties) unless it exists;
        losing a creation race to another writer is fine."""
        spec = spec_for(name)
        if self.exists(name):
            return
        builder = DeltaTable.createIfNotExists(self.spark).addColumns(spec.schema)
        builder = (builder.tableName(self.location(name)) if self.config.backend == "catalog"
                   else builder.location(self.location(name)))
        for key, value in (properties or {}).items():
            builder = builder.property(key, value)
        try:
            builder.execute()
        except Exception:  # a rival created it first (a commit conflict or "already exists"): fine if it is there
            if not self._appears(name):
                raise

    def _appears(self, name: str, wait_seconds: float = 10.0) -> bool:
        """Whether `name` is a table now or becomes one within `wait_seconds`: a rival's creation may have
        written its files but not yet its first commit (its folder is not empty, and not yet a table)."""
        deadline = time.monotonic() + wait_seconds
        while not self.exists(name):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.2)
        return True

    def upsert(self, name: str, df: DataFrame, key: Sequence[str] | None = None,
               only_if: Column | None = None, guarded: bool = True) -> int:
        """MERGE on the key: matched rows take the new values (only those where `only_if`, over the
        target `t` and source `s`, holds), new keys are inserted (one commit); returns rows inserted
        or updated."""
        spec = self._conform(name, df)
        key = tuple(key or spec.key)
        df = df.select(*self._columns(spec, df))
        if not self.exists(name):
            self._write(spec, df, mode="overwrite", options={}, guarded=guarded)
            return int(self.read(name).count())
        condition = " AND ".join(f"t.`{k}` <=> s.`{k}`" for k in key)
        self._before_commit(f"a merge into {name}", guarded)
        # The MERGE's own metrics row (num_inserted_rows, num_updated_rows, ...): this commit's counts,
        # where reading history(1) afterwards could see a later writer's commit, and costs a job.
        with self._file_settings(spec, df.schema):
            metrics = (self.delta(name).alias("t").merge(df.alias("s"), condition)
                       .whenMatchedUpdateAll(condition=only_if).whenNotMatchedInsertAll().execute().first())
        if guarded:
            commit_guard.after_commit(f"merge into {name}")
        return int(metrics["num_inserted_rows"]) + int(metrics["num_updated_rows"])

    def append(self, name: str, df: DataFrame) -> None:
        """Add `df`'s rows in one commit. Not idempotent by itself: for logs whose readers say what a
        repeated row means (the pipeline ledger)."""
        spec = self._conform(name, df)
        self._write(spec, df, mode="append", options={})

    def add_missing_columns(self, name: str) -> list[str]:
        """Add the contract columns an existing table lacks (a table written by an older release),
        as nulls in one commit; returns their names (none: no commit)."""
        spec = spec_for(name)
        have = {f.name for f in self.delta(name).toDF().schema.fields}
        missing = [f for f in spec.schema.fields if f.name not in have]
        if missing:
            columns = ", ".join(f"`{f.name}` {f.dataType.simpleString()}" for f in missing)
            self._before_commit(f"new columns of {name}")
            self.spark.sql(f"ALTER TABLE {self.sql_name(name)} ADD COLUMNS ({columns})")
            commit_guard.after_commit(f"new columns of {name}")
            log.info("added %s to %s", ", ".join(f.name for f in missing), self.location(name))
        return [f.name for f in missing]

    def update_where(self, name: str, condition: Column | str, assignments: Mapping[str, Column | str],
                     *, count: bool = True, guarded: bool = True) -> int | None:
        """UPDATE the rows matching `condition` (a Column or SQL text); returns rows updated (read from
        the table's history: Delta's update returns no metrics), or None without `count`.

        `guarded=False`: the run lock's own writes, which are neither checked against the lock nor
        fault-injection points."""
        table = self.delta(name)
        self._before_commit(f"an update of {name}", guarded)
        with self._file_settings(TABLES.get(name)):
            table.update(condition=condition, set=dict(assignments))
        if not count:
            if guarded:
                commit_guard.after_commit(f"update of {name}")
            return None
        metrics = table.history(1).select("operation", "operationMetrics").first()
        commit_guard.after_commit(f"update of {name}")
        if metrics["operation"] != "UPDATE":
            return 0
        return int((metrics["operationMetrics"] or {}).get("numUpdatedRows", 0))

    # ---- helpers ----------------------------------------------------------------------

    def _before_commit(self, what: str, guarded: bool = True) -> None:
        if guarded:
            commit_guard.before_commit(what)

    def _conform(self, name: str, df: DataFrame) -> TableSpec:
        spec = spec_for(name)
        check_schema(df.schema, spec, f"data written to '{name}'")
        return spec

    @staticmethod
    def _columns(spec: TableSpec, df: DataFrame) -> list[str]:
        """Contract columns first, in contract order, then any extra columns."""
        required = [f.name for f in spec.schema.fields]
        return required + [c for c in df.columns if c not in required]

    def _write(self, spec: TableSpec, df: DataFrame, mode: str, options: dict[str, str],
               guarded: bool = True) -> None:
        self._before_commit(f"a write of {spec.name}", guarded)
        df = df.select(*self._columns(spec, df))
        if spec.cluster_by_partition:
            df = df.repartition(*spec.partition_by)
        writer = df.write.format("delta").mode(mode)
        for key, value in options.items():
            writer = writer.option(key, value)
        if spec.partition_by:
            writer = writer.partitionBy(*spec.partition_by)
        where = self.location(spec.name)
        with self._file_settings(spec, df.schema):
            if self.config.backend == "catalog":
                writer.saveAsTable(where)
            else:
                writer.save(where)
        if guarded:
            commit_guard.after_commit(f"write of {spec.name}")
        log.info("wrote %s (%s)", where, mode if not options else ", ".join(f"{k}={v}" for k, v in options.items()))
