"""How fast each variant can train and score: its feed alone, its training step alone (rows/s), and its
inference latency per 1,000 samples on random inputs."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, replace
from typing import Sequence

import torch

from jobs.benchmarks.model_variants import Variant, variant_config
from jobs.training.worker import TrainJob, make_feed, model_columns, new_task
from r2led_model.config import Config
from r2led_model.models import CTRTask, build_model
from r2led_model.models.inputs import Batch, FeatureSpec, narrow, random_batch
from r2led_model.training.trainer import LossForward, make_optimizer, set_seed, train_step

# Training batches kept for the step rate: enough for a steady rate, few enough to hold (a batch of 256
# rows with a 300-wide `long` group is ~4 MB).
STEP_BATCHES = 50


@dataclass(frozen=True)
class FeedPass:
    """One epoch of a training feed read and thrown away: its rate, and its first batches for the step rate."""

    samples_per_s: float
    batches: tuple[Batch, ...]


def feed_pass(job: TrainJob, keep: int = STEP_BATCHES) -> FeedPass:
    """Rows/s of epoch 0 of the feed `train_worker` trains on (same files, columns, shuffle and reader)."""
    kept: list[Batch] = []
    samples = 0
    started = time.perf_counter()
    for batch in make_feed(job, "train", shuffle=True).batches(0):
        samples += int(batch["label"].shape[0])
        if len(kept) < keep:  # copies: a batch is a view of a whole shuffle block, which it would keep alive
            kept.append({name: value.clone() for name, value in batch.items()})
    return FeedPass(samples_per_s=samples / max(time.perf_counter() - started, 1e-9), batches=tuple(kept))


def step_samples_per_s(job: TrainJob, batches: Sequence[Batch]) -> float:
    """Rows/s of the trainer's own step (`train_step`: to device, loss, backward, Adam) over batches in
    memory, on the variant's model freshly seeded as `train_worker` builds it; one untimed step first
    (Adam's state and the allocator's first buffers are set up once per run, not per step)."""
    device = torch.device(job.training.device)
    set_seed(job.training.seed)
    task = new_task(job).to(device)
    step_module = LossForward(task).train()
    optimizer = make_optimizer(task, job.training)
    train_step(step_module, optimizer, batches[0], device)
    started = time.perf_counter()
    samples = sum(train_step(step_module, optimizer, batch, device)[1] for batch in batches)
    return samples / max(time.perf_counter() - started, 1e-9)


def training_rates(job: TrainJob, feeds: dict[tuple[str, ...], FeedPass]) -> dict:
    """feed_samples_per_s and step_samples_per_s of a variant; the feed pass is shared by every variant
    reading the same columns (`feeds`, one dataset's passes so far), since its cost is the columns'."""
    columns = tuple(model_columns(job))
    if columns not in feeds:
        feeds[columns] = feed_pass(job)
    passed = feeds[columns]
    return {"feed_samples_per_s": round(passed.samples_per_s, 1),
            "step_samples_per_s": round(step_samples_per_s(job, passed.batches), 1),
            "step_batches": len(passed.batches)}


def latency_ms_per_1000(spec: FeatureSpec, config: Config, variant: Variant, length: int, device: str,
                        repeats: int = 5) -> float:
    """Median wall time of scoring 1,000 random samples with history width `length` (weights untrained)."""
    spec = replace(spec, long_history=length)
    model_config = variant_config(config, variant, None).model
    torch.manual_seed(0)
    task = CTRTask(build_model(variant.model, spec=spec, config=model_config))
    # Narrow inputs, as training_examples holds them: the model's own item lookups are part of the time.
    generator = torch.Generator().manual_seed(0)
    category = torch.randint(2, max(spec.num_categories, 3), (spec.num_items,), generator=generator)
    sid = torch.randint(1, max(spec.sid_vocab, 2), (spec.num_items, spec.sid_levels), generator=generator)
    category[0], sid[0] = 0, 0
    task.model.item_lookup.set(category, sid)
    task = task.to(device).eval()
    batch = {k: v.to(device) for k, v in narrow(random_batch(spec, 1000, fill=1.0)).items()}
    times = []
    with torch.no_grad():
        task.predict_proba(batch)  # warm-up
        for _ in range(repeats):
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            started = time.perf_counter()
            task.predict_proba(batch)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            times.append(time.perf_counter() - started)
    return 1000.0 * statistics.median(times)


def catalogue_spec(config: Config, items: int = 20_000, categories: int = 240) -> FeatureSpec:
    """A feature spec from the config alone (routes, k, windows), for latency runs without tables."""
    routes = tuple(config.retrieval.routes)
    return FeatureSpec(num_items=items + 1, num_categories=categories + 2, sid_levels=config.codebook.levels,
                       sid_vocab=config.codebook.codebook_size + 1, routes=routes,
                       route_k=tuple(config.retrieval.k_per_route.get(r, config.retrieval.k) for r in routes),
                       short_window=config.training_set.short_window, long_history=config.training_set.long_history,
                       recency_buckets=config.training_set.recency_buckets)
