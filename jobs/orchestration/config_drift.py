"""Config drift between nightly runs: which config keys shaped each stage's tables, and what changed.

Every stage the dated pipeline records in its ledger carries the values of the config keys that
shaped its rows: its own sections and those of every stage it reads from (`UPSTREAM`). A nightly
run compares the current config with what the last finished run of each stage recorded, before it
writes anything. A change that an incremental run would silently mix with the stored rows (another
`retrieval.k`, other routes, other windows) is refused unless the run rebuilds what it shaped:

- `--retrain` accepts changes to the codebook and collaborative sections (they are refitted, and
  everything built from them is rebuilt because its version changes);
- `--rebuild` accepts every change downstream of ingest: the stages whose keys changed run their
  full (non-incremental) path;
- a change to what ingest reads (the source, behaviours kept, date window) is always refused: the
  events stored under the old rules cannot be re-read from logs that may be gone; use a new
  workspace (`tables.root`) for the new source.

Some rules that shape rows are this release's code, not config: the scheme that computes sample
ids (`BUILT_WITH`). They are recorded and compared like config keys, so tables whose rows follow
an older release's rule are refused, never extended with rows of the new one (a new sample id
beside the old id of the same event); `--rebuild` rebuilds them under the new rule.

Paths and tuning knobs that do not change rows (batch sizes for inference, files per split) are
not part of any fingerprint. The model and training sections are not refused (each night trains a
new challenger); they key the reuse of a finished training run instead (`training_fingerprint`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from jobs.orchestration.ledger import LedgerRecord
from jobs.runtime.config_values import config_values, selected_keys
from r2led_model.config import Config
from r2led_model.sequences.sample_kernel import SAMPLE_ID_SCHEME

log = logging.getLogger(__name__)

# Stage → the config sections (dotted prefixes) that shape its own rows.
OWN_SECTIONS: dict[str, tuple[str, ...]] = {
    "ingest": ("source", "ingest.behaviors", "ingest.min_date", "ingest.max_date"),
    "sequences": ("sequences",),
    "embed-items": ("embedding",),
    "train-codebook": ("codebook",),
    "assign-sids": (),
    "collab-vectors": ("collab",),
    "retrieve": ("retrieval",),
    "build-training-set": ("training_set",),
}
# Stage → the stages whose tables it reads.
UPSTREAM: dict[str, tuple[str, ...]] = {
    "ingest": (),
    "sequences": ("ingest",),
    "embed-items": ("ingest",),
    "train-codebook": ("embed-items",),
    "assign-sids": ("train-codebook",),
    "collab-vectors": ("ingest",),
    "retrieve": ("sequences", "assign-sids", "collab-vectors"),
    "build-training-set": ("retrieve",),
}
# Keys that never change a stored row: where things live, how inference is batched, file layout,
# and the split, which rolls with every date and is moved in place (`resplit`).
IGNORED = ("sequences.split", "embedding.batch_size", "training_set.files_per_split")
ACCEPTED_BY: dict[str, str] = {"train-codebook": "retrain", "collab-vectors": "retrain", "ingest": "never"}
# Release rules recorded as keys of the section they belong to: key → (this release's value, the
# value tables built before the key was recorded follow, what changed).
BUILT_WITH: dict[str, tuple[Any, Any, str]] = {
    "sequences.sample_id_scheme": (
        SAMPLE_ID_SCHEME, 1,
        "sample ids now include the label, so stored samples would get a second row under a new id"),
}


class ConfigDriftError(ValueError):
    """The config changed since the tables were built, in a way this run may not absorb."""


@dataclass(frozen=True)
class Change:
    key: str
    before: Any
    now: Any
    owner: str  # the stage whose section holds the key

    def __str__(self) -> str:
        return f"{self.key}: {json.dumps(self.before)} -> {json.dumps(self.now)}"


def _source_prefixes(values: Mapping[str, Any]) -> tuple[str, ...]:
    """The source kind and its own options; the other kinds' sections are not read."""
    return ("source.kind", f"source.{values['source.kind']}")


def _sections_of(stage: str, values: Mapping[str, Any]) -> tuple[str, ...]:
    seen: list[str] = []
    pending = [stage]
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        seen.append(current)
        pending.extend(UPSTREAM[current])
    prefixes: list[str] = []
    for current in seen:
        own = OWN_SECTIONS[current]
        prefixes.extend(_source_prefixes(values) + own[1:] if current == "ingest" else own)
    return tuple(prefixes)


def stage_config(config: Config, stage: str) -> dict[str, Any]:
    """The values of every key that shaped `stage`'s rows (its own and its inputs'), by dotted key;
    this release's rules (`BUILT_WITH`) among them."""
    values = {**config_values(config), **{key: now for key, (now, _, _) in BUILT_WITH.items()}}
    return selected_keys(values, _sections_of(stage, values), IGNORED)


