"""One training process and what it needs: the picklable job description, the Petastorm feed of a
split, the worker that fits the model (alone, or as one rank under Spark's TorchDistributor), and
evaluation on a split. `train`, `tune`, `promote` and the models benchmark all train through it.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np
import torch
from pyspark.sql import SparkSession

from jobs.training.training_data import TrainingData
from r2led_model.config import ModelConfig, TrainingConfig
from r2led_model.evaluation.metrics import evaluate
from r2led_model.models import CTRTask, build_model
from r2led_model.models.inputs import columns_for
from r2led_model.training.feed import Feed, build_feed, value_counts
from r2led_model.training.trainer import RowPredictions, fit, predict_rows, set_seed
from r2led_model.worlds.oracle import OracleTruth, oracle_metrics, with_ceiling

log = logging.getLogger(__name__)

ID_COLUMNS = ("sample_id", "user_id", "label")


@dataclass(frozen=True)
class TrainJob:
    """Everything a training process needs, as plain picklable values (it may run in another process)."""

    model: ModelConfig
    training: TrainingConfig
    data: TrainingData
    checkpoint_dir: str


@dataclass
class WorkerResult:
    state_dict: dict
    history: list[dict]
    best_epoch: int
    seconds: float
    samples_seen: int


def model_columns(job: TrainJob) -> list[str]:
    model = build_model(job.model.name, spec=job.data.spec, config=job.model)
    return columns_for(model.input_groups) + list(model.extra_input_columns) + list(ID_COLUMNS)


def make_feed(job: TrainJob, split: str, *, shuffle: bool, rank: int = 0, world_size: int = 1) -> Feed:
    """The split's feed of the model's columns: Petastorm or the pyarrow reader, as `training.feed` picks."""
    return build_feed(job.training, files=job.data.files[split], columns=model_columns(job), shuffle=shuffle,
                      rank=rank, world_size=world_size)


def training_impressions(job: TrainJob) -> torch.Tensor:
    """Each item's impressions in the train split (num_items,): how much its ID row can learn, as the warmth
    gate reads it. Only the train split's own rows, so validation and test never inform it."""
    return torch.from_numpy(value_counts(job.data.files["train"], "target_item", job.data.spec.num_items))


def new_task(job: TrainJob) -> CTRTask:
    """The job's model, freshly built (seeded by the caller), holding its item lookups (item_index) and what
    it reads of the train split before training: each item's impressions, for a warmth gate."""
    task = CTRTask(build_model(job.model.name, spec=job.data.spec, config=job.model))
    if job.data.item_category is not None:
        task.model.item_lookup.set(job.data.item_category, job.data.item_sid)
    if task.model.reads_item_impressions:
        task.model.set_item_impressions(training_impressions(job))
    return task


def train_worker(job: TrainJob, on_epoch=None) -> WorkerResult | None:
    """One training process: single-process, or one rank of a TorchDistributor run (env RANK/WORLD_SIZE).

    Returns rank 0's weights and history on every rank.
    """
    import torch.distributed as dist

    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    try:
        set_seed(job.training.seed)
        task = new_task(job)
        train_feed = make_feed(job, "train", shuffle=True, rank=rank, world_size=world_size)
        valid_feed = make_feed(job, "valid", shuffle=False, rank=rank, world_size=world_size)
        result = fit(task, train_batches=train_feed.batches, valid_batches=lambda: valid_feed.batches(0),
                     config=job.training, on_epoch=on_epoch, checkpoint_dir=job.checkpoint_dir or None)
        outcome = None
        if rank == 0:
            state = {k: v.detach().cpu().clone() for k, v in task.model.state_dict().items()}
            outcome = WorkerResult(state_dict=state, history=list(result.history), best_epoch=result.best_epoch,
                                   seconds=result.seconds, samples_seen=result.samples_seen)
        if world_size > 1:
            # Every rank returns rank 0's result: in local mode TorchDistributor keeps whichever
            # process writes its return value last, which need not be rank 0.
            shared = [outcome]
            dist.broadcast_object_list(shared, src=0)
            outcome = shared[0]
            # Every rank past its last collective before any tears its connections down: a rank whose
            # peer closed them while a send was still in flight dies in gloo (SIGABRT).
            dist.barrier()
        return outcome
    finally:
        if world_size > 1 and dist.is_initialized():
            dist.destroy_process_group()


def run_distributed(spark: SparkSession, job: TrainJob) -> WorkerResult:
    from pyspark.ml.torch.distributor import TorchDistributor

    master = spark.sparkContext.master
    distributor = TorchDistributor(num_processes=job.training.num_processes, local_mode=master.startswith("local"),
                                   use_gpu=job.training.device.startswith("cuda"))
    log.info("training under TorchDistributor: %d processes (%s)", job.training.num_processes,
             "local processes" if master.startswith("local") else "executor barrier tasks")
    try:
        result = distributor.run(train_worker, job)
    except Exception as exc:
        # A barrier task lost (an executor or worker gone) fails the whole attempt: nothing was registered.
        raise RuntimeError(f"training under TorchDistributor ({job.training.num_processes} processes on {master}) "
                           f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}. No model was "
                           "registered; once the cluster has the task slots again, re-run the same command "
                           "(a dated run resumes at train)") from exc
    if result is None:
        raise RuntimeError("TorchDistributor returned nothing from rank 0")
    return result


def evaluate_rows(job: TrainJob, task: CTRTask, split: str,
                  truth: OracleTruth | None = None) -> tuple[dict, RowPredictions]:
    """(metrics, the rows' predictions) on one split; with an oracle-scored world's `truth`, the metrics also
    hold the oracle's on the same rows and the model's share of its lift (`r2led_model.worlds.oracle`)."""
    rows = predict_rows(task, make_feed(job, split, shuffle=False).batches(0), job.training.device)
    metrics = evaluate(rows.users, rows.labels, rows.probs)
    if truth is not None and rows.sample_ids is not None:
        metrics = with_ceiling(metrics, oracle_metrics(truth, rows.sample_ids, rows.users, rows.labels))
    return metrics, rows


def evaluate_split(job: TrainJob, task: CTRTask, split: str,
                   truth: OracleTruth | None = None) -> tuple[dict, np.ndarray, np.ndarray]:
    """(metrics, labels, probs) on one split (`evaluate_rows`)."""
    metrics, rows = evaluate_rows(job, task, split, truth)
    return metrics, rows.labels, rows.probs
