"""Where trained codebooks live: `<store_dir>/<version>.npz` plus `current.json`, the pointer that
a hand-run assign-sids follows. Versions are content hashes, so publishing the same codebook twice
is a no-op and two different codebooks never share a name.

Every file is written atomically (a temporary file renamed into place) and checked on read: the
content hash of what is loaded must be the version asked for. Temporary files are written in a
private staging folder inside the store that is removed whatever happens (a full disk, an
interrupted write), so a failed publish leaves the store as it was. The dated pipeline does not follow
`current.json`: it records the version in its ledger and asks for that version by name, so a
codebook trained by hand between two nights never leaks into the next one.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from r2led_model.sids.codebook import Codebook

POINTER = "current.json"


class CodebookVersionError(RuntimeError):
    """A consumer met SIDs or a codebook from another version than the one it expects."""


def publish(codebook: Codebook, store_dir: str | Path, mlflow_run_id: str | None = None) -> Path:
    """Save the codebook under its version and point `current.json` at it (both atomic renames).

    A file already under that name is kept only if its content has that version (a file left by
    an older, non-atomic writer may be truncated). A write that fails leaves no temporary file, the
    previous codebook files and pointer untouched, and raises."""
    store = Path(store_dir)
    store.mkdir(parents=True, exist_ok=True)
    path = store / f"{codebook.version}.npz"
    pointer = {"version": codebook.version, "file": path.name, "mlflow_run_id": mlflow_run_id}
    with _staging(store) as staging:
        if not path.exists() or not _holds(path, codebook.version):
            os.replace(codebook.save(staging / path.name), path)
        _write_synced(staging / POINTER, json.dumps(pointer, indent=2).encode())
        os.replace(staging / POINTER, store / POINTER)
    return path


@contextmanager
def _staging(store: Path) -> Iterator[Path]:
    """A fresh folder in `store` (same file system: renames out of it are atomic), removed on exit."""
    folder = Path(tempfile.mkdtemp(prefix=".staging-", dir=store))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _read(path: Path) -> Codebook:
    try:
        return Codebook.load(path)
    except (zipfile.BadZipFile, EOFError, KeyError, OSError, ValueError) as exc:
        raise CodebookVersionError(f"{path} is not a readable codebook ({type(exc).__name__}: {exc}); "
                                   "retrain it (`r2led pipeline --date D --retrain` or `r2led train-codebook`)") from exc


def _holds(path: Path, version: str) -> bool:
    try:
        return _read(path).version == version
    except CodebookVersionError:
        return False


def load(store_dir: str | Path, version: str | None = None) -> Codebook:
    """The codebook `version`, or the current one; refuses a file whose content has another version."""
    store = Path(store_dir)
    if version is None:
        version = current_version(store)
        if version is None:
            raise FileNotFoundError(f"no current codebook in {store}; run `r2led train-codebook` first")
    path = store / f"{version}.npz"
    if not path.is_file():
        raise FileNotFoundError(f"codebook {version} not found in {store}")
    codebook = _read(path)
    if codebook.version != version:
        raise CodebookVersionError(f"{path} holds codebook {codebook.version}, not {version}: the file was altered")
    return codebook


def current_version(store_dir: str | Path) -> str | None:
    pointer_file = Path(store_dir) / POINTER
    return json.loads(pointer_file.read_text())["version"] if pointer_file.is_file() else None
