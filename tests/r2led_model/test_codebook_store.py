"""The codebook store: atomic files, a content check on every read, a truncated file refused or
rewritten, and `current.json` moved only by a complete publish."""

from __future__ import annotations

import os

import numpy as np
import pytest

from r2led_model.sids import codebook_store
from r2led_model.sids.codebook import Codebook
from r2led_model.sids.codebook_store import CodebookVersionError


def codebook(seed: int) -> Codebook:
    rng = np.random.default_rng(seed)
    return Codebook(encoder_weights=((rng.normal(size=(4, 6)), rng.normal(size=4)),),
                    codebooks=rng.normal(size=(2, 3, 4)), input_dim=6)


def test_publish_writes_the_file_and_the_pointer_and_leaves_no_temporary_file(tmp_path):
    first = codebook(0)
    path = codebook_store.publish(first, tmp_path, mlflow_run_id="run-1")
    assert path.name == f"{first.version}.npz"
    assert codebook_store.current_version(tmp_path) == first.version
    assert codebook_store.load(tmp_path).version == first.version
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([path.name, "current.json"])


def test_a_crash_while_saving_leaves_the_old_codebook_current_and_no_file_under_the_new_name(tmp_path, monkeypatch):
    first, second = codebook(0), codebook(1)
    codebook_store.publish(first, tmp_path)

    def crash(*args, **kwargs):
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk gone"):
        codebook_store.publish(second, tmp_path)
    monkeypatch.undo()
    assert not (tmp_path / f"{second.version}.npz").exists()
    assert codebook_store.current_version(tmp_path) == first.version
    assert codebook_store.load(tmp_path).version == first.version


def test_a_truncated_or_altered_file_is_refused_on_read_and_rewritten_by_publish(tmp_path):
    first = codebook(0)
    path = codebook_store.publish(first, tmp_path)
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(CodebookVersionError, match="not a readable codebook"):
        codebook_store.load(tmp_path, first.version)
    codebook_store.publish(first, tmp_path)  # the same codebook again: the damaged file is replaced
    assert codebook_store.load(tmp_path, first.version).version == first.version

    other = codebook(1)
    other.save(path)  # another codebook's content under the first one's name
    with pytest.raises(CodebookVersionError, match=f"holds codebook {other.version}, not {first.version}"):
        codebook_store.load(tmp_path, first.version)


def test_a_missing_version_or_store_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no current codebook"):
        codebook_store.load(tmp_path)
    codebook_store.publish(codebook(0), tmp_path)
    with pytest.raises(FileNotFoundError, match="codebook cb-000000000000 not found"):
        codebook_store.load(tmp_path, "cb-000000000000")
