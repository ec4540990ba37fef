"""What the trainer needs from the tables: the live Parquet files of each split of
`training_examples`, row counts, the feature spec (vocabulary sizes, array widths) and the
versions of everything the examples were built from. Only this module looks at the tables for
training, so the torch side receives plain paths and numbers.

Petastorm reads those files as they are, so a live file must hold exactly its live rows. On a table
with deletion vectors (`delta.enableDeletionVectors`, common on Databricks) the split UPDATE of
`resplit` and the MERGEs leave deleted rows in live files; they are purged first (`REORG TABLE ...
APPLY (PURGE)`, one commit, logged) and the files and `training_examples_version` read after it, and
training is refused with a TrainingDataError if the purge cannot run.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

import numpy as np
from pyspark.errors import PySparkException
from pyspark.sql import functions as F

from jobs.runtime.tables import TableStore
from jobs.training.build_training_set import layout_outdated
from r2led_model.arrow_arrays import fixed_width
from r2led_model.config import Config
from r2led_model.models import FeatureSpec
from r2led_model.models.inputs import INPUT_LAYOUT, ExampleLayout
from r2led_model.models.item_lookup import lookup_arrays
from r2led_model.sequences.features import route_group
from r2led_model.tracking.bundle import DataVersions

log = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")


class TrainingDataError(RuntimeError):
    """The training tables cannot feed a model (missing split, mixed versions, stale files, deleted rows
    still in live files)."""


@dataclass(frozen=True)
class TrainingData:
    files: dict[str, list[str]]  # split → live Parquet file URIs of training_examples
    rows: dict[str, int]
    spec: FeatureSpec
    versions: DataVersions
    # What the model looks each item index up in (`ItemLookup`): category (R,) and SID codes (R, L) of the
    # item_index the examples were built with.
    item_category: np.ndarray | None = None
    item_sid: np.ndarray | None = None


def item_lookup_arrays(store: TableStore) -> tuple[np.ndarray, np.ndarray]:
    """The current `item_index` as the model's item lookups: category (R,), SID codes (R, L), row = item_idx."""
    index = store.read("item_index").select("item_idx", "category_idx", "sid").toArrow().combine_chunks()
    levels = len(index["sid"][0]) if index.num_rows else 0
    return lookup_arrays(index["item_idx"].to_numpy().astype(np.int64),
                         index["category_idx"].to_numpy().astype(np.int64),
                         fixed_width(index["sid"], levels, "item_index.sid").astype(np.int64))


def feature_spec(store: TableStore, config: Config) -> FeatureSpec:
    examples = store.read("training_examples")
    outdated = layout_outdated(examples)
    if outdated:
        raise TrainingDataError(f"{outdated} (input layout {INPUT_LAYOUT}: item indices and recency per slot, each "
                                "route's pool): re-run build-training-set")
    routes = ExampleLayout.of_columns(examples.columns).routes
    widths = examples.select(*[F.size(f"{route_group(r)}_item").alias(r) for r in routes],
                             F.size("short_item").alias("short"), F.size("long_item").alias("long")).first()
    if widths is None:
        raise TrainingDataError("training_examples is empty; run build-training-set first")
    index = store.read("item_index").agg(
        F.max("item_idx").alias("items"), F.max("category_idx").alias("categories"),
        F.max(F.array_max("sid")).alias("code"), F.max(F.size("sid")).alias("levels")).first()
    return FeatureSpec(
        num_items=int(index["items"]) + 1, num_categories=int(index["categories"]) + 1,
        sid_levels=int(index["levels"]),
        # SID codes are stored +1; the table is sized by the codebook so tomorrow's new items fit too.
        sid_vocab=max(int(index["code"] or 0), config.codebook.codebook_size) + 1,
        routes=routes, route_k=tuple(int(widths[r]) for r in routes), short_window=int(widths["short"]),
        long_history=int(widths["long"]), recency_buckets=config.training_set.recency_buckets)


def data_versions(store: TableStore) -> DataVersions:
    versions = store.read("training_examples").select("codebook_version", "collab_version").distinct().collect()
    if len(versions) != 1:
        raise TrainingDataError(f"training_examples mixes feature versions {[tuple(v) for v in versions]}; "
                                "re-run build-training-set")
    return DataVersions(codebook_version=versions[0]["codebook_version"],
                        collab_version=versions[0]["collab_version"],
                        training_examples_version=store.version("training_examples"),
                        item_index_version=store.version("item_index"))


def _uri(path: str) -> str:
    """Hadoop's `file:/a/b` → `file:///a/b`, the form pyarrow and Petastorm accept."""
    if path.startswith("file:/") and not path.startswith("file:///"):
        return "file:///" + path[len("file:/"):].lstrip("/")
    return path


