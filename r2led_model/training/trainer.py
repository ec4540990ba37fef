"""The model-agnostic training loop: one optimizer and schedule for every model, early stopping, checkpoints, DDP.

What the loop needs from a model is a *task wrapper* (torchrec style: the model returns logits, the
task owns the loss): an ``nn.Module`` with

  task.loss(batch) -> () scalar tensor        (training objective, e.g. BCE with logits on batch["label"])
  task.predict_proba(batch) -> (B,) tensor    (click probabilities)
  task.model                                  (the wrapped model, whose forward gives (B,) logits)

Batches are dicts of tensors (``r2led_model.models.inputs``) that also carry ``label`` and ``user_id``
(GAUC groups by user). They come from callables, so the loop does not care whether they are read by
Petastorm (``r2led_model.training.feed``) or built in memory: ``train_batches(epoch)`` gives one epoch of this
process's training batches, ``valid_batches()`` this process's validation batches.

The training regime is the same for every model: ``RowwiseAdam`` (``r2led_model.training.optim``: the item rows at
their own learning rate, embedding rows updated lazily, decoupled decay of dense weights only), validation
``training.evals_per_epoch`` times per epoch, every learning rate cut by ``training.lr_plateau_factor`` at an
evaluation that does not beat the best validation AUC, and a stop after ``training.patience`` such
evaluations in a row; the best evaluation's weights are kept.

Distributed mode (``torch.distributed`` initialised, e.g. under Spark's TorchDistributor with gloo):
  * The loop wraps ``LossForward(task)`` in DistributedDataParallel. Its ``forward(batch)`` returns
    ``task.loss(batch)``, so every training step goes through DDP's forward (which prepares the
    gradient all-reduce) whatever the task's own ``forward`` does, and the task's parameters are the
    DDP module's parameters. DDP's constructor broadcasts rank 0's weights, so ranks start equal.
  * Shards may hold different numbers of batches (Petastorm shards by row group): the epoch runs
    inside DDP's ``join()``, which shadows the collectives of ranks that ran out of data. A rank that
    ran out stops stepping its optimizer, so after such an epoch the weights and optimizer state of a
    rank that took every step are broadcast to all (else Adam's moments would differ between ranks and
    the ranks would compute gradients at different weights in the next epoch).
  * Validation predictions of every rank are gathered (``all_gather_object``) and every rank computes
    the same metrics on the union, so all ranks take the same early-stopping decision, the same learning-rate
    cuts, and keep the same best weights. ``on_epoch``, logging and checkpoint files are rank 0's.
  * Validation runs at each epoch's end only: inside ``join()`` the ranks run out of batches at different
    steps, so there is no step at which all of them could stop to validate together.

Epochs are numbered from 0; a training step is one optimizer step, counted from the first epoch (under DDP,
those of the rank that took the most).
"""

from __future__ import annotations

import contextlib
import copy
import gc
import logging
import math
import os
import random
import re
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from r2led_model.compat import LEGACY_CHECKPOINT_GLOBALS
from r2led_model.config import TrainingConfig
from r2led_model.evaluation.metrics import evaluate
from r2led_model.training.optim import RowwiseAdam, learning_rate_scale, parameter_groups, scale_learning_rates

log = logging.getLogger(__name__)

Batch = Mapping[str, torch.Tensor]
EpochCallback = Callable[[int, dict[str, float]], None]

# Columns that identify a row but feed no model: left on the CPU.
ID_COLUMNS = ("user_id", "sample_id")
CHECKPOINT_PATTERN = re.compile(r"^epoch-(\d+)\.pt$")
# Off a terminal (a job's log), an enabled progress display logs a line at most this often, in seconds.
PROGRESS_LOG_SECONDS = 30.0
# Models written elsewhere may hold parameters that some batches leave unused (an optional module);
# DDP then needs to search the graph for them, which costs little on CTR-sized models.
DDP_FIND_UNUSED_PARAMETERS = True


@dataclass
class FitResult:
    """What ``fit`` did; ``history`` holds one dict per evaluation, resumed ones included (see ``fit``)."""

    best_epoch: int  # the epoch of the best evaluation
    best_metrics: dict[str, float]  # valid_auc, valid_gauc, valid_logloss, valid_n of the best evaluation
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    samples_seen: int = 0  # training samples over all ranks, this call only
    stopped_early: bool = False
    resumed_from: int | None = None  # the epoch of the checkpoint resumed from
    best_step: int = -1  # the training step of the best evaluation
    evaluations: int = 0  # evaluations run by this call


