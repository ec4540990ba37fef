"""A config as flat dotted keys, the subsets of it that shaped something, and the training fingerprint.

The nightly run compares each stage's subset with the one its ledger recorded (config drift); a
training run is reused when its fingerprint (the model and training keys) matches.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any, Mapping, Sequence

from r2led_model.config import Config

# Keys that say where something is, never what it is: moving a file changes no row.
IGNORED_NAMES = ("path", "paths", "reviews_paths", "metadata_paths", "store_dir")
TRAINING_SECTIONS = ("model", "training")
TRAINING_IGNORED = ("training.checkpoint_dir", "training.progress", "training.device", "training.num_processes",
                    "training.reader_workers")


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as dotted keys; lists stay values."""
    if isinstance(node, Mapping):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: list(node) if isinstance(node, tuple) else node}


def config_values(config: Config) -> dict[str, Any]:
    """Every key of `config` as a JSON-plain value."""
    return json.loads(json.dumps(flatten(dataclasses.asdict(config)), default=list))


def selected_keys(values: Mapping[str, Any], prefixes: Sequence[str], ignored: Sequence[str]) -> dict[str, Any]:
    """The keys under `prefixes`, less those under `ignored` and those that only say where something is."""
    def wanted(key: str) -> bool:
        if key.rsplit(".", 1)[-1] in IGNORED_NAMES or any(key == i or key.startswith(i + ".") for i in ignored):
            return False
        return any(key == p or key.startswith(p + ".") for p in prefixes)

    return {k: v for k, v in sorted(values.items()) if wanted(k)}


def training_fingerprint(config: Config) -> str:
    """A short hash of the model and training keys a trained model depends on."""
    values = selected_keys(config_values(config), TRAINING_SECTIONS, TRAINING_IGNORED)
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:16]