def owner_of(key: str) -> str:
    if key.startswith("source."):
        return "ingest"
    for stage, prefixes in OWN_SECTIONS.items():
        if any(key == p or key.startswith(p + ".") for p in prefixes):
            return stage
    raise KeyError(key)


def changes(recorded: Mapping[str, Any], current: Mapping[str, Any],
            defaults: Mapping[str, Any] | None = None) -> list[Change]:
    """The keys whose value differs between the record and now.

    A key the record lacks was added by a later release: the tables were built as with its default
    (a new key's default keeps the old behaviour), so it is a change only when set to something else.
    A key only the record has was removed by a later release and can no longer be compared.
    """
    defaults = defaults or {}
    out = []
    for key in sorted(current):
        now = current[key]
        before = recorded[key] if key in recorded else defaults.get(key)
        if before != now:
            out.append(Change(key, before, now, owner_of(key)))
    for key in sorted(set(recorded) - set(current)):
        log.info("config key %s was recorded but this release no longer has it: not compared", key)
    return out


def _built_unrecorded(ledger: Sequence[LedgerRecord], stage: str) -> bool:
    """A finished run of `stage` wrote its tables (it recorded their versions) but no config: a
    release from before configs were recorded built them. (A day recorded as skipped wrote nothing.)"""
    return any(r.stage_name == stage and r.done and "config" not in r.detail and r.table_versions for r in ledger)


def latest_detail(ledger: Sequence[LedgerRecord], stage: str, key: str) -> Any:
    """`detail[key]` of the latest finished run of `stage` (a backfill's included) that recorded it."""
    records = [r for r in ledger if r.stage_name == stage and r.done]
    for record in sorted(records, key=lambda r: r.run_date, reverse=True):
        recorded = record.detail.get(key)
        if recorded is not None:
            return recorded
    return None


def last_recorded(ledger: Sequence[LedgerRecord], stage: str) -> dict[str, Any] | None:
    """The config the latest finished run of `stage` recorded; None if none did."""
    return latest_detail(ledger, stage, "config")


def drift(ledger: Sequence[LedgerRecord], config: Config) -> dict[str, list[Change]]:
    """Stage → the changes since its last finished run (stages without a change or a record left out)."""
    out = {}
    # A record without a release rule's key was written under the rule before it.
    before_rules = {key: old for key, (_, old, _) in BUILT_WITH.items()}
    for stage in OWN_SECTIONS:
        current = stage_config(config, stage)
        recorded = last_recorded(ledger, stage)
        if recorded is None:
            if not _built_unrecorded(ledger, stage):
                continue
            # Built by a release that recorded no config: only this release's rules can be compared.
            recorded, current = {}, {k: v for k, v in current.items() if k in BUILT_WITH}
        found = changes(recorded, current, defaults={**stage_config(Config(), stage), **before_rules})
        if found:
            out[stage] = found
    return out


def stages_to_rebuild(ledger: Sequence[LedgerRecord], config: Config, *, retrain: bool,
                      rebuild: bool) -> frozenset[str]:
    """The data stages a run must rebuild in full for the config it has; raises ConfigDriftError,
    naming the changed keys and the flag that accepts them, when the run's flags do not allow it."""
    found = drift(ledger, config)
    if not found:
        return frozenset()
    keys = {c.key: c for stage_changes in found.values() for c in stage_changes}
    needed = {ACCEPTED_BY.get(c.owner, "rebuild") for c in keys.values()}
    listed = "; ".join(str(c) for c in keys.values())
    if "never" in needed:
        raise ConfigDriftError(
            f"config drift: {listed}. The source or the ingest rules changed since events were ingested; "
            "the stored events follow the old ones. Restore them, or start a new workspace (tables.root).")
    allowed = rebuild or (retrain and needed == {"retrain"})
    if not allowed:
        flag = "--rebuild" if "rebuild" in needed else "--retrain (or --rebuild)"
        releases = [f"{key} changed with this release: {BUILT_WITH[key][2]}" for key in keys if key in BUILT_WITH]
        if releases:
            raise ConfigDriftError(
                f"config drift: {listed}. {'; '.join(releases)}. The tables of {', '.join(found)} were built by an "
                "older release; `r2led pipeline --date D --rebuild` rebuilds them in full under this release's rules "
                "and the current config.")
        raise ConfigDriftError(
            f"config drift: {listed}. The tables of {', '.join(found)} were built with other values; rerun with "
            f"{flag} to rebuild them under the new config, or restore the old values.")
    return frozenset(found) if rebuild else frozenset()