# --------------------------------------------------------------------------------------
# Seeds, devices, batches
# --------------------------------------------------------------------------------------


def set_seed(seed: int) -> None:
    """Seed python, numpy and torch, and ask torch for deterministic kernels.

    ``warn_only=True``: an op without a deterministic kernel warns instead of failing the run.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True


def _to_device(batch: Batch, device: torch.device) -> dict[str, torch.Tensor]:
    return {name: value if name in ID_COLUMNS else value.to(device, non_blocking=True)
            for name, value in batch.items()}


def _batch_size(batch: Batch) -> int:
    return int(batch["label"].shape[0])


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def _progress_style(mode: str) -> str | None:
    """How ``training.progress`` shows an epoch: "bar" (tqdm) on a terminal or with "always", "lines" (log
    lines) off a terminal with "auto", None with "never"."""
    if mode == "never":
        return None
    return "bar" if mode == "always" or sys.stderr.isatty() else "lines"


def _progress_clock() -> float:
    """Seconds, for the progress lines' pacing and rates."""
    return time.monotonic()


def _duration(seconds: float) -> str:
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


class _Progress:
    """One epoch's progress: a tqdm bar (style "bar", when tqdm is installed), else a log line at most every
    PROGRESS_LOG_SECONDS (style "lines"), or nothing (None).

    A line gives the batches and rows so far and the rows per second; when the epoch's length is known
    (``expected_batches``: the previous epoch's batch count) also the share of it done and the time left,
    e.g. ``epoch 3: 42% (1,260/3,000 batches), 322,560 rows, 5,376 rows/s, ETA 1m22s, loss 0.4521``.
    """

    def __init__(self, *, style: str | None, desc: str, expected_batches: int | None = None) -> None:
        self.desc, self.expected = desc, expected_batches or None
        self.batches, self.rows, self.bar = 0, 0, None
        self.lines = style is not None
        if style == "bar":
            try:
                from tqdm.auto import tqdm
            except ImportError:
                pass
            else:
                self.bar = tqdm(desc=desc, total=self.expected, unit="batch", leave=False, file=sys.stderr)
                self.lines = False
        self.started = self.last_line = _progress_clock() if self.lines else 0.0

    def update(self, loss: float, rows: int) -> None:
        self.batches += 1
        self.rows += rows
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
        elif self.lines:
            now = _progress_clock()
            if now - self.last_line >= PROGRESS_LOG_SECONDS:
                self.last_line = now
                log.info("%s", self._line(loss, elapsed=now - self.started))

    def _line(self, loss: float, *, elapsed: float) -> str:
        so_far = f"{self.rows:,} rows, {self.rows / elapsed:,.0f} rows/s"
        if self.expected and self.batches < self.expected:  # an epoch may run past the previous one's length
            left = elapsed / self.batches * (self.expected - self.batches)
            return (f"{self.desc}: {100 * self.batches / self.expected:.0f}% ({self.batches:,}/{self.expected:,} "
                    f"batches), {so_far}, ETA {_duration(left)}, loss {loss:.4f}")
        return f"{self.desc}: {self.batches:,} batches, {so_far}, loss {loss:.4f}"

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class LossForward(nn.Module):
    """Makes ``task.loss`` the forward pass, so that DDP's forward is what every training step runs."""

    def __init__(self, task: nn.Module) -> None:
        super().__init__()
        self.task = task

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.task.loss(batch)


# --------------------------------------------------------------------------------------
# Prediction
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RowPredictions:
    """Predicted click probabilities with the rows they belong to, each (N,)."""

    sample_ids: np.ndarray | None  # None when the batches carry no sample_id
    users: np.ndarray
    labels: np.ndarray
    probs: np.ndarray


