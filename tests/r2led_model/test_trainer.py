"""Training loop: learning, early stopping with best-weight restore, determinism, resume, 2-process DDP.

The model here is a tiny logistic model on an embedding of target_item, wrapped in a tiny task; the
real models live in r2led_model.models and are tested there.
"""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from r2led_model.config import TrainingConfig
from r2led_model.evaluation.metrics import evaluate
from r2led_model.training.trainer import (Checkpoint, _set_rng_state, checkpoint_path, fit, latest_checkpoint,
                                          load_checkpoint, predict, set_seed)
from tests.helpers import ClickTask, assert_same, batches_of, click_rows, labels_flipped_from, state_copy

NUM_ITEMS = 40
# One evaluation per epoch: these tests count evaluations as epochs (test_training_regime.py tests several).
CONFIG = TrainingConfig(epochs=6, batch_size=64, learning_rate=0.05, patience=2, seed=11, progress="never",
                        evals_per_epoch=1)


@pytest.fixture(autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


class ItemLogit(nn.Module):
    """logit = w · embedding(target_item) + b."""

    def __init__(self, num_items: int = NUM_ITEMS, dim: int = 4) -> None:
        super().__init__()
        self.embedding = nn.Embedding(num_items, dim)
        self.out = nn.Linear(dim, 1)

    def forward(self, batch):
        return self.out(self.embedding(batch["target_item"])).squeeze(-1)  # (B,)


def make_task(seed: int = 0) -> ClickTask:
    set_seed(seed)
    return ClickTask(ItemLogit())


def make_rows(n: int, seed: int) -> dict[str, torch.Tensor]:
    return click_rows(n, seed, NUM_ITEMS)


TRAIN = make_rows(1024, seed=1)
VALID = make_rows(512, seed=2)


def valid_flipped_from(evaluation: int, *, already_run: int = 0):
    return labels_flipped_from(VALID, evaluation, already_run=already_run)


def train_batches(epoch: int):
    return batches_of(TRAIN, CONFIG.batch_size, torch.randperm(1024, generator=torch.Generator().manual_seed(epoch)))


def valid_batches():
    return batches_of(VALID, 128)


def test_predict_returns_users_labels_probs_in_order():
    task = make_task()
    users, labels, probs = predict(task, valid_batches())
    assert users.shape == labels.shape == probs.shape == (512,)
    assert np.array_equal(users, VALID["user_id"].numpy()) and np.array_equal(labels, VALID["label"].numpy())
    assert ((probs > 0) & (probs < 1)).all()
    assert task.training  # mode restored


def test_fit_learns_a_learnable_problem():
    task = make_task()
    before = evaluate(*predict(task, valid_batches()))["auc"]
    calls = []
    result = fit(task, train_batches=train_batches, valid_batches=valid_batches, config=CONFIG,
                 on_epoch=lambda epoch, m: calls.append((epoch, m)))
    history = result.history
    assert history[-1]["train_loss"] < 0.8 * history[0]["train_loss"]
    assert result.best_metrics["valid_auc"] > 0.85 > before + 0.2
    assert history[-1]["valid_auc"] > history[0]["valid_auc"] or result.best_epoch == 0
    assert [e for e, _ in calls] == list(range(len(history)))
    assert {"train_loss", "valid_auc", "valid_gauc", "valid_logloss", "epoch_seconds",
            "train_samples_per_s"} <= set(calls[0][1])
    assert result.samples_seen == 1024 * len(history)
    # The restored weights are the best epoch's: predicting again reproduces its AUC.
    assert evaluate(*predict(task, valid_batches()))["auc"] == pytest.approx(result.best_metrics["valid_auc"])


def test_early_stopping_restores_the_best_epoch(tmp_path):
    task = make_task()
    config = replace(CONFIG, epochs=10, patience=2)
    result = fit(task, train_batches=train_batches, valid_batches=valid_flipped_from(2), config=config,
                 checkpoint_dir=tmp_path)
    aucs = [h["valid_auc"] for h in result.history]
    assert len(aucs) == 4 and result.stopped_early  # epochs 2 and 3 did not improve: stop after epoch 3
    assert result.best_epoch == int(np.argmax(aucs)) and result.best_epoch in (0, 1)
    assert_same(state_copy(task), load_checkpoint(checkpoint_path(tmp_path, result.best_epoch))["model"])
    last = load_checkpoint(checkpoint_path(tmp_path, 3))["model"]
    assert not torch.equal(state_copy(task)["model.out.weight"], last["model.out.weight"])
    assert latest_checkpoint(tmp_path) == checkpoint_path(tmp_path, 3)


def test_same_seed_gives_identical_parameters():
    runs = []
    for _ in range(2):
        task = make_task(seed=5)
        fit(task, train_batches=train_batches, valid_batches=valid_batches, config=replace(CONFIG, epochs=3))
        runs.append(state_copy(task))
    assert_same(*runs)
    other = make_task(seed=6)
    assert not torch.equal(other.state_dict()["model.embedding.weight"], runs[0]["model.embedding.weight"])


def as_legacy_checkpoint(path: Path) -> None:
    """Rewrite a checkpoint the way they were written before: numpy's RNG state as its own tuple (an ndarray)."""
    state = torch.load(path, weights_only=True)
    numpy_state = state["rng"]["numpy"]
    state["rng"]["numpy"] = (numpy_state["bit_generator"], numpy_state["key"].numpy().astype(np.uint32),
                             numpy_state["pos"], numpy_state["has_gauss"], numpy_state["gauss"])
    torch.save(state, path)
    assert torch.serialization.get_unsafe_globals_in_checkpoint(path)  # really needs the allowlist


@pytest.mark.parametrize("written", ["current", "legacy"])
def test_resume_continues_after_the_latest_checkpoint(tmp_path, written):
    config = replace(CONFIG, epochs=4, patience=10)
    straight = make_task(seed=3)
    full = fit(straight, train_batches=train_batches, valid_batches=valid_batches, config=config)

    first = make_task(seed=3)
    fit(first, train_batches=train_batches, valid_batches=valid_batches, config=replace(config, epochs=2),
        checkpoint_dir=tmp_path)
    assert latest_checkpoint(tmp_path) == checkpoint_path(tmp_path, 1)
    for epoch in (0, 1):
        path = checkpoint_path(tmp_path, epoch)
        # Tensors and plain values only: torch.load(weights_only=True) reads it with no allowlist.
        assert torch.serialization.get_unsafe_globals_in_checkpoint(path) == []
        assert torch.load(path, weights_only=True)["epoch"] == epoch
        if written == "legacy":
            as_legacy_checkpoint(path)

    seen = []
    resumed_task = make_task(seed=99)  # different initial weights: the checkpoint must replace them
    resumed = fit(resumed_task, train_batches=lambda e: (seen.append(e), train_batches(e))[1],
                  valid_batches=valid_batches, config=config, checkpoint_dir=tmp_path, resume=True)
    assert resumed.resumed_from == 1 and seen == [2, 3]
    assert [h["epoch"] for h in resumed.history] == [0, 1, 2, 3]
    assert resumed.best_epoch == full.best_epoch
    assert [h["valid_auc"] for h in resumed.history] == [h["valid_auc"] for h in full.history]
    assert_same(state_copy(resumed_task), state_copy(straight))


@pytest.mark.parametrize("written", ["current", "legacy"])
def test_checkpointed_rng_states_replay_the_same_draws(tmp_path, written):
    fit(make_task(), train_batches=train_batches, valid_batches=valid_batches, config=replace(CONFIG, epochs=1),
        checkpoint_dir=tmp_path)
    path = checkpoint_path(tmp_path, 0)
    if written == "legacy":
        as_legacy_checkpoint(path)
    rng = load_checkpoint(path)["rng"]

    def draws():
        return random.random(), float(np.random.random()), float(np.random.normal()), float(torch.rand(1))

    _set_rng_state(rng)
    first = draws()
    _set_rng_state(rng)
    assert draws() == first


def test_checkpoint_round_trips_the_early_stopping_state(tmp_path):
    config = replace(CONFIG, epochs=10, patience=3)
    straight = make_task(seed=4)
    full = fit(straight, train_batches=train_batches, valid_batches=valid_flipped_from(2), config=config,
               checkpoint_dir=tmp_path)
    assert len(full.history) == 5 and full.stopped_early  # epochs 2, 3 and 4 do not beat epoch 0 or 1

    state = load_checkpoint(checkpoint_path(tmp_path, 3))
    checkpoint = Checkpoint.from_state(state)
    assert (checkpoint.epoch, checkpoint.best_epoch, checkpoint.bad_epochs) == (3, full.best_epoch, 2)
    assert checkpoint.history == full.history[:4]
    assert list(checkpoint.to_state()) == list(state)  # the keys on disk, in their order

    # Resumed after epoch 3 with 2 of 3 bad epochs spent, one more bad epoch stops it, as in the straight run.
    last_path = checkpoint_path(tmp_path, 4)
    last = Checkpoint.from_state(load_checkpoint(last_path))
    last_path.unlink()
    resumed_task = make_task(seed=99)
    resumed = fit(resumed_task, train_batches=train_batches, valid_batches=valid_flipped_from(2, already_run=4),
                  config=config, checkpoint_dir=tmp_path, resume=True)
    assert resumed.resumed_from == 3 and resumed.stopped_early and resumed.best_epoch == full.best_epoch
    assert [h["valid_auc"] for h in resumed.history] == [h["valid_auc"] for h in full.history]
    assert_same(state_copy(resumed_task), state_copy(straight))  # the best epoch's weights, read from its checkpoint
    rewritten = Checkpoint.from_state(load_checkpoint(last_path))
    assert (rewritten.best_epoch, rewritten.bad_epochs, rewritten.metrics["train_loss"]) == (
        last.best_epoch, last.bad_epochs, last.metrics["train_loss"])
    assert_same(rewritten.model, last.model)


def test_without_resume_a_checkpoint_folder_is_not_read(tmp_path):
    fit(make_task(), train_batches=train_batches, valid_batches=valid_batches,
        config=replace(CONFIG, epochs=1), checkpoint_dir=tmp_path)
    result = fit(make_task(), train_batches=train_batches, valid_batches=valid_batches,
                 config=replace(CONFIG, epochs=1), checkpoint_dir=tmp_path)
    assert result.resumed_from is None and len(result.history) == 1


@pytest.mark.parametrize("mode, shown", [("always", True), ("never", False)])
def test_progress_bar_follows_config(capsys, mode, shown):
    fit(make_task(), train_batches=train_batches, valid_batches=valid_batches,
        config=replace(CONFIG, epochs=1, progress=mode))
    assert ("epoch 0" in capsys.readouterr().err) == shown


# --------------------------------------------------------------------------------------
# Two processes, gloo
# --------------------------------------------------------------------------------------


class WeightLoggingTask(ClickTask):
    """Records the weights every training step starts from (as one exact checksum)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__(model)
        self.step_weights: list[float] = []

    def loss(self, batch):
        self.step_weights.append(float(sum(p.detach().double().sum() for p in self.parameters())))
        return super().loss(batch)


def _ddp_worker(rank: int, world_size: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        set_seed(100 + rank)  # different initial weights: DDP must broadcast rank 0's
        task = WeightLoggingTask(ItemLogit())
        # Uneven shards: rank 0 holds 640 training rows (10 batches), rank 1 holds 384 (6 batches).
        cut = 640
        shard = {k: (v[:cut] if rank == 0 else v[cut:]) for k, v in TRAIN.items()}
        n = len(shard["label"])
        valid_shard = {k: v[rank::world_size] for k, v in VALID.items()}
        calls = []
        result = fit(task,
                     train_batches=lambda e: batches_of(shard, 64,
                                                        torch.randperm(n, generator=torch.Generator().manual_seed(e))),
                     valid_batches=lambda: batches_of(valid_shard, 100),
                     # Four evaluations per epoch asked for: under DDP each epoch validates at its end only.
                     config=replace(CONFIG, epochs=3, patience=3, evals_per_epoch=4),
                     on_epoch=lambda epoch, m: calls.append(epoch))
        torch.save({"params": state_copy(task), "best_epoch": result.best_epoch, "history": result.history,
                    "calls": calls, "samples_seen": result.samples_seen, "step_weights": task.step_weights}, Path(out_dir) / f"rank{rank}.pt")
        dist.barrier()  # as train_worker does: no rank tears its connections down while another still sends
    finally:
        dist.destroy_process_group()


def test_two_process_ddp_ends_with_identical_weights(tmp_path):
    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1)]
    assert_same(ranks[0]["params"], ranks[1]["params"])
    assert ranks[0]["best_epoch"] == ranks[1]["best_epoch"]
    assert ranks[0]["history"][-1]["valid_auc"] == ranks[1]["history"][-1]["valid_auc"]
    assert all(h["valid_n"] == 512 for h in ranks[0]["history"])  # metrics over both ranks' predictions
    assert [h["step"] for h in ranks[0]["history"]] == [10, 20, 30]  # one evaluation per epoch, steps of rank 0
    assert ranks[0]["samples_seen"] == 3 * 1024
    assert ranks[0]["calls"] == [0, 1, 2] and ranks[1]["calls"] == []  # on_epoch on rank 0 only
    assert ranks[0]["history"][-1]["valid_auc"] > 0.85
    # Every step both ranks take starts from the same weights, in later epochs too: after an uneven epoch
    # the rank with fewer batches gets the optimizer state of the other (else its Adam moments lag).
    steps0, steps1 = ranks[0]["step_weights"], ranks[1]["step_weights"]
    assert len(steps0) == 3 * 10 and len(steps1) == 3 * 6
    for epoch in range(3):
        assert steps0[epoch * 10:epoch * 10 + 6] == steps1[epoch * 6:epoch * 6 + 6], epoch