def by_first_sample(files: list[str]) -> list[str]:
    """Files ordered by their smallest sample_id (Parquet footer statistics), so the trainer's input
    order depends on the table's rows, not on the random names of the files that hold them."""
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

    def first_sample(uri: str) -> tuple[int, str]:
        filesystem, path = pafs.FileSystem.from_uri(uri)
        with filesystem.open_input_file(path) as handle:
            metadata = pq.ParquetFile(handle).metadata
        column = metadata.schema.names.index("sample_id")
        mins = [metadata.row_group(g).column(column).statistics for g in range(metadata.num_row_groups)]
        known = [m.min for m in mins if m is not None and m.has_min_max]
        return (min(known) if known else 2**63, uri)

    return [uri for _, uri in sorted(first_sample(f) for f in files)]


def purge_deleted_rows(store: TableStore, name: str = "training_examples") -> bool:
    """Make every live file of `name` hold only live rows, so a Parquet reader sees the snapshot;
    returns whether the table was rewritten (a new version). A table without deletion vectors is
    left alone."""
    marked = store.files_with_deletion_vectors(name)
    if not marked:
        return False
    where = store.location(name)
    statement = f"REORG TABLE {store.sql_name(name)} APPLY (PURGE)"
    log.info("%s: %d live file(s) hold rows deleted by deletion vectors, which Petastorm would read; purging them "
             "(%s)", where, len(marked), statement)
    try:
        store.purge_deletion_vectors(name)
    except PySparkException as error:
        reason = (str(error).strip().splitlines() or [""])[0]
        raise TrainingDataError(
            f"{where} has {len(marked)} live file(s) whose deletion vectors mark rows deleted, and purging them "
            f"failed ({type(error).__name__}: {reason}); the trainer would read deleted rows (duplicates, rows of "
            f"another split). Run `{statement}` as a user who may rewrite the table, then train again") from error
    left = store.files_with_deletion_vectors(name)
    if left:
        raise TrainingDataError(f"{where} still has {len(left)} live file(s) with deletion vectors after `{statement}` "
                                "(a concurrent writer?); train again once its writes are done")
    log.info("%s: deletion vectors purged, now version %s", where, store.version(name))
    return True


def user_sample(store: TableStore, data: TrainingData, *, share: float, seed: int, folder: str,
                splits: tuple[str, ...] = ("train", "valid")) -> TrainingData:
    """`data` with the given splits cut to a share of the users (pmod(xxhash64(user_id, seed), 10,000) <
    share · 10,000, so the same users whatever reads it), written once per training_examples version under
    `folder`; the other splits keep their files. Rows and spec describe what the sample holds."""
    if share >= 1.0:
        return data
    version = data.versions.training_examples_version
    root = f"{folder.rstrip('/')}/users-{share:g}-seed{seed}-v{version}"
    examples = store.read("training_examples")
    chosen = F.pmod(F.xxhash64(F.col("user_id"), F.lit(seed)), F.lit(10_000)) < F.lit(int(round(share * 10_000)))
    files, rows = dict(data.files), dict(data.rows)
    spark = examples.sparkSession
    for split in splits:
        path = f"{root}/{split}"
        if not _exists(f"{path}/_SUCCESS"):
            sample = examples.where((F.col("split") == split) & chosen)
            (sample.repartition(max(1, len(data.files[split])), "user_id").sortWithinPartitions("sample_id")
             .write.mode("overwrite").parquet(path))
        written = spark.read.parquet(path)
        rows[split] = written.count()
        if not rows[split]:
            raise TrainingDataError(f"tuning.user_share {share:g} leaves no {split} rows; raise it")
        files[split] = by_first_sample(sorted({_uri(f) for f in written.inputFiles()}))
    log.info("user sample %.3g (seed %d): %s rows under %s", share, seed,
             {s: rows[s] for s in splits}, root)
    return dataclasses.replace(data, files=files, rows=rows)


def _exists(path: str) -> bool:
    """Whether a file exists (a local path or a URI pyarrow knows); an unknown scheme counts as missing,
    which only costs writing the sample again."""
    import pyarrow as pa
    import pyarrow.fs as pafs

    try:
        filesystem, inner = pafs.FileSystem.from_uri(path if "://" in path else f"file://{path}")
        return filesystem.get_file_info(inner).type == pafs.FileType.File
    except (OSError, ValueError, pa.ArrowException):
        return False


def training_data(store: TableStore, config: Config) -> TrainingData:
    # First: the files and the version recorded below must both be those of the purged table.
    purge_deleted_rows(store, "training_examples")
    counts = {r["split"]: int(r["count"]) for r in store.read("training_examples").groupBy("split").count().collect()}
    missing = [s for s in SPLITS if not counts.get(s)]
    if missing:
        raise TrainingDataError(f"training_examples has no rows for split(s) {missing}; check sequences.split")
    files = {split: by_first_sample([_uri(f) for f in store.active_files("training_examples", {"split": split})])
             for split in SPLITS}
    category, sid = item_lookup_arrays(store)
    return TrainingData(files=files, rows={s: counts[s] for s in SPLITS}, spec=feature_spec(store, config),
                        versions=data_versions(store), item_category=category, item_sid=sid)