@torch.no_grad()
def predict_rows(task: nn.Module, batches: Iterable[Batch], device: str | torch.device = "cpu") -> RowPredictions:
    """``task.predict_proba`` over the batches in eval mode, with each row's sample id, user and label.

    The task's train/eval mode is restored afterwards.
    """
    device = torch.device(device)
    was_training = task.training
    task.eval()
    ids, users, labels, probs = [], [], [], []
    try:
        for batch in batches:
            missing = [c for c in ("user_id", "label") if c not in batch]
            if missing:
                raise KeyError(f"predict: batch lacks {missing} (it has: {', '.join(batch)})")
            prob = task.predict_proba(_to_device(batch, device))  # (B,)
            if "sample_id" in batch:
                ids.append(batch["sample_id"].cpu().numpy().reshape(-1))
            users.append(batch["user_id"].cpu().numpy().reshape(-1))
            labels.append(batch["label"].cpu().numpy().reshape(-1))
            probs.append(prob.detach().float().cpu().numpy().reshape(-1))
    finally:
        task.train(was_training)
    if not probs:
        empty = np.zeros(0, np.float32)
        return RowPredictions(sample_ids=np.zeros(0, np.int64), users=np.zeros(0, np.int64), labels=empty,
                              probs=empty)
    return RowPredictions(sample_ids=np.concatenate(ids) if len(ids) == len(probs) else None,
                          users=np.concatenate(users), labels=np.concatenate(labels), probs=np.concatenate(probs))


def predict(task: nn.Module, batches: Iterable[Batch],
            device: str | torch.device = "cpu") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(user_ids, labels, probs), each (N,), of ``task.predict_proba`` over the batches (see predict_rows)."""
    rows = predict_rows(task, batches, device)
    return rows.users, rows.labels, rows.probs


def _gather_predictions(parts: tuple[np.ndarray, np.ndarray, np.ndarray]
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every rank's predictions, concatenated in rank order (identical on every rank)."""
    if not _distributed():
        return parts
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, parts)
    return tuple(np.concatenate([g[i] for g in gathered]) for i in range(3))  # type: ignore[return-value]


# --------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------


def checkpoint_path(checkpoint_dir: str | Path, epoch: int) -> Path:
    return Path(checkpoint_dir) / f"epoch-{epoch:04d}.pt"


def latest_checkpoint(checkpoint_dir: str | Path) -> Path | None:
    """The checkpoint of the highest epoch in the folder, or None."""
    folder = Path(checkpoint_dir)
    if not folder.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := CHECKPOINT_PATTERN.match(p.name))]
    return max(found)[1] if found else None


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A checkpoint as written by `fit`: tensors, the optimizer's state dict, and plain python values
    (ints, floats, strings, lists, tuples, dicts), read with `weights_only=True`, so loading one runs
    no code from the file."""
    with torch.serialization.safe_globals(LEGACY_CHECKPOINT_GLOBALS):  # checkpoints of earlier releases
        return torch.load(path, map_location="cpu", weights_only=True)


def _rng_state() -> dict[str, Any]:
    """The python, numpy and torch RNG states as values `torch.load(weights_only=True)` accepts."""
    name, key, pos, has_gauss, gauss = np.random.get_state()
    numpy_state = {"bit_generator": str(name), "key": torch.from_numpy(key.astype(np.int64)),  # (624,)
                   "pos": int(pos), "has_gauss": int(has_gauss), "gauss": float(gauss)}
    return {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}


def _set_rng_state(state: Mapping[str, Any]) -> None:
    random.setstate(state["python"])
    numpy_state = state["numpy"]
    if isinstance(numpy_state, Mapping):
        numpy_state = (numpy_state["bit_generator"], numpy_state["key"].numpy().astype(np.uint32),
                       numpy_state["pos"], numpy_state["has_gauss"], numpy_state["gauss"])
    np.random.set_state(numpy_state)  # older checkpoints: numpy's own tuple
    torch.set_rng_state(state["torch"])


def _plain_metrics(metrics: Mapping[str, float]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items()}  # numpy scalars would need allowlisting to load


@dataclass(frozen=True)
class Checkpoint:
    """What ``fit`` writes after each epoch (``epoch-NNNN.pt``); the field names are the file's keys, in order.

    Values are tensors and plain python values only, so ``load_checkpoint`` reads them with ``weights_only=True``.
    The fields with defaults came with evaluations inside epochs: a file written before lacks them.
    """

    epoch: int
    model: dict[str, torch.Tensor]  # the task's state dict after this epoch
    optimizer: dict[str, Any]  # the optimizer's state dict (its groups' learning rates, cuts included)
    metrics: dict[str, float]  # this epoch's on_epoch metrics
    history: list[dict[str, float]]  # FitResult.history up to this epoch
    best_epoch: int
    best_value: float  # the best evaluation's validation AUC as early stopping ranks it (_selection_value)
    best_metrics: dict[str, float]
    bad_epochs: int  # evaluations in a row since the best that did not beat it (named when there was one per epoch)
    rng: dict[str, Any]  # python, numpy and torch RNG states (_rng_state)
    step: int = 0  # training steps after this epoch
    epoch_steps: int = 0  # this epoch's training steps: they space the next epoch's evaluations
    best_step: int = -1
    # The best evaluation's weights when it fell inside this epoch, before its end (else they are `model` of
    # the checkpoint of best_epoch): so a resumed run keeps the same best weights.
    best_model: dict[str, torch.Tensor] | None = None

    def to_state(self) -> dict[str, Any]:
        """The dict ``torch.save`` writes; shallow, so the tensors are not copied."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Checkpoint:
        """The checkpoint in a dict that ``load_checkpoint`` returned (older files too); other keys are ignored."""
        required = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]
        missing = [name for name in required if name not in state]
        if missing:
            raise ValueError(f"not a checkpoint of fit: it lacks {missing} (it has: {', '.join(state)})")
        return cls(**{f.name: state[f.name] for f in fields(cls) if f.name in state})


