"""Training batches from Parquet files: the feed contract, its Petastorm implementation (the one module
that imports petastorm) and ``build_feed``, which chooses between it and ``r2led_model.training.arrow_feed.ArrowFeed``.

The Spark side hands over the *active files* of one split of a Delta table (never a folder listing:
a Delta folder also holds removed files) and the columns a model reads. ``feed.batches(epoch)`` reads
them one Parquet row group at a time and turns them into the batch contract of ``r2led_model.models.inputs``:
a dict of tensors named like the columns, list columns as (B, n) int64, scalars as (B,) int64, ``label``
as (B,) float32, every batch exactly ``batch_size`` rows except the last of the epoch.

Two implementations share everything but the reading of row groups (``Feed``): ``PetastormFeed``
(``petastorm.make_batch_reader``; Petastorm 0.12 needs pyarrow < 15) and ``ArrowFeed`` (plain
``pyarrow.parquet``, any pyarrow). ``training.feed`` picks one; ``auto`` takes Petastorm where it runs.
ArrowFeed reads the row groups of a (seed, epoch, rank, world_size) in the order Petastorm does
(``shard_row_groups``), so where Petastorm's own order is reproducible (below) the two yield the same
batches in the same order; elsewhere the same rows per epoch and rank.

Sharding (``rank``/``world_size``): whole row groups, row group i (counted over the files in the order
given, then within each file) to rank i mod world_size, every epoch. Ranks therefore see disjoint
sets of rows whose union is the split, but generally *different numbers of rows*: the trainer must
tolerate uneven shards (it uses DDP's ``join``). world_size larger than the number of row groups would
leave a rank empty and is an error.

Order and determinism:
  * ``shuffle=False``: rows come in file order, then row-group order, then row order. To keep that
    order Petastorm runs with one worker thread (its thread pool returns row groups in completion
    order); the thread still reads ahead while the consumer trains or predicts.
  * ``shuffle=True``: the shard's row groups are read in an order shuffled with a seed derived from
    (seed, epoch), and an in-memory shuffle buffer of ``shuffle_buffer`` rows, seeded from (seed, epoch,
    rank), mixes rows across row groups. ArrowFeed's order is always a pure function of (files, seed,
    epoch, rank, world_size), and so is Petastorm's with ``workers == 1``. With more workers Petastorm's
    row groups *arrive* in a timing-dependent order; the buffer (of either feed, whenever workers > 1)
    sorts the row groups it holds by content fingerprint before shuffling, so the epoch is still exactly
    reproducible, and the same for both feeds, whenever the whole shard fits in the buffer (shard rows <
    shuffle_buffer + batch_size); beyond that Petastorm's order can vary between runs (the multiset of
    rows never does).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import random
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pyarrow
import pyarrow.parquet as pq
import torch
from pyarrow import fs

from r2led_model.config import ConfigError, TrainingConfig

log = logging.getLogger(__name__)

LABEL_COLUMN = "label"


def _as_url(path: str) -> str:
    """Petastorm wants URLs with one scheme for every file: local paths become file:/// URLs.

    Accepts plain paths, ``file:///x`` and Spark's ``file:/x``; other schemes pass through unchanged.
    The path is not percent-encoded: petastorm hands it to pyarrow as is, so a Hive partition
    folder like ``split=train`` must stay literal.
    """
    parsed = urlparse(path)
    if parsed.scheme == "file":
        return "file://" + str(Path(unquote(parsed.path)).resolve())
    if parsed.scheme == "" or len(parsed.scheme) == 1:  # no scheme (or a Windows drive letter)
        return "file://" + str(Path(path).resolve())
    return path


def _locate(path: str) -> tuple[fs.FileSystem, str]:
    """(file system, path within it) of one file, from a path or URL as ``_as_url`` accepts it."""
    return fs.FileSystem.from_uri(_as_url(path))


def _read_metadata(path: str) -> pq.FileMetaData:
    filesystem, fs_path = _locate(path)
    return pq.read_metadata(fs_path, filesystem=filesystem)


def count_rows(files: Sequence[str]) -> int:
    """Rows in these Parquet files, from their footers (no data is read)."""
    return sum(_read_metadata(str(f)).num_rows for f in files)


def value_counts(files: Sequence[str], column: str, size: int) -> np.ndarray:
    """(size,) int64: how often each value 0..size-1 occurs in an integer `column` of these Parquet files
    (only that column is read; values outside the range are not counted)."""
    counts = np.zeros(size, dtype=np.int64)
    for f in files:
        filesystem, fs_path = _locate(str(f))
        values = pq.read_table(fs_path, columns=[column], filesystem=filesystem).column(column).to_numpy()
        values = values[(values >= 0) & (values < size)]
        counts += np.bincount(values, minlength=size)
    return counts


def count_row_groups(files: Sequence[str]) -> int:
    """Row groups in these Parquet files, the unit Petastorm shards and shuffles by."""
    return sum(_read_metadata(str(f)).num_row_groups for f in files)


def epoch_seed(seed: int, epoch: int) -> int:
    """A 32-bit seed for (seed, epoch); every rank derives the same one."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


