"""The training regime every model shares: lazy per-row Adam on embedding tables, the item rows' own learning
rate, decoupled decay of dense weights only, a small item-ID init, the per-item bias, evaluations inside an
epoch and learning-rate cuts on a plateau (with resume replaying all of it)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from torch import nn

from r2led_model.config import ModelConfig, TrainingConfig
from r2led_model.models import CTRTask, FeatureSpec, build_model
from r2led_model.models.inputs import random_batch
from r2led_model.models.layers import ITEM_INIT_STD
from r2led_model.tracking.bundle import DataVersions, ModelBundle
from r2led_model.training.optim import RowwiseAdam
from r2led_model.training.trainer import (Checkpoint, LossForward, checkpoint_path, evaluation_steps, fit,
                                          load_checkpoint, make_optimizer, set_seed, train_step)
from tests.helpers import ClickTask, assert_same, batches_of, click_rows, labels_flipped_from, state_copy

SPEC = FeatureSpec(num_items=200, num_categories=6, sid_levels=2, sid_vocab=10, routes=("sid1", "collab"),
                   route_k=(3, 3), short_window=4, long_history=8, recency_buckets=4)
MODEL = ModelConfig(name="din", embedding_dim=8, attention_heads=2, mlp_dims=(16,), dropout=0.0)


@pytest.fixture(autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def din(seed: int = 0, spec: FeatureSpec = SPEC) -> nn.Module:
    torch.manual_seed(seed)
    return build_model("din", spec=spec, config=MODEL)


# --------------------------------------------------------------------------------------
# The optimizer
# --------------------------------------------------------------------------------------


def test_a_row_absent_from_the_batch_keeps_its_weights_and_optimizer_state():
    torch.manual_seed(0)
    table = nn.Embedding(6, 3)
    optimizer = RowwiseAdam([{"params": [table.weight], "rowwise": True}], lr=0.1)
    initial = table.weight.detach().clone()

    def step(rows: list[int]) -> None:
        optimizer.zero_grad()
        table(torch.tensor(rows)).sum().backward()  # gradient 1 on every element of the rows looked up
        optimizer.step()

    step([1, 2])
    weight = table.weight.detach().clone()
    state = {k: v.clone() for k, v in optimizer.state[table.weight].items()}
    step([1])
    after = optimizer.state[table.weight]
    assert torch.equal(table.weight[2], weight[2])  # absent: weights, moments and step count unchanged
    for name in ("exp_avg", "exp_avg_sq", "row_step"):
        assert torch.equal(after[name][2], state[name][2]), name
    assert not torch.equal(table.weight[1], weight[1]) and after["row_step"].tolist() == [0, 2, 1, 0, 0, 0]
    assert torch.equal(table.weight[3:], initial[3:])  # never looked up: as initialised
    # Row 3 is first seen after other rows took steps: its own step count gives it Adam's full first step (lr).
    step([3])
    assert torch.allclose(table.weight[3], initial[3] - 0.1, atol=1e-6)


def test_item_rows_train_at_their_own_learning_rate():
    task = CTRTask(din())
    model = task.model
    config = TrainingConfig(learning_rate=1e-3, item_learning_rate=1e-2, weight_decay=0.01)
    optimizer = make_optimizer(task, config)
    groups = {g["name"]: g for g in optimizer.param_groups}
    ids = {name: {id(p) for p in g["params"]} for name, g in groups.items()}
    assert ids["item"] == {id(model.embedding.item.weight), id(model.item_bias.weight)}
    assert id(model.embedding.category.weight) in ids["embedding"]
    assert id(model.head.mlp[0].weight) in ids["dense"] and id(model.head.mlp[0].bias) in ids["other"]
    assert sorted(len(i) for i in ids.values()) == sorted(len(g["params"]) for g in groups.values())
    assert sum(len(i) for i in ids.values()) == len(list(task.parameters()))  # each parameter in one group
    assert {n: (g["lr"], g["weight_decay"], g["rowwise"]) for n, g in groups.items()} == {
        "item": (1e-2, 0.0, True), "embedding": (1e-3, 0.0, True), "dense": (1e-3, 0.01, False),
        "other": (1e-3, 0.0, False)}

    batch = random_batch(SPEC, 16, torch.Generator().manual_seed(3))
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    train_step(LossForward(task).train(), optimizer, batch, torch.device("cpu"))
    for name, lr in (("embedding.item.weight", 1e-2), ("item_bias.weight", 1e-2), ("embedding.category.weight", 1e-3)):
        param = model.get_parameter(name)
        moved = (param.detach() - before[name]).abs()
        strong = param.grad.abs() > 1e-6  # Adam's first step is lr·|g|/(|g| + eps) ≈ lr
        assert strong.sum() > 0 and torch.allclose(moved[strong], torch.full_like(moved[strong], lr), rtol=1e-2), name
        untouched = ~param.grad.ne(0).any(dim=-1)  # rows of items / categories not in the batch
        assert untouched.sum() > 0 and torch.equal(moved[untouched], torch.zeros_like(moved[untouched])), name


def test_decoupled_decay_shrinks_dense_weights_only():
    torch.manual_seed(0)
    module = nn.ModuleDict({"table": nn.Embedding(5, 3), "layer": nn.Linear(3, 2)})
    optimizer = make_optimizer(module, TrainingConfig(learning_rate=0.01, weight_decay=0.1))
    before = {name: p.detach().clone() for name, p in module.named_parameters()}
    for param in module.parameters():
        param.grad = torch.zeros_like(param)  # a zero gradient: only decay can move anything
    optimizer.step()
    assert torch.allclose(module["layer"].weight, before["layer.weight"] * (1 - 0.01 * 0.1), rtol=0, atol=1e-9)
    assert not torch.equal(module["layer"].weight, before["layer.weight"])
    assert torch.equal(module["layer"].bias, before["layer.bias"])
    assert torch.equal(module["table"].weight, before["table.weight"])  # an unused row is never shrunk


# --------------------------------------------------------------------------------------
# Item ID init and the per-item bias
# --------------------------------------------------------------------------------------


def test_the_item_id_table_starts_at_a_hundredth_and_other_tables_keep_their_scale():
    model = din(spec=replace(SPEC, num_items=5000, num_categories=300))
    assert ITEM_INIT_STD == 0.01
    assert model.embedding.item.weight[1:].std().item() == pytest.approx(0.01, rel=0.05)
    assert model.embedding.category.weight[1:].std().item() == pytest.approx(0.1, rel=0.1)
    assert torch.equal(model.embedding.item.weight[0], torch.zeros(8))  # padding row


def test_the_item_bias_starts_at_zero_and_an_old_state_dict_without_it_loads_to_the_same_logits():
    old = din(seed=0)
    assert torch.equal(old.item_bias.weight, torch.zeros(SPEC.num_items, 1))
    state = {k: v for k, v in old.state_dict().items() if k != "item_bias.weight"}  # saved before the bias
    batch = random_batch(SPEC, 32, torch.Generator().manual_seed(5))
    expected = CTRTask(old).eval()(batch)

    versions = DataVersions(codebook_version="cb", collab_version="cv")
    task = ModelBundle(MODEL, SPEC, versions, state).build()  # a strict load_state_dict, as a registered model's
    assert torch.equal(task(batch), expected)
    assert torch.equal(task.model.item_bias.weight, torch.zeros(SPEC.num_items, 1))

    with torch.no_grad():
        old.item_bias.weight[7] = 2.0  # a trained bias, saved with its key, loads as saved
    fresh = din(seed=1)
    fresh.load_state_dict(old.state_dict())
    assert fresh.item_bias.weight[7].item() == 2.0


# --------------------------------------------------------------------------------------
# Evaluations inside an epoch, plateau cuts, resume
# --------------------------------------------------------------------------------------

NUM_ITEMS = 40
BASE = TrainingConfig(epochs=3, batch_size=64, learning_rate=0.05, item_learning_rate=0.1, patience=100, seed=11,
                      progress="never", evals_per_epoch=4, lr_plateau_factor=0.5)
STEPS_PER_EPOCH = 16  # 1024 rows in batches of 64


class ItemLogit(nn.Module):
    """logit = w · embedding(target_item) + b, with the ID table as its item parameters."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(NUM_ITEMS, 4)
        self.out = nn.Linear(4, 1)

    def item_parameters(self) -> list[nn.Parameter]:
        return [self.embedding.weight]

    def forward(self, batch):
        return self.out(self.embedding(batch["target_item"])).squeeze(-1)  # (B, 1) → (B,)