def _read_checkpoint(path: Path) -> Checkpoint:
    try:
        return Checkpoint.from_state(load_checkpoint(path))
    except ValueError as exc:
        raise ValueError(f"checkpoint {path}: {exc}") from exc


def _save_checkpoint(path: Path, checkpoint: Checkpoint) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    torch.save(checkpoint.to_state(), partial)
    os.replace(partial, path)  # a crash mid-write never leaves a truncated epoch-N.pt behind


# --------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------

BEST_METRICS = ("valid_auc", "valid_gauc", "valid_logloss", "valid_n")  # FitResult.best_metrics


def _selection_value(auc: float) -> float:
    """Validation AUC for early stopping; an undefined AUC (one class) never counts as better."""
    return auc if not math.isnan(auc) else -math.inf


@dataclass
class _EarlyStopping:
    """The best evaluation so far by validation AUC, its weights, and how many evaluations since have not beaten it."""

    best_epoch: int = -1
    best_step: int = -1
    best_value: float = -math.inf
    best_metrics: dict[str, float] = field(default_factory=dict)
    best_state: dict[str, torch.Tensor] | None = None  # None until an evaluation has run
    bad_evaluations: int = 0

    def update(self, *, epoch: int, step: int, metrics: Mapping[str, float], task: nn.Module) -> bool:
        """Rank an evaluation's validation AUC → whether it is the new best (the first one seen always is)."""
        value = _selection_value(metrics["valid_auc"])
        if self.best_state is None or value > self.best_value:
            self.best_epoch, self.best_step, self.best_value, self.bad_evaluations = epoch, step, value, 0
            self.best_metrics = {k: metrics[k] for k in BEST_METRICS}
            self.best_state = copy.deepcopy(task.state_dict())
            return True
        self.bad_evaluations += 1
        return False


@dataclass(frozen=True)
class _StartPoint:
    """Where ``fit`` starts: the first epoch to run, and what the epochs before it left behind."""

    epoch: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    stopping: _EarlyStopping = field(default_factory=_EarlyStopping)
    resumed_from: int | None = None
    step: int = 0  # training steps taken before `epoch`
    epoch_steps: int = 0  # steps of the epoch before `epoch` (0: none, or not recorded)


def _load_optimizer_state(optimizer: torch.optim.Optimizer, state: Mapping[str, Any], *, path: Path,
                          checkpoint_dir: str | Path) -> None:
    if not all("rowwise" in group for group in state["param_groups"]):
        # Written by the single Adam that trained every model before RowwiseAdam: its moments do not map onto
        # the parameter groups, so they start afresh (the weights, RNGs and early stopping still resume).
        log.warning("checkpoint %s: its optimizer state is the single Adam group of earlier versions; the "
                    "optimizer's moments start afresh", path)
        return
    try:
        optimizer.load_state_dict(state)
    except ValueError as exc:  # e.g. a checkpoint of the per-route attention layout, before it was batched
        raise ValueError(f"checkpoint {path}: its optimizer state does not fit this model's parameters ({exc}); "
                         f"it was written by another model layout: remove {checkpoint_dir} to train from the "
                         "first epoch") from exc


