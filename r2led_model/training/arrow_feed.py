"""The training feed read with plain ``pyarrow.parquet``: for pyarrow >= 15, where Petastorm 0.12 fails.

``ArrowFeed`` is ``r2led_model.training.feed.Feed`` with its own reading of row groups and nothing else: the same
files, the same columns (only those asked for), the same row groups per rank, read in the order
Petastorm reads them (``shard_row_groups`` reproduces Petastorm's seeded sharding and ventilator
shuffle), then the same seeded shuffle buffer and batching. For one (files, seed, epoch, rank,
world_size, batch_size, shuffle_buffer, workers) it yields the same batches in the same order as
``PetastormFeed`` wherever Petastorm's own order is reproducible (workers == 1, or the whole shard fits
the buffer: see ``r2led_model.training.feed``); where it is not, the same rows per epoch and rank.

Its ``workers`` threads read ahead (at most workers + 1 row groups in flight) and are handed back in
``shard`` order, so its output never depends on thread timing.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from r2led_model.training.feed import Feed, _locate, _num_rows


def column_to_numpy(name: str, column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """One column of a row group as Petastorm's batch reader returns it: scalars (rows,), fixed-length lists
    (rows, n); integers with nulls become float64 with NaN (as pandas makes them)."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_list(array.type) or pa.types.is_large_list(array.type):
        if array.null_count:
            raise ValueError(f"column {name!r}: {array.null_count} null list(s); the feed needs a list in every row")
        lengths = np.unique(pc.list_value_length(array).to_numpy())
        if len(lengths) > 1:
            raise ValueError(f"column {name!r}: lists of lengths {lengths.tolist()} in one row group; the feed "
                             "needs fixed-length lists (pad or truncate them when the table is written)")
        width = int(lengths[0]) if len(lengths) else 0
        values = array.flatten().to_numpy(zero_copy_only=False)
        return values.reshape(len(array), width)  # (rows, n)
    return array.to_numpy(zero_copy_only=False)  # (rows,)


class ArrowFeed(Feed):
    """The feed read with ``pyarrow.parquet``, one row group at a time (any pyarrow)."""

    def _read(self, index: int) -> dict[str, np.ndarray]:
        file_index, row_group = self.row_group_locations[index]
        filesystem, path = _locate(self.files[file_index])
        with filesystem.open_input_file(path) as source:
            table = pq.ParquetFile(source).read_row_group(row_group, columns=self.columns)
        return {name: column_to_numpy(name, table.column(name)) for name in self.columns}

    def _row_groups(self, epoch: int) -> Iterator[dict[str, np.ndarray]]:
        order = iter(self.shard(epoch))
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="arrow-feed") as pool:
            ahead: deque[Future] = deque(pool.submit(self._read, i) for i in itertools.islice(order, self.workers + 1))
            try:
                while ahead:
                    chunk = ahead.popleft().result()
                    ahead.extend(pool.submit(self._read, i) for i in itertools.islice(order, 1))
                    if _num_rows(chunk):
                        yield chunk
            finally:  # the consumer stopped early (or a read failed): start nothing more
                for future in ahead:
                    future.cancel()
