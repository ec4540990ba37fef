"""`r2led pipeline --config my.yaml` end to end on a user's own Delta tables, as docs/your-own-data.md
shows it: a tiny table of impressions (clicks and non-clicks) and a tiny items table, each made
in two lines, and one YAML file over the packaged base.yaml (no env layer).

40 users × 30 impressions each: impression t of user u is at hour 40·t + u after 2024-01-01, so the
time split puts impressions 0..23 of every user in train, 24..26 in valid and 27..29 in test. The
even impressions show an item of the user's own family (u mod 6) and are the clicks.
"""

from __future__ import annotations

import logging

import pytest
from pyspark.sql import functions as F

from jobs.orchestration import pipeline
from jobs.runtime.tables import TableStore
from r2led_model.config import load_config
from r2led_model.tracking.mlflow_model import model_version
from tests.helpers import IVY_DIR

USERS, PER_USER, ITEMS = 40, 30, range(100, 160)
START_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z
HOUR_MS = 3_600_000

MY_YAML = """\
workspace:
  root: {root}/workspace
source:
  kind: table
  table:
    path: {root}/data/impressions
    format: delta
    columns:
      user: uid
      item: iid
      timestamp: ts_ms
      timestamp_unit: milliseconds
      label: clicked
    labels: column
    items:
      path: {root}/data/items
      item: iid
      category: category_path
      text: "{{title}}. Category: {{category_path}}"
sequences:
  split:
    mode: time
    valid_from: "2024-02-10"
    test_from: "2024-02-15"
ingest:
  max_reject_share: 0.01
# A toy table: small and quick.
spark:
  shuffle_partitions: 2
codebook:
  codebook_size: 8
  epochs: 5
collab:
  rank: 8
model:
  embedding_dim: 8
  mlp_dims: [16]
training:
  epochs: 1
  batch_size: 128
  reader_workers: 1
registry:
  min_first_metric: 0.0
"""


def impression(u: int, t: int) -> tuple[int, int, int, int]:
    family = u % 6 if t % 2 == 0 else (u + 3) % 6
    return u, 100 + 6 * ((u + 5 * t) % 10) + family, START_MS + (40 * t + u) * HOUR_MS, int(t % 2 == 0)


BAD_ROWS = [  # (uid, iid, ts_ms, clicked) → the reason each is rejected with
    ((None, 101, START_MS, 1), "missing_user_id"),
    ((7, 101, None, 0), "missing_timestamp"),
    ((7, 101, START_MS + HOUR_MS, 2), "bad_label"),
]


@pytest.fixture(autouse=True)
def restore_logging():
    """The job calls logging.basicConfig(force=True) on stderr; put the root logger back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_pipeline_with_own_config_runs_end_to_end_on_own_delta_tables(spark, tmp_path):
    rows = [impression(u, t) for u in range(USERS) for t in range(PER_USER)] + [row for row, _ in BAD_ROWS]
    spark.createDataFrame(rows, "uid long, iid long, ts_ms long, clicked int").write.format("delta").save(
        str(tmp_path / "data" / "impressions"))
    items = [(i, f"item {i} of family {(i - 100) % 6}", f"Shop > Family {(i - 100) % 6}") for i in ITEMS]
    spark.createDataFrame(items, "iid long, title string, category_path string").write.format("delta").save(
        str(tmp_path / "data" / "items"))
    own = tmp_path / "my.yaml"
    own.write_text(MY_YAML.format(root=tmp_path), encoding="utf-8")

    assert pipeline.main(["--config", str(own), "--set", f"spark.ivy_dir={IVY_DIR}"]) == 0

    config = load_config(config_file=own, overrides=[f"spark.ivy_dir={IVY_DIR}"])
    assert config.env == "base" and config.tables.root == f"{tmp_path}/workspace/tables"
    store = TableStore(spark, config.tables)
    assert store.read("events").count() == USERS * PER_USER
    rejected = {r["reason"]: r["count"] for r in store.read("events_rejected").groupBy("reason").count().collect()}
    assert rejected == {reason: 1 for _, reason in BAD_ROWS}
    assert store.read("items").count() == len(ITEMS)
    # Real impressions carry their labels: no sampled negatives, half the samples are clicks.
    samples = store.read("samples")
    assert samples.count() == USERS * PER_USER
    assert samples.where(F.col("label") == 1).count() == USERS * PER_USER // 2
    by_split = {r["split"]: r["count"] for r in samples.groupBy("split").count().collect()}
    assert by_split == {"train": USERS * 24, "valid": USERS * 3, "test": USERS * 3}
    assert store.read("training_examples").count() > 0
    registered = model_version(config.mlflow, config.registry.model_name, alias="champion")
    assert registered is not None and registered.version == "1"
    assert store.read("predictions").count() > 0
