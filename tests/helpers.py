"""Small helpers shared by tests (never imported by production code)."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

CONSTRAINTS = Path(__file__).resolve().parents[1] / "requirements" / "constraints.txt"


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
