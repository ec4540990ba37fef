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
from torch.optim.adamw import adamw

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
            if group["rowwise"]:
                for param in group["params"]:
                    if param.grad is not None:
                        self._rows(param, param.grad, self.state[param], group)
            else:
                self._dense_group(group)
        return loss

    def _dense_group(self, group: dict[str, Any]) -> None:
        """The AdamW step of every parameter of a dense group with a gradient, in one multi-tensor call
        (torch's own AdamW kernels: a small model's step is otherwise dominated by per-tensor overhead)."""
        params = [p for p in group["params"] if p.grad is not None]
        if not params:
            return
        for param in params:
            state = self.state[param]
            if not state:
                state["step"] = torch.zeros((), dtype=torch.float32)
                state["exp_avg"] = torch.zeros_like(param)
                state["exp_avg_sq"] = torch.zeros_like(param)
        states = [self.state[p] for p in params]
        beta1, beta2 = group["betas"]
        adamw(params, [p.grad for p in params], [st["exp_avg"] for st in states], [st["exp_avg_sq"] for st in states],
              [], [st["step"] for st in states], foreach=True, amsgrad=False, beta1=beta1, beta2=beta2,
              lr=group["lr"], weight_decay=group["weight_decay"], eps=group["eps"], maximize=False)

    @staticmethod
    def _rows(param: Tensor, grad: Tensor, state: dict[str, Any], group: dict[str, Any]) -> None:
        (beta1, beta2), lr, eps, decay = group["betas"], group["lr"], group["eps"], group["weight_decay"]
        if not state:
            # Float counts: load_state_dict casts floating state to the parameter's dtype and device (exact to 2^24).
            state["row_step"] = torch.zeros(param.shape[:-1], dtype=param.dtype, device=param.device)  # (...,)
            state["exp_avg"] = torch.zeros_like(param)
            state["exp_avg_sq"] = torch.zeros_like(param)
        width = param.shape[-1]
        # Only the touched rows are read and written (gathered by index): a step costs what the batch touched,
        # not the table's size. Untouched rows keep their exact bits.
        rows = grad.reshape(-1, width)  # (..., d) → (R, d)
        touched = rows.ne(0).any(dim=1).nonzero().squeeze(1)  # (T,) indices of the rows this step updates
        if touched.numel() == 0:
            return
        weights, m_all, v_all = param.view(-1, width), state["exp_avg"].view(-1, width), state["exp_avg_sq"].view(-1, width)
        steps_all = state["row_step"].view(-1)  # (R,)
        g = rows.index_select(0, touched)  # (T, d)
        m = m_all.index_select(0, touched).mul_(beta1).add_(g, alpha=1 - beta1)  # (T, d)
        v = v_all.index_select(0, touched).mul_(beta2).addcmul_(g, g, value=1 - beta2)  # (T, d)
        steps = steps_all.index_select(0, touched).add_(1)  # (T,)
        m_all.index_copy_(0, touched, m)
        v_all.index_copy_(0, touched, v)
        steps_all.index_copy_(0, touched, steps)
        steps = steps.unsqueeze(1)  # (T,) → (T, 1)
        denom = (v / (1 - beta2 ** steps)).sqrt_().add_(eps)  # (T, d)
        w = weights.index_select(0, touched)  # (T, d)
        change = (lr / (1 - beta1 ** steps)) * m / denom
        if decay:
            change = change + lr * decay * w
        weights.index_copy_(0, touched, w - change)


def scale_learning_rates(optimizer: torch.optim.Optimizer, factor: float) -> None:
    """Multiply every group's learning rate by ``factor`` (a plateau cut)."""
    for group in optimizer.param_groups:
        group["lr"] *= factor


def learning_rate_scale(optimizer: torch.optim.Optimizer) -> float:
    """How far the cuts have scaled the learning rates: lr / initial_lr of the first group (the same in every one)."""
    group = optimizer.param_groups[0]
    return group["lr"] / group.get("initial_lr", group["lr"])
