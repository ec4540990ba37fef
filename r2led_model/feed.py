"""Training batches from Parquet files through Petastorm: the one module that imports petastorm.

The Spark side hands over the *active files* of one split of a Delta table (never a folder listing:
a Delta folder also holds removed files) and the columns a model reads. ``PetastormFeed.batches(epoch)``
reads them with ``petastorm.make_batch_reader`` (one Petastorm result per Parquet row group) and turns
them into the batch contract of ``r2led_model.models.inputs``: a dict of tensors named like the columns,
list columns as (B, n) int64, scalars as (B,) int64, ``label`` as (B,) float32, every batch exactly
``batch_size`` rows except the last of the epoch.

Sharding (``rank``/``world_size``): Petastorm assigns whole row groups, row group i (counted over the
files in the order given, then within each file) to rank i mod world_size. Ranks therefore see disjoint
sets of rows whose union is the split, but generally *different numbers of rows*: the trainer must
tolerate uneven shards (it uses DDP's ``join``). world_size larger than the number of row groups would
leave a rank empty and is an error.

Order and determinism:
  * ``shuffle=False``: rows come in file order, then row-group order, then row order. To keep that
    order the reader runs with one worker thread (Petastorm's thread pool returns row groups in
    completion order); the thread still reads ahead while the consumer trains or predicts.
  * ``shuffle=True``: Petastorm shuffles the row-group order with a seed derived from (seed, epoch),
    and an in-memory shuffle buffer of ``shuffle_buffer`` rows, seeded the same way, mixes rows across
    row groups. With ``workers == 1`` the order is a pure function of (files, seed, epoch, rank,
    world_size). With more workers the row groups *arrive* in a timing-dependent order; the buffer
    sorts the row groups it holds by content fingerprint before shuffling, so the epoch is still
    exactly reproducible whenever the whole shard fits in the buffer (shard rows < shuffle_buffer +
    batch_size); beyond that the order can vary between runs (the multiset of rows never does).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pyarrow.parquet as pq
import torch

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


def _read_metadata(path: str) -> pq.FileMetaData:
    from pyarrow import fs

    filesystem, fs_path = fs.FileSystem.from_uri(_as_url(path))
    return pq.read_metadata(fs_path, filesystem=filesystem)


def count_rows(files: Sequence[str]) -> int:
    """Rows in these Parquet files, from their footers (no data is read)."""
    return sum(_read_metadata(str(f)).num_rows for f in files)


def count_row_groups(files: Sequence[str]) -> int:
    """Row groups in these Parquet files, the unit Petastorm shards and shuffles by."""
    return sum(_read_metadata(str(f)).num_row_groups for f in files)


def epoch_seed(seed: int, epoch: int) -> int:
    """A 32-bit seed for (seed, epoch); every rank derives the same one."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


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


class PetastormFeed:
    """Batches of one split for one rank, read with Petastorm; call ``batches(epoch)`` once per epoch."""

    def __init__(self, *, files: Sequence[str], columns: Sequence[str], batch_size: int, shuffle: bool,
                 seed: int = 0, rank: int = 0, world_size: int = 1, workers: int = 2,
                 shuffle_buffer: int = 20_000) -> None:
        if not files:
            raise ValueError("PetastormFeed: no files given (an empty split?)")
        if not columns:
            raise ValueError("PetastormFeed: no columns given")
        if batch_size < 1 or workers < 1 or shuffle_buffer < 1:
            raise ValueError(f"PetastormFeed: batch_size ({batch_size}), workers ({workers}) and shuffle_buffer "
                             f"({shuffle_buffer}) must be positive")
        if not 0 <= rank < world_size:
            raise ValueError(f"PetastormFeed: rank {rank} is outside [0, world_size={world_size})")
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
        metadata = [_read_metadata(f) for f in self.files]
        available = metadata[0].schema.to_arrow_schema().names
        missing = [c for c in self.columns if c not in available]
        if missing:
            raise ValueError(f"PetastormFeed: column(s) {missing} not in {self.files[0]} "
                             f"(it has: {', '.join(available)})")
        row_groups = sum(m.num_row_groups for m in metadata)
        if self.world_size > row_groups:
            raise ValueError(f"PetastormFeed: world_size {self.world_size} exceeds the {row_groups} Parquet row "
                             f"group(s) of these {len(self.files)} file(s): some rank would get no data. Write the "
                             "split with more (smaller) row groups or files, or train with fewer processes.")
        self.num_rows = sum(m.num_rows for m in metadata)
        self.num_row_groups = row_groups

    def _row_groups(self, epoch: int) -> Iterator[dict[str, np.ndarray]]:
        """This rank's row groups as dicts of numpy arrays, in Petastorm's order."""
        from petastorm import make_batch_reader

        # Petastorm reorders the shard's row groups whenever a seed is given, even unshuffled: no seed then.
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
            # Arrival order depends on thread timing: order the new row groups by content first.
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
        return (f"PetastormFeed({len(self.files)} files, {self.num_rows} rows, {self.num_row_groups} row groups, "
                f"batch_size={self.batch_size}, shuffle={self.shuffle}, rank={self.rank}/{self.world_size}, "
                f"workers={self.workers})")