def make_task(seed: int = 0) -> ClickTask:
    set_seed(seed)
    return ClickTask(ItemLogit())


def make_rows(n: int, seed: int) -> dict[str, torch.Tensor]:
    return click_rows(n, seed, NUM_ITEMS)


TRAIN, VALID = make_rows(1024, seed=1), make_rows(512, seed=2)


def valid_flipped_from(evaluation: int, *, already_run: int = 0):
    return labels_flipped_from(VALID, evaluation, already_run=already_run)


def train_batches(epoch: int):
    return batches_of(TRAIN, 64, torch.randperm(1024, generator=torch.Generator().manual_seed(epoch)))


def test_evaluation_points_spread_over_the_previous_epochs_length():
    assert evaluation_steps(16, 4) == {4, 8, 12}
    assert evaluation_steps(10, 4) == {2, 5, 7}
    assert evaluation_steps(2, 4) == {1}  # fewer steps than evaluations: never before the first step
    assert evaluation_steps(0, 4) == set() and evaluation_steps(16, 1) == set()


def test_four_evaluations_per_epoch_after_the_first():
    calls = []
    result = fit(make_task(), train_batches=train_batches, valid_batches=valid_flipped_from(10**9), config=BASE,
                 on_epoch=lambda epoch, metrics: calls.append((epoch, metrics)))
    assert [h["epoch"] for h in result.history] == [0] + [1] * 4 + [2] * 4
    assert [h["step"] for h in result.history] == [16, 20, 24, 28, 32, 36, 40, 44, 48]
    assert [h["train_samples"] for h in result.history[1:5]] == [256, 512, 768, 1024]  # the epoch so far
    assert result.evaluations == 9 and result.samples_seen == 3 * 1024
    # on_epoch: once per epoch, with the epoch's last evaluation.
    assert [e for e, _ in calls] == [0, 1, 2]
    assert [m["step"] for _, m in calls] == [16, 32, 48] and calls[2][1]["valid_auc"] == result.history[-1]["valid_auc"]
    best = max(range(9), key=lambda i: result.history[i]["valid_auc"])
    assert (result.best_step, result.best_epoch) == (result.history[best]["step"], result.history[best]["epoch"])