def shard_row_groups(num_row_groups: int, *, rank: int, world_size: int, shuffle: bool, seed: int,
                     epoch: int) -> list[int]:
    """This rank's row groups (indexes over all files, as in the module docstring) in reading order.

    The order Petastorm 0.12's ``make_batch_reader`` hands them to its workers, as PetastormFeed calls it
    (seed = ``epoch_seed`` when shuffled, else none; shard arguments only when world_size > 1):
      1. ``Reader._partition_row_groups``: with a seed, ``random.Random(seed).shuffle`` of all indexes,
         then keep the indexes i with i % world_size == rank (the kept *set* never depends on the seed);
      2. ``ConcurrentVentilator`` (``randomize_item_order``): ``np.random.RandomState(seed).shuffle`` of
         the kept list, once per reader (PetastormFeed opens one reader per epoch, ``num_epochs=1``).
    """
    order = list(range(num_row_groups))
    if not shuffle:
        return [i for i in order if i % world_size == rank]
    seed = epoch_seed(seed, epoch)
    if world_size > 1:
        random.Random(seed).shuffle(order)
        order = [i for i in order if i % world_size == rank]
    np.random.RandomState(seed).shuffle(order)
    return order


@contextlib.contextmanager
def _quiet_petastorm() -> Iterator[None]:
    """Silence the ~20 FutureWarnings petastorm 0.12 raises on pyarrow 14's legacy dataset API.

    Only warnings attributed to petastorm's own modules are ignored, and only while this is open.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"petastorm(\..*)?$")
        yield


def _to_tensor(name: str, values: np.ndarray) -> torch.Tensor:
    if not values.flags.writeable:  # Arrow-backed arrays are read-only; torch wants memory it may write
        values = values.copy()
    if name == LABEL_COLUMN:
        return torch.from_numpy(values.astype(np.float32, copy=False))
    if values.dtype.kind in "iub":
        return torch.from_numpy(values.astype(np.int64, copy=False))
    if values.dtype.kind == "f":
        return torch.from_numpy(values.astype(np.float32, copy=False))
    raise TypeError(f"column {name!r}: dtype {values.dtype} is not numeric; the feed carries numbers only")


def _fingerprint(chunk: Mapping[str, np.ndarray]) -> bytes:
    """A content hash of one row group (columns in name order): an order for chunks independent of arrival."""
    digest = hashlib.blake2b(digest_size=16)
    for name in sorted(chunk):
        array = np.ascontiguousarray(chunk[name])
        digest.update(name.encode())
        digest.update(str(array.shape).encode())
        digest.update(array.tobytes())
    return digest.digest()


def _concat(chunks: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    if len(chunks) == 1:
        return chunks[0]
    return {name: np.concatenate([c[name] for c in chunks]) for name in chunks[0]}


def _take(rows: Mapping[str, np.ndarray], index: np.ndarray | slice) -> dict[str, np.ndarray]:
    return {name: values[index] for name, values in rows.items()}


def _num_rows(rows: Mapping[str, np.ndarray]) -> int:
    return len(next(iter(rows.values())))


class Feed:
    """Batches of one split for one rank; call ``batches(epoch)`` once per epoch.

    Subclasses read this rank's row groups (``_row_groups``) in ``shard_row_groups`` order; the shuffle
    buffer and the batching are shared, so two feeds that read the same row groups in the same order
    yield the same batches.
    """

    def __init__(self, *, files: Sequence[str], columns: Sequence[str], batch_size: int, shuffle: bool,
                 seed: int = 0, rank: int = 0, world_size: int = 1, workers: int = 2,
                 shuffle_buffer: int = 20_000) -> None:
        name = type(self).__name__
        if not files:
            raise ValueError(f"{name}: no files given (an empty split?)")
        if not columns:
            raise ValueError(f"{name}: no columns given")
        if batch_size < 1 or workers < 1 or shuffle_buffer < 1:
            raise ValueError(f"{name}: batch_size ({batch_size}), workers ({workers}) and shuffle_buffer "
                             f"({shuffle_buffer}) must be positive")
        if not 0 <= rank < world_size:
            raise ValueError(f"{name}: rank {rank} is outside [0, world_size={world_size})")
        self.files = [_as_url(str(f)) for f in files]
        self.columns = list(dict.fromkeys(columns))
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        # One worker keeps file order (see the module docstring).
        self.workers = workers if shuffle else 1
        self.shuffle_buffer = shuffle_buffer
        self._check_files()

    def _check_files(self) -> None:
        name = type(self).__name__
        metadata = [_read_metadata(f) for f in self.files]
        available = metadata[0].schema.to_arrow_schema().names
        missing = [c for c in self.columns if c not in available]
        if missing:
            raise ValueError(f"{name}: column(s) {missing} not in {self.files[0]} "
                             f"(it has: {', '.join(available)})")
        row_groups = sum(m.num_row_groups for m in metadata)
        if self.world_size > row_groups:
            raise ValueError(f"{name}: world_size {self.world_size} exceeds the {row_groups} Parquet row "
                             f"group(s) of these {len(self.files)} file(s): some rank would get no data. Write the "
                             "split with more (smaller) row groups or files, or train with fewer processes.")
        self.num_rows = sum(m.num_rows for m in metadata)
        self.num_row_groups = row_groups
        # Row group i over all files → (file index, row group within that file).
        self.row_group_locations = [(f, g) for f, m in enumerate(metadata) for g in range(m.num_row_groups)]

    def shard(self, epoch: int) -> list[int]:
        """This rank's row groups for one epoch, in reading order (``shard_row_groups``)."""
        return shard_row_groups(self.num_row_groups, rank=self.rank, world_size=self.world_size,
                                shuffle=self.shuffle, seed=self.seed, epoch=epoch)

    def _row_groups(self, epoch: int) -> Iterator[dict[str, np.ndarray]]:
        """This rank's non-empty row groups as dicts of numpy arrays (lists as (rows, n)), in ``shard`` order."""
        raise NotImplementedError

    def _rows(self, epoch: int) -> Iterator[dict[str, np.ndarray]]:
        """Blocks of rows in training order (each a multiple of batch_size except the last)."""
        if not self.shuffle:
            yield from self._row_groups(epoch)
            return
        rng = np.random.default_rng([self.seed, epoch, self.rank])
        retained: dict[str, np.ndarray] | None = None  # rows kept back from the last emission, already mixed
        pending: list[dict[str, np.ndarray]] = []  # row groups read since
        held = 0
        for chunk in self._row_groups(epoch):
            pending.append(chunk)
            held += _num_rows(chunk)
            if held >= self.shuffle_buffer + self.batch_size:
                rows = self._mix(retained, pending, rng)
                # Emit everything beyond half the buffer (whole batches); the rest waits to mix with new rows.
                # Emitting in large blocks keeps the copying at about two passes over the data.
                emit = (held - self.shuffle_buffer // 2) // self.batch_size * self.batch_size
                yield _take(rows, slice(0, emit))
                retained, pending = _take(rows, slice(emit, None)), []
                held -= emit
        if held:
            yield self._mix(retained, pending, rng)

    def _mix(self, retained: dict[str, np.ndarray] | None, pending: list[dict[str, np.ndarray]],
             rng: np.random.Generator) -> dict[str, np.ndarray]:
        if self.workers > 1:
            # Petastorm's arrival order depends on thread timing: order the new row groups by content first
            # (every feed does, so that feeds with the same settings agree).
            pending = sorted(pending, key=_fingerprint)
        rows = _concat(([retained] if retained is not None else []) + pending)
        return _take(rows, rng.permutation(_num_rows(rows)))

    def batches(self, epoch: int) -> Iterator[dict[str, torch.Tensor]]:
        """This rank's batches for one epoch: dicts of tensors, batch_size rows (the last may be smaller)."""
        carry: dict[str, np.ndarray] | None = None
        for block in self._rows(epoch):
            rows = block if carry is None else _concat([carry, block])
            n = _num_rows(rows)
            full = n // self.batch_size * self.batch_size
            for start in range(0, full, self.batch_size):
                yield {name: _to_tensor(name, values[start:start + self.batch_size])
                       for name, values in rows.items()}
            carry = _take(rows, slice(full, None)) if full < n else None
        if carry is not None:
            yield {name: _to_tensor(name, values) for name, values in carry.items()}

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({len(self.files)} files, {self.num_rows} rows, {self.num_row_groups} row "
                f"groups, batch_size={self.batch_size}, shuffle={self.shuffle}, rank={self.rank}/{self.world_size}, "
                f"workers={self.workers})")


class PetastormFeed(Feed):
    """The feed read with ``petastorm.make_batch_reader`` (pyarrow < 15 only; see ``petastorm_problem``)."""

    def _row_groups(self, epoch: int) -> Iterator[dict[str, np.ndarray]]:
        from petastorm import make_batch_reader

        # Petastorm reorders the shard's row groups whenever a seed is given, even unshuffled: no seed then.
        # Whatever changes here must change in shard_row_groups too (ArrowFeed follows it).
        seed = epoch_seed(self.seed, epoch) if self.shuffle else None
        with _quiet_petastorm():
            reader = make_batch_reader(
                self.files,
                # Patterns that must match a whole column name.
                schema_fields=[f"^{c}$" for c in self.columns],
                reader_pool_type="thread",
                workers_count=self.workers,
                seed=seed,
                shuffle_rows=False,  # per-worker RNG: rows are shuffled by our own buffer instead
                shuffle_row_groups=self.shuffle,
                num_epochs=1,
                cur_shard=self.rank if self.world_size > 1 else None,
                shard_count=self.world_size if self.world_size > 1 else None,
            )
            with reader:
                for result in reader:
                    chunk = {name: np.asarray(getattr(result, name)) for name in self.columns}
                    if _num_rows(chunk):
                        yield chunk


FEEDS = ("auto", "petastorm", "arrow")
# The first pyarrow Petastorm 0.12 fails on: 15 drops ParquetDataset(validate_schema=...), 16 pyarrow.filesystem.
PETASTORM_PYARROW_LIMIT = 15
_announced: set[tuple[str, str]] = set()  # (setting, choice) pairs already logged by this process


def petastorm_problem() -> str | None:
    """Why Petastorm cannot read in this process (pyarrow too new, or it does not import), or None."""
    major = int(pyarrow.__version__.split(".")[0])
    if major >= PETASTORM_PYARROW_LIMIT:
        return (f"pyarrow {pyarrow.__version__} is installed and Petastorm 0.12 needs pyarrow < "
                f"{PETASTORM_PYARROW_LIMIT} (its legacy ParquetDataset API)")
    try:
        with _quiet_petastorm():
            import petastorm  # noqa: F401
    except Exception as exc:  # ImportError, or whatever its own imports raise on this stack
        return f"petastorm does not import ({type(exc).__name__}: {exc})"
    return None


def choose_feed(setting: str) -> str:
    """``"petastorm"`` or ``"arrow"`` for ``training.feed = setting``; logs the choice and why, once a process.

    ``auto`` takes Petastorm where it can run, else arrow; a forced ``petastorm`` that cannot run is a
    ConfigError naming the key.
    """
    if setting not in FEEDS:
        raise ConfigError(f"training.feed: {setting!r} is not one of {', '.join(map(repr, FEEDS))}")
    if setting == "arrow":
        choice, reason = "arrow", "training.feed is 'arrow'"
    else:
        problem = petastorm_problem()
        if setting == "petastorm" and problem:
            raise ConfigError(f"training.feed: 'petastorm' cannot run here: {problem}. Set training.feed to "
                              "'arrow' (or 'auto', which takes arrow where Petastorm cannot run).")
        if setting == "petastorm":
            choice, reason = "petastorm", "training.feed is 'petastorm'"
        elif problem:
            choice, reason = "arrow", f"training.feed is 'auto' and Petastorm cannot run: {problem}"
        else:
            choice, reason = "petastorm", (f"training.feed is 'auto' and Petastorm runs here "
                                           f"(pyarrow {pyarrow.__version__})")
    if (setting, choice) not in _announced:
        _announced.add((setting, choice))
        log.info("training feed: %s (%s)", choice, reason)
    return choice


def build_feed(training: TrainingConfig, *, files: Sequence[str], columns: Sequence[str], shuffle: bool,
               rank: int = 0, world_size: int = 1) -> Feed:
    """The feed of one split for one rank, read by the implementation ``training.feed`` chooses."""
    if choose_feed(training.feed) == "arrow":
        from r2led_model.training.arrow_feed import ArrowFeed  # it builds on Feed: imported here, not at the top

        implementation: type[Feed] = ArrowFeed
    else:
        implementation = PetastormFeed
    return implementation(files=files, columns=columns, batch_size=training.batch_size, shuffle=shuffle,
                          seed=training.seed, rank=rank, world_size=world_size, workers=training.reader_workers,
                          shuffle_buffer=training.shuffle_buffer)