def _resume(task: nn.Module, optimizer: torch.optim.Optimizer, *, checkpoint_dir: str | Path | None,
            log_resume: bool) -> _StartPoint:
    """Load the latest checkpoint in ``checkpoint_dir`` into the task, optimizer and RNGs; without one, epoch 0."""
    path = latest_checkpoint(checkpoint_dir) if checkpoint_dir is not None else None
    if path is None:
        return _StartPoint()
    checkpoint = _read_checkpoint(path)
    task.load_state_dict(checkpoint.model)
    _load_optimizer_state(optimizer, checkpoint.optimizer, path=path, checkpoint_dir=checkpoint_dir)
    _set_rng_state(checkpoint.rng)
    best = _read_checkpoint(checkpoint_path(checkpoint_dir, checkpoint.best_epoch))
    stopping = _EarlyStopping(best_epoch=checkpoint.best_epoch, best_step=checkpoint.best_step,
                              best_value=checkpoint.best_value, best_metrics=dict(checkpoint.best_metrics),
                              best_state=best.best_model if best.best_model is not None else best.model,
                              bad_evaluations=checkpoint.bad_epochs)
    if log_resume:
        log.info("resuming after epoch %d from %s (best epoch %d)", checkpoint.epoch, path, checkpoint.best_epoch)
    return _StartPoint(epoch=checkpoint.epoch + 1, history=list(checkpoint.history), stopping=stopping,
                       resumed_from=checkpoint.epoch, step=checkpoint.step, epoch_steps=checkpoint.epoch_steps)


def _wrap_for_ddp(step_module: nn.Module, *, device: torch.device) -> nn.Module:
    """``step_module`` in DistributedDataParallel when torch.distributed is initialised, else itself."""
    if not _distributed():
        return step_module
    ddp_device = [device] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(step_module, device_ids=ddp_device,
                                               find_unused_parameters=DDP_FIND_UNUSED_PARAMETERS)


def _sum_over_ranks(loss_sum: float, samples: int) -> tuple[float, int]:
    totals = torch.tensor([loss_sum, float(samples)], dtype=torch.float64)
    dist.all_reduce(totals)
    return float(totals[0]), int(totals[1])