def test_a_non_improving_evaluation_halves_every_learning_rate(tmp_path):
    config = replace(BASE, epochs=4, evals_per_epoch=1)
    result = fit(make_task(), train_batches=train_batches, valid_batches=valid_flipped_from(2), config=config,
                 checkpoint_dir=tmp_path)
    aucs = [h["valid_auc"] for h in result.history]
    assert aucs[1] > aucs[0] > 0.5 > aucs[2]  # the precondition: evaluations 2 and 3 do not improve
    assert [h["learning_rate"] for h in result.history] == [0.05, 0.05, 0.025, 0.0125]
    groups = load_checkpoint(checkpoint_path(tmp_path, 3))["optimizer"]["param_groups"]
    assert {g["name"]: g["lr"] for g in groups} == {"item": 0.1 / 4, "dense": 0.05 / 4, "other": 0.05 / 4}


def test_patience_stops_training_inside_an_epoch(tmp_path):
    calls = []
    config = replace(BASE, epochs=4, patience=2)
    result = fit(make_task(), train_batches=train_batches, valid_batches=valid_flipped_from(4), config=config,
                 checkpoint_dir=tmp_path, on_epoch=lambda epoch, metrics: calls.append((epoch, metrics["step"])))
    # Evaluations 4 (epoch 1's end, step 32) and 5 (epoch 2's first, step 36) do not beat evaluation 3.
    assert [h["step"] for h in result.history] == [16, 20, 24, 28, 32, 36] and result.best_step == 28
    assert result.stopped_early and result.samples_seen == 2 * 1024 + 4 * 64
    assert calls == [(0, 16), (1, 32), (2, 36)]  # the cut-short epoch ends at its last evaluation
    last = Checkpoint.from_state(load_checkpoint(checkpoint_path(tmp_path, 2)))
    assert (last.step, last.epoch_steps, last.bad_epochs) == (36, 4, 2)


def test_resume_replays_evaluations_inside_epochs_learning_rate_cuts_and_a_mid_epoch_best(tmp_path):
    straight_task = make_task(seed=3)
    straight = fit(straight_task, train_batches=train_batches, valid_batches=valid_flipped_from(3), config=BASE)
    assert straight.best_step % STEPS_PER_EPOCH != 0  # the precondition: the best is inside an epoch

    fit(make_task(seed=3), train_batches=train_batches, valid_batches=valid_flipped_from(3),
        config=replace(BASE, epochs=2), checkpoint_dir=tmp_path)
    resumed_task = make_task(seed=99)
    resumed = fit(resumed_task, train_batches=train_batches, valid_batches=valid_flipped_from(3, already_run=5),
                  config=BASE, checkpoint_dir=tmp_path, resume=True)
    assert resumed.resumed_from == 1 and resumed.evaluations == 4
    for key in ("step", "valid_auc", "learning_rate"):
        assert [h[key] for h in resumed.history] == [h[key] for h in straight.history], key
    assert (resumed.best_epoch, resumed.best_step) == (straight.best_epoch, straight.best_step)
    assert_same(state_copy(resumed_task), state_copy(straight_task))  # the mid-epoch best, read from its epoch's checkpoint


def test_a_checkpoint_written_before_evaluations_inside_epochs_still_resumes(tmp_path):
    config = replace(BASE, evals_per_epoch=1)
    first = fit(make_task(seed=3), train_batches=train_batches, valid_batches=valid_flipped_from(10**9),
                config=replace(config, epochs=2), checkpoint_dir=tmp_path)
    adam = torch.optim.Adam(make_task().parameters()).state_dict()  # the single group of the earlier optimizer
    for epoch in (0, 1):
        path = checkpoint_path(tmp_path, epoch)
        old = {k: v for k, v in torch.load(path, weights_only=True).items()
               if k not in ("step", "epoch_steps", "best_step", "best_model")}
        torch.save({**old, "optimizer": adam}, path)
    resumed = fit(make_task(seed=99), train_batches=train_batches, valid_batches=valid_flipped_from(10**9),
                  config=config, checkpoint_dir=tmp_path, resume=True)
    assert resumed.resumed_from == 1 and [h["epoch"] for h in resumed.history] == [0, 1, 2]
    assert resumed.history[:2] == first.history
    assert resumed.history[2]["valid_auc"] > 0.85  # went on from the checkpoint's weights, not seed 99's
