"""The models benchmark's sweep settings, tuned variant configs, its oracle table and its feed and step
rates (no Spark needed: the rates read a Parquet file written here)."""

from __future__ import annotations

import argparse
import math

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from jobs.benchmarks.model_rates import training_rates
from jobs.benchmarks.model_table import format_rates, format_table
from jobs.benchmarks.model_variants import ABLATIONS, Variant, study_of, variant_config, variant_job, variants
from jobs.benchmarks.models import CatalogueSetting
from jobs.training.training_data import TrainingData
from jobs.training.tune import trial_config
from r2led_model.config import load_config
from r2led_model.models.inputs import FeatureSpec, narrow, random_batch
from r2led_model.tracking.bundle import DataVersions
from r2led_model.training.tuning import TunedParams


def test_catalogue_settings_parse_and_refuse_what_the_world_cannot_be():
    setting = CatalogueSetting.parse("2:0.15")
    assert setting == CatalogueSetting(2, 0.15)
    assert setting.overrides() == ["synthetic.catalogue.category_level=2", "synthetic.catalogue.mislabel_share=0.15"]
    assert CatalogueSetting.parse("3") == CatalogueSetting(3, 0.0)
    for bad in ("4:0.1", "2:1.5", "x:0.1", "2:y"):
        with pytest.raises(argparse.ArgumentTypeError):
            CatalogueSetting.parse(bad)


def test_variant_config_applies_tuned_values_then_the_ablation():
    config = load_config("oracle")
    tuned = TunedParams(model="r2led", params={"training.learning_rate": 0.003, "model.embedding_dim": 32,
                                               "model.dropout": 0.2}, best_valid_auc=0.7, trials=10, completed=9,
                        pruned=1, epochs_per_trial=4, seed=0)
    ablation = next(v for v in ABLATIONS if v.label == "r2led routes=collab")
    out = variant_config(config, ablation, tuned)
    assert out.training.learning_rate == 0.003 and out.model.embedding_dim == 32 and out.model.dropout == 0.2
    assert out.model.r2led.routes == ("collab",) and out.model.name == "r2led"
    plain = variant_config(config, Variant("din", "din"), None)
    assert plain.training.learning_rate == config.training.learning_rate and plain.model.name == "din"


def test_a_variant_tuned_on_its_own_searches_with_its_options_fixed():
    config = load_config("oracle")
    fusion = Variant("r2led fusion=mean", "r2led", (("route_fusion", "mean"),))
    control = Variant("din+sid", "din", shared=(("item_sids", True),))
    assert study_of(fusion, tune_variants=False) == "r2led" and study_of(fusion, tune_variants=True) == fusion.label
    assert study_of(Variant("r2led", "r2led"), tune_variants=True) == "r2led"
    assert study_of(control, tune_variants=True) == "din+sid"
    # What a trial of the variant's own study trains: the trial's values, the variant's options kept.
    values = {"training.learning_rate": 0.004, "model.embedding_dim": 16}
    trial = trial_config(variant_config(config, fusion, None), "r2led", values)
    assert trial.model.r2led.route_fusion == "mean" and trial.model.embedding_dim == 16
    assert trial.training.learning_rate == 0.004
    assert trial_config(variant_config(config, control, None), "din", values).model.item_sids is True


def test_ablations_set_r2leds_section_and_baselines_leave_it_at_its_defaults():
    config = load_config("oracle", ["model.r2led.gate=gate"])  # a dataset config written for R2LED
    fusion = variant_config(config, Variant("r2led fusion=mean", "r2led", (("route_fusion", "mean"),)), None)
    assert (fusion.model.r2led.route_fusion, fusion.model.r2led.gate) == ("mean", "gate")
    baseline = variant_config(config, Variant("twin", "twin"), None)
    assert baseline.model.name == "twin" and baseline.model.r2led == type(config.model.r2led)()
    assert variant_job(config, None, Variant("r2led gate=id_only", "r2led", (("gate", "id_only"),)),
                       seed=1).model.r2led.gate == "id_only"


