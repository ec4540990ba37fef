"""A disk that fills while a codebook is published: the write fails, and the store is left exactly as
it was (the previous codebook current and intact, no temporary file, nothing under the new name)."""

from __future__ import annotations

import builtins
import errno
import os

import numpy as np
import pytest

from r2led_model.sids import codebook as codebook_module
from r2led_model.sids import codebook_store
from r2led_model.sids.codebook import Codebook


def codebook(seed: int) -> Codebook:
    rng = np.random.default_rng(seed)
    return Codebook(encoder_weights=((rng.normal(size=(4, 6)), rng.normal(size=4)),),
                    codebooks=rng.normal(size=(2, 3, 4)), input_dim=6)


class FullDisk:
    """Files opened for writing take `room` bytes in all, then raise ENOSPC: the first write that
    does not fit lands partly, as on a real file system."""

    def __init__(self, room: int):
        self.room = room

    def open(self, file, mode="r", *args, **kwargs):
        handle = builtins.open(file, mode, *args, **kwargs)
        if "w" not in mode:
            return handle
        disk = self

        class Filling:
            def __enter__(self):
                return self

            def __exit__(self, *exc):
                handle.close()

            def write(self, data):
                fits = data[:disk.room]
                handle.write(fits)
                disk.room -= len(fits)
                if len(fits) < len(data):
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                return len(data)

            def __getattr__(self, name):
                return getattr(handle, name)

        return Filling()


def store_files(store) -> list[str]:
    return sorted(str(p.relative_to(store)) for p in store.rglob("*"))


def test_a_full_disk_while_the_codebook_is_written_leaves_no_temporary_file(tmp_path, monkeypatch):
    first, second = codebook(0), codebook(1)
    codebook_store.publish(first, tmp_path)
    before = store_files(tmp_path)
    assert before == sorted([f"{first.version}.npz", "current.json"])

    monkeypatch.setattr(codebook_module, "open", FullDisk(room=100).open, raising=False)
    with pytest.raises(OSError) as failed:
        codebook_store.publish(second, tmp_path)
    assert failed.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert store_files(tmp_path) == before  # no temporary file, nothing under the new name
    assert codebook_store.current_version(tmp_path) == first.version
    assert codebook_store.load(tmp_path).version == first.version


def test_a_full_disk_while_the_pointer_is_written_keeps_the_previous_one(tmp_path, monkeypatch):
    first, second = codebook(0), codebook(1)
    codebook_store.publish(first, tmp_path)
    pointer = (tmp_path / "current.json").read_text()

    monkeypatch.setattr(codebook_store, "open", FullDisk(room=10).open, raising=False)
    with pytest.raises(OSError, match="No space left"):
        codebook_store.publish(second, tmp_path)
    monkeypatch.undo()
    # The new codebook is whole under its name (it was renamed in before the pointer failed); the
    # pointer still names the first one, and no temporary file is left.
    assert store_files(tmp_path) == sorted([f"{first.version}.npz", f"{second.version}.npz", "current.json"])
    assert (tmp_path / "current.json").read_text() == pointer
    assert codebook_store.load(tmp_path).version == first.version
    assert codebook_store.load(tmp_path, second.version).version == second.version


def test_a_full_disk_while_a_codebook_is_saved_directly_leaves_no_temporary_file(tmp_path, monkeypatch):
    target = tmp_path / "models" / "cb.npz"
    codebook(0).save(target)
    saved = target.read_bytes()
    monkeypatch.setattr(codebook_module, "open", FullDisk(room=100).open, raising=False)
    with pytest.raises(OSError, match="No space left"):
        codebook(1).save(target)
    monkeypatch.undo()
    assert store_files(tmp_path / "models") == ["cb.npz"] and target.read_bytes() == saved
