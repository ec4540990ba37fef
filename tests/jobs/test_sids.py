"""train-codebook and assign-sids on hand-built item vectors: Spark assigns exactly the torch
model's codes, dedup digits are deterministic and stable, re-runs change nothing, a new codebook
replaces the table, and consumers refuse SIDs of another codebook version."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from jobs.runtime.tables import TableStore
from jobs.sids import assign_sids, train_codebook
from jobs.sids.codebook_versions import require_codebook_version
from jobs.sids.train_codebook import EmbeddingInputError
from r2led_model.sids import codebook_store
from r2led_model.sids.codebook import dedup_digits
from r2led_model.sids.codebook_store import CodebookVersionError
from r2led_model.sids.rqvae import train_rqvae
from r2led_model.tracking.runs import run_data
from tests.helpers import config_in, rows

SMALL_CODEBOOK = ("codebook.levels=2", "codebook.codebook_size=8", "codebook.latent_dim=4",
                  "codebook.hidden_dims=[16]", "codebook.epochs=4", "codebook.batch_size=64")


def clustered_vectors(n: int, dim: int = 12, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(6, dim)) * 3
    return (centres[rng.integers(0, 6, n)] + rng.normal(scale=0.3, size=(n, dim))).astype(np.float32)


def write_embeddings(spark, store: TableStore, item_ids, vectors) -> None:
    data = [(int(i), [float(x) for x in v], "test", "test-1") for i, v in zip(item_ids, vectors)]
    df = spark.createDataFrame(data, "item_id BIGINT, vector ARRAY<FLOAT>, encoder STRING, encoder_version STRING")
    store.overwrite("item_embeddings", df)


@pytest.fixture(scope="module")
def trained(spark, tmp_path_factory):
    config = config_in(tmp_path_factory.mktemp("sids"), *SMALL_CODEBOOK)
    store = TableStore(spark, config.tables)
    item_ids = np.arange(1000, 1240)
    # Exact duplicates of item 1000's vector force a collision group to test the dedup digit.
    vectors = clustered_vectors(len(item_ids))
    vectors[[5, 17, 33]] = vectors[0]
    write_embeddings(spark, store, item_ids, vectors)
    result = train_codebook.run(spark, config)
    assign_sids.run(spark, config)
    return config, store, item_ids, vectors, result


def test_training_is_tracked_and_published(trained):
    config, _, _, _, result = trained
    assert codebook_store.current_version(config.codebook.store_dir) == result.version
    assert codebook_store.load(config.codebook.store_dir).version == result.version
    params, metrics, artifacts = run_data(config.mlflow, result.mlflow_run_id)
    assert params["codebook.levels"] == "2" and params["train_items"] == "240" and params["input_dim"] == "12"
    assert {"usage_l1", "usage_l2", "perplexity_l1", "collision_rate", "reconstruction_mse", "loss"} <= set(metrics)
    assert 0 < metrics["usage_l1"] <= 1 and 1 <= metrics["perplexity_l1"] <= 8
    assert f"codebook/{result.version}.npz" in artifacts and "config.yaml" in artifacts
    assert "history.json" in artifacts


def test_spark_codes_equal_the_torch_models_codes(spark, trained):
    config, store, item_ids, vectors, result = trained
    model, _ = train_rqvae(vectors, config.codebook)  # same data, same seed → the same model
    torch_codes = model.assign_codes(torch.from_numpy(vectors)).numpy()
    table = {r["item_id"]: (r["semantic_codes"], r["dedup_digit"], r["codes"], r["codebook_version"])
             for r in store.read("item_sids").collect()}
    assert len(table) == len(item_ids)
    assert all(table[int(i)][0] == list(torch_codes[k]) for k, i in enumerate(item_ids))
    assert {v[3] for v in table.values()} == {result.version}
    expected_digits = dedup_digits(torch_codes, item_ids)
    assert [table[int(i)][1] for i in item_ids] == expected_digits.tolist()
    # Items 1000, 1005, 1017, 1033 share one vector, so one code group: digits rise with the item id.
    same = [table[i] for i in (1000, 1005, 1017, 1033)]
    assert all(entry[0] == same[0][0] for entry in same)
    assert [entry[1] for entry in same] == sorted({entry[1] for entry in same})
    assert len({tuple(v[2]) for v in table.values()}) == len(item_ids)
    assert all(v[2] == v[0] + [v[1]] for v in table.values())


def test_same_inputs_and_seed_give_the_same_codebook(spark, trained):
    config, _, _, _, result = trained
    assert train_codebook.run(spark, config).version == result.version


def test_rerun_is_idempotent_and_new_items_keep_old_sids(spark, trained):
    config, store, item_ids, vectors, _ = trained
    before = rows(store.read("item_sids"))
    assign_sids.run(spark, config)
    assert rows(store.read("item_sids")) == before
    # A new item with a smaller id joins item 1000's group: it takes the group's next free digit
    # instead of renumbering the group, so every existing SID stays as it was.
    group = {r[0]: r for r in before}[1000][2]  # semantic_codes
    next_free = max(r[3] for r in before if r[2] == group) + 1
    write_embeddings(spark, store, np.r_[item_ids, [7]], np.r_[vectors, vectors[:1]])
    result = assign_sids.run(spark, config)
    assert result.assigned_now == 1 and not result.full_rebuild
    after = {r["item_id"]: tuple(r) for r in store.read("item_sids").collect()}
    assert all(after[r[0]] == r for r in before)
    assert after[7][2] == group and after[7][3] == next_free


def test_a_new_codebook_replaces_the_table_and_consumers_check_the_version(spark, trained):
    config, store, _, _, result = trained
    other = config_in(config.workspace.root, *SMALL_CODEBOOK, "codebook.seed=5")
    new = train_codebook.run(spark, other)
    assert new.version != result.version
    assigned = assign_sids.run(spark, other)
    assert assigned.full_rebuild
    sids = store.read("item_sids")
    require_codebook_version(sids, new.version)
    with pytest.raises(CodebookVersionError, match=result.version):
        require_codebook_version(sids, result.version)


def test_bad_vectors_are_refused_with_counts(spark, make_config):
    config = make_config(*SMALL_CODEBOOK)
    store = TableStore(spark, config.tables)
    vectors = clustered_vectors(20)
    vectors[3, 2] = np.nan
    write_embeddings(spark, store, np.arange(20), vectors)
    with pytest.raises(EmbeddingInputError, match="1 vectors hold NaN"):
        train_codebook.run(spark, config)
    data = [(1, [0.0, 1.0], "t", "1"), (2, [0.0, 1.0, 2.0], "t", "1")]
    store.overwrite("item_embeddings", spark.createDataFrame(
        data, "item_id BIGINT, vector ARRAY<FLOAT>, encoder STRING, encoder_version STRING"))
    with pytest.raises(EmbeddingInputError, match="several widths"):
        train_codebook.run(spark, config)