def test_the_table_shows_the_oracle_and_each_models_share_of_its_lift():
    row = {"bench": "models_quality", "env": "oracle", "train_rows": 10, "test_rows": 5, "seeds": [0, 1, 2],
           "device": "cpu", "variant": "r2led", "auc": 0.74, "auc_std": 0.01, "gauc": 0.7, "gauc_std": 0.0,
           "logloss": 0.5, "logloss_std": 0.0, "train_s": 1.0, "train_samples_per_s": 100.0, "oracle_auc": 0.8,
           "oracle_gauc": 0.79, "oracle_logloss": 0.45, "lift_share": 0.8}
    table = format_table([row, {**row, "variant": "din", "best_epochs": [0, 3, 1]}])
    assert "oracle on the same test rows: AUC 0.8000" in table
    assert " 0.800 " in table  # the lift column
    assert "feed/s" in table and "step/s" in table
    assert table.splitlines()[3].rstrip().endswith(" -        -")  # a row saved before the rates existed
    assert table.splitlines()[4].split()[5] == "1/4/2"  # the epoch each seed kept, counted from 1
    assert table.splitlines()[3].split()[5] == "-"  # a row saved before it was recorded
    segment = {"rows": 3, "route_weight": {"sid1": 0.25, "collab": 0.75}, "route_nonempty": {"sid1": 1.0, "collab": 1.0},
               "route_entropy": 0.56, "gate_id_weight": {"mean": 0.81, "p10": 0.7, "p90": 0.9}}
    diagnosed = {**row, "diagnostics": {**segment, "by_segment": {"warmth": {"0": {**segment, "gate_id_weight": {
        "mean": 0.19, "p10": 0.1, "p90": 0.3}}, "20+": segment}}}}
    lines = format_table([diagnosed]).splitlines()
    assert "    r2led                        warmth    0: g 0.19 0.25/0.75 H 0.56; 20+: g 0.81 0.25/0.75 H 0.56" in lines
    # Variants tuned on their own: each study's parameters and best validation AUC, and each row's valid AUC.
    tuned = {**row, "valid_auc": 0.7123, "tuned": {"training.learning_rate": 0.002}, "tuning_valid_auc": 0.71,
             "tuned_as": "r2led", "tuning_trials": 8}
    own = {**tuned, "variant": "r2led fusion=mean", "valid_auc": 0.7201, "tuned": {"training.learning_rate": 0.004},
           "tuning_valid_auc": 0.7188, "tuned_as": "r2led fusion=mean"}
    lines = format_table([tuned, own, {**row, "variant": "din"}]).splitlines()
    assert lines[3].split()[4] == "0.7123" and lines[4].split()[5] == "0.7201"  # labels of one and two words
    assert lines[5].split()[4] == "-"  # a row saved before the valid AUC was recorded
    assert "    r2led      0.7100  learning_rate=0.002" in lines
    assert "    r2led fusion=mean 0.7188  learning_rate=0.004" in lines


SPEC = FeatureSpec(num_items=40, num_categories=5, sid_levels=2, sid_vocab=6, routes=("sid1", "collab"),
                   route_k=(3, 4), short_window=3, long_history=8, recency_buckets=4)
ROWS = 96


@pytest.fixture
def train_split(tmp_path) -> TrainingData:
    """A train split of ROWS random rows shaped like training_examples (narrow), in one file of 3 row groups,
    with random item lookups."""
    generator = torch.Generator().manual_seed(0)
    batch = narrow(random_batch(SPEC, ROWS, generator))
    category = torch.randint(2, SPEC.num_categories, (SPEC.num_items,), generator=generator)
    sid = torch.randint(1, SPEC.sid_vocab, (SPEC.num_items, SPEC.sid_levels), generator=generator)
    category[0], sid[0] = 0, 0
    columns = {"sample_id": pa.array(range(ROWS), pa.int64()), "user_id": pa.array([i % 9 for i in range(ROWS)],
                                                                                    pa.int64()),
               "label": pa.array(batch.pop("label").int().tolist(), pa.int32())}
    for name, value in batch.items():
        kind = pa.list_(pa.int64()) if value.dim() == 2 else pa.int64()
        columns[name] = pa.array(value.tolist(), kind)
    path = tmp_path / "part-00000.parquet"
    pq.write_table(pa.table(columns), path, row_group_size=32)
    return TrainingData(files={"train": [str(path)]}, rows={"train": ROWS}, spec=SPEC,
                        versions=DataVersions(codebook_version="c", collab_version="v"),
                        item_category=category.numpy(), item_sid=sid.numpy())


