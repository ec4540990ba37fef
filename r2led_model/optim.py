"""The optimizer every model trains with: Adam with decoupled weight decay, lazy per row on embedding tables.

Parameters fall into four groups (`parameter_groups`), whatever the model:

  item       the rows of one item each: ID table and per-item bias (a module's ``item_parameters()``)
             own learning rate (training.item_learning_rate), no decay, updated per row
  embedding  every other ``nn.Embedding`` table (category, SID levels, recency, ...)
             base learning rate, no decay, updated per row
  dense      parameters named ``weight`` with two or more dims outside embedding tables (Linear layers)
             base learning rate, decoupled weight decay (training.weight_decay)
  other      biases, PReLU slopes and other tables held as bare parameters: base learning rate, no decay

Per row ("lazy") means: a row whose gradient is exactly zero in a step (its item, category or code was
not in the batch) keeps its weights, moments and step count, so Adam's momentum does not keep moving
rows the batch never saw, and decay never shrinks a row that has not been used. The gradients stay dense
(no sparse embeddings), so DistributedDataParallel's all-reduce works unchanged with gloo and NCCL: a row
touched on any rank gets a nonzero averaged gradient and every rank takes the same step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch import Tensor, nn

GROUP_NAMES = ("item", "embedding", "dense", "other")


def item_parameters(module: nn.Module) -> Iterator[nn.Parameter]:
    """The parameters that every submodule with an ``item_parameters()`` method names (each once)."""
    seen: set[int] = set()
    for sub in module.modules():
        named = getattr(type(sub), "item_parameters", None)  # on the class: nn.Module's getattr raises otherwise
        if named is None:
            continue
        for param in named(sub):
            if id(param) not in seen:
                seen.add(id(param))
                yield param


def parameter_groups(module: nn.Module, *, learning_rate: float, item_learning_rate: float,
                     weight_decay: float) -> list[dict[str, Any]]:
    """The module's trainable parameters as RowwiseAdam groups (see the module docstring); empty groups left out.

    Each group carries its ``name`` and ``initial_lr``, so a reader of the optimizer (or of its state dict in a
    checkpoint) can tell the groups apart and how far plateau cuts have lowered the rate.
    """
    items = {id(p) for p in item_parameters(module)}
    groups: dict[str, list[nn.Parameter]] = {name: [] for name in GROUP_NAMES}
    seen: set[int] = set()
    for sub in module.modules():
        for name, param in sub.named_parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            if id(param) in items:
                groups["item"].append(param)
            elif isinstance(sub, nn.Embedding):
                groups["embedding"].append(param)
            elif name == "weight" and param.dim() >= 2:
                groups["dense"].append(param)
            else:
                groups["other"].append(param)
    settings = {
        "item": dict(lr=item_learning_rate, weight_decay=0.0, rowwise=True),
        "embedding": dict(lr=learning_rate, weight_decay=0.0, rowwise=True),
        "dense": dict(lr=learning_rate, weight_decay=weight_decay, rowwise=False),
        "other": dict(lr=learning_rate, weight_decay=0.0, rowwise=False),
    }
    return [{"params": params, "name": name, "initial_lr": settings[name]["lr"], **settings[name]}
            for name, params in groups.items() if params]


class RowwiseAdam(torch.optim.Optimizer):
    """Adam (Kingma & Ba 2015, Alg. 1) with decoupled weight decay (AdamW, Loshchilov & Hutter 2019), and lazy
    per-row updates in groups with ``rowwise=True``.

    Dense groups: the AdamW step on every parameter that has a gradient (a zero gradient still decays it).
    Rowwise groups: a row is a vector along the last dim (an embedding row, (..., d)); only rows with a
    nonzero gradient are updated, each with its own step count ``row_step`` (..., ) for bias correction, so
    a row seen for the first time after 1000 steps takes a full first Adam step, not a damped one.
    Parameters without a gradient (None) are skipped in both.
    """

    def __init__(self, params: Iterable[Any], *, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, rowwise: bool = False) -> None:
        if lr <= 0 or eps <= 0 or weight_decay < 0 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"RowwiseAdam: lr {lr}, eps {eps} > 0, weight_decay {weight_decay} >= 0, "
                             f"betas {betas} in [0, 1)")
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, rowwise=rowwise))

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            update = self._rows if group["rowwise"] else self._dense
            for param in group["params"]:
                if param.grad is not None:
                    update(param, param.grad, self.state[param], group)
        return loss

    @staticmethod
    def _dense(param: Tensor, grad: Tensor, state: dict[str, Any], group: dict[str, Any]) -> None:
        (beta1, beta2), lr, eps, decay = group["betas"], group["lr"], group["eps"], group["weight_decay"]
        if not state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(param)
            state["exp_avg_sq"] = torch.zeros_like(param)
        state["step"] += 1
        step, exp_avg, exp_avg_sq = state["step"], state["exp_avg"], state["exp_avg_sq"]
        exp_avg.lerp_(grad, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        if decay:
            param.mul_(1 - lr * decay)
        denom = (exp_avg_sq / (1 - beta2 ** step)).sqrt_().add_(eps)
        param.addcdiv_(exp_avg, denom, value=-lr / (1 - beta1 ** step))

    @staticmethod
    def _rows(param: Tensor, grad: Tensor, state: dict[str, Any], group: dict[str, Any]) -> None:
        (beta1, beta2), lr, eps, decay = group["betas"], group["lr"], group["eps"], group["weight_decay"]
        if not state:
            # Float counts: load_state_dict casts floating state to the parameter's dtype and device (exact to 2^24).
            state["row_step"] = torch.zeros(param.shape[:-1], dtype=param.dtype, device=param.device)  # (...,)
            state["exp_avg"] = torch.zeros_like(param)
            state["exp_avg_sq"] = torch.zeros_like(param)
        row_step, exp_avg, exp_avg_sq = state["row_step"], state["exp_avg"], state["exp_avg_sq"]
        touched = grad.ne(0).any(dim=-1, keepdim=True)  # (..., 1): the rows this step updates
        # torch.where, not arithmetic with a 0/1 mask: an untouched row keeps its exact bits.
        exp_avg.copy_(torch.where(touched, exp_avg * beta1 + grad * (1 - beta1), exp_avg))
        exp_avg_sq.copy_(torch.where(touched, exp_avg_sq * beta2 + grad * grad * (1 - beta2), exp_avg_sq))
        row_step.add_(touched.squeeze(-1).to(row_step.dtype))
        steps = row_step.clamp(min=1).unsqueeze(-1)  # (...,) → (..., 1); clamped: untouched rows may have 0 steps
        step_size = lr / (1 - beta1 ** steps)  # (..., 1)
        denom = (exp_avg_sq / (1 - beta2 ** steps)).sqrt_().add_(eps)
        change = step_size * exp_avg / denom
        if decay:
            change = change + lr * decay * param
        param.sub_(torch.where(touched, change, torch.zeros_like(change)))


def scale_learning_rates(optimizer: torch.optim.Optimizer, factor: float) -> None:
    """Multiply every group's learning rate by ``factor`` (a plateau cut)."""
    for group in optimizer.param_groups:
        group["lr"] *= factor


def learning_rate_scale(optimizer: torch.optim.Optimizer) -> float:
    """How far the cuts have scaled the learning rates: lr / initial_lr of the first group (the same in every one)."""
    group = optimizer.param_groups[0]
    return group["lr"] / group.get("initial_lr", group["lr"])
