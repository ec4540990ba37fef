"""The one entry point every pipeline stage has: `derive(spark, config, *, scope) -> StageOutcome`.

The full run (`r2led pipeline`, `make run`) calls each stage's `derive` with `FULL_RUN`: every row from
all the data, every model trained. The nightly run (`r2led pipeline --date D`) calls the same function
with the day's scope: only what is new since the stage's tables were last written, or every row again
where `rebuild` says so, and the facts the stage needs from the ledger (the codebook the earlier stages
used, tonight's challenger). The stage table (`jobs.orchestration.stages`) names each stage's module; a
stage's own command (`r2led <stage>`) keeps its typed flags in the module's `run`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping


@dataclass(frozen=True, kw_only=True)
class Scope:
    """Which rows a stage derives, and what it is told by the run around it."""

    day: str | None = None  # the dated run's day; None: the full run over all the data
    rebuild: bool = False  # a dated run derives every row again (its config changed, --rebuild-from)
    retrain: bool = False  # a dated run refits the codebook and the collaborative vectors (--retrain)
    catch_up: bool = False  # ingest reads every day up to `day` (no earlier day was ingested, or a rebuild)
    codebook_version: str | None = None  # the codebook the run's stages use, as the ledger recorded it
    challenger: Mapping[str, object] = field(default_factory=dict)  # promote: the train stage's outcome tonight

    @property
    def full_run(self) -> bool:
        return self.day is None


FULL_RUN = Scope()


@dataclass
class StageOutcome:
    """What a stage did: rows read and written (each stage says which rows count) and the details the
    ledger records and the run's summary shows."""

    rows_in: int
    rows_out: int
    detail: dict[str, object] = field(default_factory=dict)