def test_feed_and_step_rates_are_positive_and_one_feed_pass_serves_every_model_reading_its_columns(train_split):
    config = load_config("tiny", ["training.batch_size=16", "model.embedding_dim=8"])
    feeds: dict = {}
    rates = {}
    for variant in (Variant("r2led", "r2led"), Variant("r2led fusion=mean", "r2led", (("route_fusion", "mean"),)),
                    Variant("din", "din")):
        rates[variant.label] = training_rates(variant_job(config, train_split, variant, seed=0), feeds)
    for label, got in rates.items():
        for key in ("feed_samples_per_s", "step_samples_per_s"):
            assert math.isfinite(got[key]) and got[key] > 0, (label, key, got[key])
        assert got["step_batches"] == ROWS // 16  # fewer batches than STEP_BATCHES: the whole epoch is kept
    assert len(feeds) == 2  # both R2LED variants read the same columns; DIN reads only `short`
    assert rates["r2led"]["feed_samples_per_s"] == rates["r2led fusion=mean"]["feed_samples_per_s"]
    kept = next(iter(feeds.values())).batches
    assert sum(int(b["label"].shape[0]) for b in kept) == ROWS  # the feed pass saw every row once

    row = {"bench": "models_quality", "env": "tiny", "train_rows": ROWS, "test_rows": 0, "seeds": [0],
           "device": "cpu", "variant": "r2led", "auc": 0.5, "auc_std": 0.0, "gauc": 0.5, "gauc_std": 0.0,
           "logloss": 0.7, "logloss_std": 0.0, "train_s": 1.0, "train_samples_per_s": 100.0, **rates["r2led"]}
    cells = format_table([row]).splitlines()[2].split()
    assert cells[-2:] == [f"{rates['r2led']['feed_samples_per_s']:,.0f}", f"{rates['r2led']['step_samples_per_s']:,.0f}"]


def test_sweep_labels_become_metric_names_mlflow_accepts(tmp_path):
    from mlflow import MlflowClient

    from jobs.benchmarks.models import metric_name
    from r2led_model.config import with_values
    from r2led_model.tracking.runs import configure, tracked_run

    config = with_values(load_config("tiny"), {"workspace.root": str(tmp_path)})
    name = metric_name("oracle category=L2 mislabel=0.1", "r2led gate=sum", "test_auc")
    assert name == "oracle_category-L2_mislabel-0.1.r2led_gate-sum.test_auc"
    with tracked_run(config, run_name="names") as tracked:
        tracked.log_metrics({name: 0.7})
        run_id = tracked.run_id
    configure(config.mlflow)
    assert MlflowClient().get_run(run_id).data.metrics == {name: 0.7}


def test_variants_by_label_pick_exactly_those_and_an_unknown_label_exits_2_before_spark(capsys):
    from jobs.benchmarks import models as bench

    picked = variants(None, True, True, ["r2led gate=gate", "din+sid", "r2led gate=gate"])
    assert [v.label for v in picked] == ["r2led gate=gate", "din+sid"]
    assert dict(picked[0].overrides) == {"gate": "gate"} and dict(picked[1].shared) == {"item_sids": True}
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["--variants", "r2led gate=nonsense"])
    assert exit_info.value.code == 2
    assert "r2led gate=nonsense" in capsys.readouterr().err


def test_the_rates_table_shows_the_feeds_headroom_over_the_step():
    rows = [{"bench": "models_rates", "env": "oracle", "variant": "r2led", "feed_samples_per_s": 9000.0,
             "step_samples_per_s": 3000.0, "feed_over_step": 3.0},
            {"bench": "models_quality", "env": "oracle", "variant": "din"}]
    lines = format_rates(rows).splitlines()
    assert len(lines) == 3  # header, rule, the one rates row
    assert lines[2].split() == ["oracle", "r2led", "9,000", "3,000", "3.00"]
