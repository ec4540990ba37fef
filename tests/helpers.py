"""Small helpers shared by tests (never imported by production code)."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from r2led_model.config import Config, load_config

REPO = Path(__file__).resolve().parents[1]
IVY_DIR = REPO / "workspace" / "ivy2"
CONSTRAINTS = REPO / "requirements" / "constraints.txt"


def config_in(root: Path, *overrides: str, env: str = "tiny") -> Config:
    """A Config whose workspace is `root` (Delta jars still come from the shared Ivy cache)."""
    return load_config(env, [f"workspace.root={root}", f"spark.ivy_dir={IVY_DIR}", *overrides])


def trained_world(spark, tables: Path, root: Path, *overrides: str) -> Path:
    """A copy of `tables` at `root`, then the full run's train, promote and score on it with
    `overrides`: the same workspace `generate` + `pipeline` would leave."""
    from jobs.orchestration.stages import MODEL_STAGES, stages

    shutil.copytree(tables, root)
    config = config_in(root, *overrides)
    for stage in stages(MODEL_STAGES):
        stage.run(spark, config)
    return root


# The dated pipeline's tests: a small model so each training is seconds.
NIGHTLY_FAST = ("training.epochs=1", "training.batch_size=256", "model.embedding_dim=8", "model.mlp_dims=[16]")
NIGHTLY_DAY1 = "2024-01-18"


def write_lines(path: Path, lines: list[str]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return str(path)


def rows(df, *order_by: str) -> list[tuple]:
    """A DataFrame's rows as sorted plain tuples, for exact comparisons."""
    return [tuple(r) for r in df.orderBy(*(order_by or df.columns)).collect()]


def table_snapshot(store, table: str) -> list[tuple]:
    """A stored table's rows as sorted plain tuples (arrays as tuples, columns by name), for
    comparing two workspaces' tables row for row."""
    df = store.read(table)
    return sorted(tuple(tuple(v) if isinstance(v, list) else v for v in r)
                  for r in df.select(*sorted(df.columns)).collect())


def pinned_versions() -> dict[str, str]:
    """requirements/constraints.txt as {lower-case name: pinned version}."""
    pins = {}
    for line in CONSTRAINTS.read_text(encoding="utf-8").splitlines():
        name, sep, version = line.strip().partition("==")
        if sep and not name.startswith("#"):
            pins[name.lower()] = version
    return pins


def expected_delta_package() -> str:
    """The Delta jar for the pinned pair: delta-spark_<spark major.minor>_2.13:<delta-spark version>."""
    pins = pinned_versions()
    spark_minor = ".".join(pins["pyspark"].split(".")[:2])
    return f"io.delta:delta-spark_{spark_minor}_2.13:{pins['delta-spark']}"


class ClickTask(nn.Module):
    """A task wrapper (loss, predict_proba) around a model that maps a batch to logits (B,), for trainer tests."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def loss(self, batch):
        return F.binary_cross_entropy_with_logits(self.model(batch), batch["label"])

    def predict_proba(self, batch):
        return torch.sigmoid(self.model(batch))


def click_rows(n: int, seed: int, num_items: int) -> dict[str, torch.Tensor]:
    """Learnable clicks: even items are clicked 90% of the time, odd items 10%."""
    g = torch.Generator().manual_seed(seed)
    items = torch.randint(1, num_items, (n,), generator=g)
    p = torch.where(items % 2 == 0, 0.9, 0.1)
    return {"target_item": items, "user_id": torch.randint(0, 20, (n,), generator=g),
            "label": (torch.rand(n, generator=g) < p).float()}


def batches_of(rows: dict[str, torch.Tensor], batch_size: int, order: torch.Tensor | None = None):
    """The rows as a list of batches of `batch_size`, in `order` (a permutation of the row indices) if given."""
    order = torch.arange(len(rows["label"])) if order is None else order
    return [{k: v[order[i:i + batch_size]] for k, v in rows.items()} for i in range(0, len(order), batch_size)]


def labels_flipped_from(rows: dict[str, torch.Tensor], evaluation: int, *, already_run: int = 0):
    """A valid_batches callable over `rows` whose labels are inverted from the given call on (0-based, counting
    ``already_run`` calls of an earlier run): validation AUC then collapses below every earlier one."""
    count = [already_run]

    def valid():
        flip = count[0] >= evaluation
        count[0] += 1
        return batches_of({**rows, "label": 1.0 - rows["label"]} if flip else rows, 128)

    return valid


def state_copy(module: nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of the module's state dict."""
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    """Two state dicts with the same keys and bit-identical tensors."""
    assert a.keys() == b.keys()
    for k, value in a.items():
        assert torch.equal(value, b[k]), k