def evaluation_steps(previous_epoch_steps: int, evals_per_epoch: int) -> frozenset[int]:
    """The steps of an epoch after which ``fit`` validates before the epoch's end: ``evals_per_epoch - 1``
    points spread evenly over the previous epoch's length (k·S // E), since a Petastorm epoch's batch count is
    not known before it ends. None in a first epoch (S = 0); fewer when S < E."""
    return frozenset(k * previous_epoch_steps // evals_per_epoch for k in range(1, evals_per_epoch)) - {0}


@dataclass
class _EpochStats:
    """An epoch's training so far: Σ loss × rows, rows and steps (this rank's, until summed over ranks), and
    the seconds spent in training steps (validation excluded)."""

    loss_sum: float = 0.0
    samples: int = 0
    steps: int = 0
    train_seconds: float = 0.0


@dataclass
class _Evaluator:
    """Validates, ranks the evaluation for early stopping and cuts the learning rates after one that is not
    the best; each evaluation is one ``history`` entry."""

    task: nn.Module
    optimizer: torch.optim.Optimizer
    valid_batches: Callable[[], Iterable[Batch]]
    device: torch.device
    config: TrainingConfig
    stopping: _EarlyStopping
    history: list[dict[str, float]]
    is_main: bool
    count: int = 0  # evaluations run by this fit call

    def __call__(self, *, epoch: int, step: int, stats: _EpochStats, epoch_started: float) -> dict[str, float]:
        """Validate after ``step`` → the history entry (also appended to ``history``)."""
        valid = evaluate(*_gather_predictions(predict(self.task, self.valid_batches(), self.device)))
        entry = {"epoch": float(epoch), "step": float(step),
                 "train_loss": stats.loss_sum / max(stats.samples, 1), "train_samples": float(stats.samples),
                 "valid_auc": valid["auc"], "valid_gauc": valid["gauc"], "valid_logloss": valid["logloss"],
                 "valid_n": float(valid["n"]), "epoch_seconds": time.perf_counter() - epoch_started,
                 "train_samples_per_s": stats.samples / stats.train_seconds if stats.train_seconds > 0 else 0.0}
        best = self.stopping.update(epoch=epoch, step=step, metrics=entry, task=self.task)
        if not best:
            scale_learning_rates(self.optimizer, self.config.lr_plateau_factor)
        entry["learning_rate"] = self.config.learning_rate * learning_rate_scale(self.optimizer)  # after the cut
        self.history.append(entry)
        self.count += 1
        if self.is_main:
            _log_evaluation(entry, best=best)
        return entry

    @property
    def exhausted(self) -> bool:
        """``config.patience`` evaluations in a row have not beaten the best one."""
        return self.stopping.bad_evaluations >= self.config.patience


def _log_evaluation(entry: Mapping[str, float], *, best: bool) -> None:
    log.info("epoch %d step %d: train loss %.4f, valid auc %.4f gauc %.4f logloss %.4f, lr %.3g "
             "(%.1f s, %.0f samples/s)%s", entry["epoch"], entry["step"], entry["train_loss"], entry["valid_auc"],
             entry["valid_gauc"], entry["valid_logloss"], entry["learning_rate"], entry["epoch_seconds"],
             entry["train_samples_per_s"], " *best*" if best else "")


def _run_epoch(step_module: nn.Module, task: nn.Module, optimizer: torch.optim.Optimizer, *, epoch: int,
               start_step: int, evaluate_after: frozenset[int], train_batches: Callable[[int], Iterable[Batch]],
               evaluator: _Evaluator, device: torch.device, progress: _Progress
               ) -> tuple[dict[str, float], _EpochStats, bool]:
    """Train one epoch, validating after the steps in ``evaluate_after`` and at its end → (the last
    evaluation's history entry, the epoch's training over all ranks, whether early stopping cut it short)."""
    epoch_started = time.perf_counter()
    entries: list[dict[str, float]] = []

    def evaluate_inside(stats: _EpochStats) -> bool:
        entries.append(evaluator(epoch=epoch, step=start_step + stats.steps, stats=stats,
                                 epoch_started=epoch_started))
        return evaluator.exhausted

    stats, cut_short = _train_epoch(step_module, optimizer, train_batches(epoch), device,
                                    progress=progress,
                                    evaluate_after=evaluate_after, evaluate=evaluate_inside)
    if _distributed():
        steps = _sync_after_uneven_epoch(task, optimizer, stats.steps)
        loss_sum, samples = _sum_over_ranks(stats.loss_sum, stats.samples)
        stats = replace(stats, loss_sum=loss_sum, samples=samples, steps=steps)
    if not cut_short:
        entries.append(evaluator(epoch=epoch, step=start_step + stats.steps, stats=stats,
                                 epoch_started=epoch_started))
    return entries[-1], stats, cut_short


def _save_epoch(checkpoint_dir: str | Path, *, epoch: int, task: nn.Module, optimizer: torch.optim.Optimizer,
                metrics: Mapping[str, float], history: list[dict[str, float]], stopping: _EarlyStopping,
                step: int, epoch_steps: int) -> None:
    """Write ``<checkpoint_dir>/epoch-NNNN.pt``: everything ``_resume`` needs to go on after this epoch."""
    best_inside = stopping.best_epoch == epoch and stopping.best_step != step  # not at the epoch's end
    checkpoint = Checkpoint(epoch=epoch, model=task.state_dict(), optimizer=optimizer.state_dict(),
                            metrics=_plain_metrics(metrics), history=[_plain_metrics(h) for h in history],
                            best_epoch=stopping.best_epoch, best_value=float(stopping.best_value),
                            best_metrics=_plain_metrics(stopping.best_metrics),
                            bad_epochs=stopping.bad_evaluations, rng=_rng_state(), step=step,
                            epoch_steps=epoch_steps, best_step=stopping.best_step,
                            best_model=stopping.best_state if best_inside else None)
    _save_checkpoint(checkpoint_path(checkpoint_dir, epoch), checkpoint)


def _end_epoch(epoch: int, metrics: dict[str, float], *, task: nn.Module, optimizer: torch.optim.Optimizer,
               history: list[dict[str, float]], stopping: _EarlyStopping, step: int, epoch_steps: int,
               checkpoint_dir: str | Path | None, on_epoch: EpochCallback | None, is_main: bool) -> None:
    """Rank 0 writes the epoch's checkpoint and calls ``on_epoch``; every rank waits for the checkpoint."""
    if is_main:
        if checkpoint_dir is not None:
            _save_epoch(checkpoint_dir, epoch=epoch, task=task, optimizer=optimizer, metrics=metrics,
                        history=history, stopping=stopping, step=step, epoch_steps=epoch_steps)
        if on_epoch is not None:
            on_epoch(epoch, dict(metrics))
    if _distributed() and checkpoint_dir is not None:
        dist.barrier()  # the checkpoint is complete before any rank goes on (or fails over to it)


def fit(task: nn.Module, *, train_batches: Callable[[int], Iterable[Batch]],
        valid_batches: Callable[[], Iterable[Batch]], config: TrainingConfig,
        on_epoch: EpochCallback | None = None, checkpoint_dir: str | Path | None = None,
        resume: bool = False) -> FitResult:
    """Train ``task`` for up to ``config.epochs`` epochs, stop early on validation AUC, keep the best weights.

    Evaluations: ``config.evals_per_epoch`` per epoch, the last at the epoch's end and the others after
    ``evaluation_steps(previous epoch's steps)``, so the first epoch (which has no length to go by) validates
    at its end only; under torch.distributed every epoch validates at its end only (see the module docstring).
    An evaluation that does not beat the best validation AUC so far multiplies every learning rate by
    ``config.lr_plateau_factor``; once ``config.patience`` evaluations in a row have not beaten it, training
    stops, mid-epoch too (that epoch then ends at the evaluation). The best evaluation's weights are loaded
    into ``task`` before returning.

    ``history`` (FitResult, checkpoints) holds one entry per evaluation: epoch, step (training steps since the
    first epoch), train_loss and train_samples of the epoch so far, valid_auc / gauc / logloss / n,
    epoch_seconds and train_samples_per_s so far, and learning_rate (the base rate after this evaluation's
    cut). After each epoch: ``on_epoch(epoch, metrics)`` on rank 0 with the epoch's last entry (without
    ``epoch``), and a checkpoint ``<checkpoint_dir>/epoch-NNNN.pt`` (weights, optimizer with its learning
    rates, history, early-stopping state, step counts, RNG states) when a folder is given. ``resume=True``
    continues after the latest checkpoint in ``checkpoint_dir`` (if any).

    The model's initial weights are the caller's: seed (``set_seed``) before building the model for
    reproducible runs. The task is moved to ``config.device``.
    """
    started = time.perf_counter()
    device = torch.device(config.device)
    is_main = not _distributed() or dist.get_rank() == 0
    set_seed(config.seed)
    task.to(device)
    optimizer = make_optimizer(task, config)
    start = _resume(task, optimizer, checkpoint_dir=checkpoint_dir, log_resume=is_main) if resume else _StartPoint()
    history, stopping = start.history, start.stopping
    step_module = _wrap_for_ddp(LossForward(task), device=device)  # after resume: DDP broadcasts rank 0's weights
    evaluator = _Evaluator(task=task, optimizer=optimizer, valid_batches=valid_batches, device=device,
                           config=config, stopping=stopping, history=history, is_main=is_main)

    samples_seen, step, epoch_steps = 0, start.step, start.epoch_steps
    progress_style = _progress_style(config.progress) if is_main else None
    stopped_early = evaluator.exhausted
    for epoch in range(start.epoch, config.epochs):
        if stopped_early:
            break
        inside = frozenset() if _distributed() else evaluation_steps(epoch_steps, config.evals_per_epoch)
        entry, stats, cut_short = _run_epoch(step_module, task, optimizer, epoch=epoch, start_step=step,
                                             evaluate_after=inside, train_batches=train_batches,
                                             evaluator=evaluator, device=device,
                                             progress=_Progress(style=progress_style, desc=f"epoch {epoch}",
                                                                expected_batches=epoch_steps))
        samples_seen += stats.samples
        step, epoch_steps = step + stats.steps, stats.steps
        stopped_early = cut_short or (evaluator.exhausted and epoch + 1 < config.epochs)
        _end_epoch(epoch, {k: v for k, v in entry.items() if k != "epoch"}, task=task, optimizer=optimizer,
                   history=history, stopping=stopping, step=step, epoch_steps=epoch_steps,
                   checkpoint_dir=checkpoint_dir, on_epoch=on_epoch, is_main=is_main)

    if isinstance(step_module, nn.parallel.DistributedDataParallel):
        # DDP's reducer sits in reference cycles (its autograd hooks), so only the cycle collector frees
        # it; run that now, while the process group and the interpreter are alive: freed at interpreter
        # exit, after destroy_process_group, its gloo work can abort the process (SIGABRT).
        del step_module
        gc.collect()
    if stopping.best_state is None:
        raise RuntimeError(f"fit: no epoch ran (start epoch {start.epoch}, config.epochs {config.epochs})")
    task.load_state_dict(stopping.best_state)
    if is_main:
        log.info("best evaluation: epoch %d step %d, valid auc %.4f%s", stopping.best_epoch, stopping.best_step,
                 stopping.best_metrics["valid_auc"], " (stopped early)" if stopped_early else "")
    return FitResult(best_epoch=stopping.best_epoch, best_metrics=stopping.best_metrics, history=history,
                     seconds=time.perf_counter() - started, samples_seen=samples_seen,
                     stopped_early=stopped_early, resumed_from=start.resumed_from, best_step=stopping.best_step,
                     evaluations=evaluator.count)


def make_optimizer(task: nn.Module, config: TrainingConfig) -> torch.optim.Optimizer:
    """The optimizer ``fit`` trains with: RowwiseAdam over the task's parameter groups (``r2led_model.training.optim``):
    item rows at ``config.item_learning_rate``, other parameters at ``config.learning_rate``, decoupled
    ``config.weight_decay`` on dense weights only."""
    return RowwiseAdam(parameter_groups(task, learning_rate=config.learning_rate,
                                        item_learning_rate=config.item_learning_rate,
                                        weight_decay=config.weight_decay), lr=config.learning_rate)


def train_step(step_module: nn.Module, optimizer: torch.optim.Optimizer, batch: Batch,
               device: torch.device) -> tuple[float, int]:
    """One training step of ``fit``: the batch to ``device``, zero grads, loss, backward, optimizer step.

    ``step_module`` is ``LossForward(task)`` (or its DDP wrapper) in train mode → (the batch's mean loss, rows).
    Reading the loss value waits for the device, so the step has finished when this returns.
    """
    batch = _to_device(batch, device)
    optimizer.zero_grad(set_to_none=True)
    loss = step_module(batch)  # () mean loss of the batch
    loss.backward()
    optimizer.step()
    return float(loss.detach()), _batch_size(batch)


def _train_epoch(step_module: nn.Module, optimizer: torch.optim.Optimizer, batches: Iterable[Batch],
                 device: torch.device, *, progress: _Progress, evaluate_after: frozenset[int] = frozenset(),
                 evaluate: Callable[[_EpochStats], bool] | None = None) -> tuple[_EpochStats, bool]:
    """One pass over this rank's batches → (this rank's training statistics, whether ``evaluate`` stopped it).

    After a step whose count is in ``evaluate_after``, when another batch follows (the epoch's end has its
    own evaluation), ``evaluate(stats so far)`` runs; it returns True to stop the epoch there.
    """
    step_module.train()
    stats = _EpochStats()
    stopped = False
    ddp = isinstance(step_module, nn.parallel.DistributedDataParallel)
    join = step_module.join() if ddp else contextlib.nullcontext()
    iterator = iter(batches)
    try:
        with join:
            clock = time.perf_counter()
            for batch in iterator:
                if evaluate is not None and stats.steps in evaluate_after:
                    stats.train_seconds += time.perf_counter() - clock
                    stopped = evaluate(stats)
                    step_module.train()
                    clock = time.perf_counter()
                    if stopped:
                        break
                loss_value, size = train_step(step_module, optimizer, batch, device)
                stats.loss_sum += loss_value * size
                stats.samples += size
                stats.steps += 1
                progress.update(loss_value, size)
            stats.train_seconds += time.perf_counter() - clock
    finally:
        progress.close()
        close = getattr(iterator, "close", None)
        if stopped and close is not None:
            close()  # a generator left mid-epoch (a Petastorm reader) releases its resources now
    return stats, stopped


def _sync_after_uneven_epoch(task: nn.Module, optimizer: torch.optim.Optimizer, steps: int) -> int:
    """After an epoch with uneven shards, make every rank's weights and optimizer state the same → the
    epoch's step count of the rank that took the most (whose state every rank now has).

    Under ``join()`` a rank that ran out of batches stops stepping its optimizer, so its Adam moments fall
    behind, and DDP only re-syncs the weights. Every rank that took the most steps applied the same
    averaged gradients at every step, so the lowest such rank's state is the common one.
    """
    counts: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(counts, steps)
    if len(set(counts)) == 1:
        return steps
    source = counts.index(max(counts))
    with torch.no_grad():
        for tensor in [*task.parameters(), *task.buffers()]:
            dist.broadcast(tensor.data, src=source)
    holder = [optimizer.state_dict() if dist.get_rank() == source else None]
    dist.broadcast_object_list(holder, src=source)
    if dist.get_rank() != source:
        optimizer.load_state_dict(holder[0])
    return max(counts)
