"""The pipeline's stages, in order, in one table: the full run (`jobs.orchestration.pipeline`), the nightly run
(`jobs.orchestration.nightly`), the scale benchmark and the test fixtures all read it.

A stage is its job module's `derive(spark, config, *, scope)` (`jobs.runtime.stage_protocol`), which the
full run and the nightly run both call; its command (`r2led <stage>`) is the module's `run(spark, config)`.
Both are imported when first called, so that reading the table loads no job (`r2led --help` stays instant).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

from jobs.runtime.stage_protocol import StageOutcome


@dataclass(frozen=True)
class Stage:
    name: str  # as the CLI, the ledger and --until name it
    module: str  # the job module whose `derive(spark, config, *, scope)` is the stage
    writes: tuple[str, ...] = ()  # the tables it writes (their versions are recorded in the ledger)
    reads: tuple[str, ...] = ()  # the tables whose rows count as its rows in (benchmarks)
    produces: tuple[str, ...] = ()  # the tables whose rows count as its rows out (benchmarks)

    @property
    def derive(self) -> Callable[..., StageOutcome]:
        """The stage: `derive(spark, config, *, scope) -> StageOutcome`."""
        return importlib.import_module(self.module).derive

    @property
    def run(self) -> Callable[..., object]:
        """The stage's command over all the data, `run(spark, config)`."""
        return importlib.import_module(self.module).run


STAGES: tuple[Stage, ...] = (
    Stage("ingest", "jobs.ingest.ingest", writes=("events_rejected", "items", "events"), produces=("events",)),
    Stage("sequences", "jobs.sequences.sequences", writes=("user_sequences", "samples"), reads=("events",),
          produces=("samples",)),
    Stage("embed-items", "jobs.sids.embed_items", writes=("items_rejected", "item_embeddings"), reads=("items",),
          produces=("item_embeddings",)),
    Stage("train-codebook", "jobs.sids.train_codebook", reads=("item_embeddings",)),
    Stage("assign-sids", "jobs.sids.assign_sids", writes=("item_sids",), reads=("item_embeddings",),
          produces=("item_sids",)),
    Stage("collab-vectors", "jobs.retrieval.collab_vectors", writes=("item_collab_vectors",), reads=("events",),
          produces=("item_collab_vectors",)),
    Stage("retrieve", "jobs.retrieval.retrieve", writes=("route_candidates",), reads=("samples",),
          produces=("route_candidates",)),
    Stage("build-training-set", "jobs.training.build_training_set", writes=("item_index", "training_examples"),
          reads=("route_candidates",), produces=("training_examples",)),
    Stage("train", "jobs.training.train"),
    Stage("promote", "jobs.registry.promote"),
    Stage("score", "jobs.registry.score", writes=("predictions",)),
)
STAGE_NAMES = tuple(stage.name for stage in STAGES)
# The stages that only derive tables from the data, up to the training set: what a missed day and a
# backfill run, and what the benchmarks build; train, promote and score follow.
DATA_STAGES = STAGE_NAMES[:STAGE_NAMES.index("build-training-set") + 1]
MODEL_STAGES = STAGE_NAMES[len(DATA_STAGES):]


def stage(name: str) -> Stage:
    """The stage called `name`; an unknown name is a ValueError that lists the stages."""
    for candidate in STAGES:
        if candidate.name == name:
            return candidate
    raise ValueError(f"unknown stage {name!r}; stages are {', '.join(STAGE_NAMES)}")


def stages(names: tuple[str, ...]) -> tuple[Stage, ...]:
    """The stages of `names`, in pipeline order."""
    return tuple(s for s in STAGES if s.name in names)
