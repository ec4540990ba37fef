"""Where trained codebooks live: `<store_dir>/<version>.npz` plus `current.json`, the pointer
that assign-sids (and later training and scoring) follow. Versions are content hashes, so
publishing the same codebook twice is a no-op and two different codebooks never share a name."""

from __future__ import annotations

import json
import os
from pathlib import Path

from r2led_model.codebook import Codebook

POINTER = "current.json"


class CodebookVersionError(RuntimeError):
    """A consumer met SIDs or a codebook from another version than the one it expects."""


def publish(codebook: Codebook, store_dir: str | Path, mlflow_run_id: str | None = None) -> Path:
    """Save the codebook under its version and point `current.json` at it (atomic rename)."""
    store = Path(store_dir)
    store.mkdir(parents=True, exist_ok=True)
    path = store / f"{codebook.version}.npz"
    if not path.exists():
        codebook.save(path)
    pointer = {"version": codebook.version, "file": path.name, "mlflow_run_id": mlflow_run_id}
    staging = store / f".{POINTER}.tmp"
    staging.write_text(json.dumps(pointer, indent=2))
    os.replace(staging, store / POINTER)
    return path


def load(store_dir: str | Path, version: str | None = None) -> Codebook:
    """The codebook `version`, or the current one; refuses a file whose content has another version."""
    store = Path(store_dir)
    if version is None:
        pointer_file = store / POINTER
        if not pointer_file.is_file():
            raise FileNotFoundError(f"no current codebook in {store}; run `r2led train-codebook` first")
        version = json.loads(pointer_file.read_text())["version"]
    path = store / f"{version}.npz"
    if not path.is_file():
        raise FileNotFoundError(f"codebook {version} not found in {store}")
    codebook = Codebook.load(path)
    if codebook.version != version:
        raise CodebookVersionError(f"{path} holds codebook {codebook.version}, not {version}: the file was altered")
    return codebook


def current_version(store_dir: str | Path) -> str | None:
    pointer_file = Path(store_dir) / POINTER
    return json.loads(pointer_file.read_text())["version"] if pointer_file.is_file() else None
