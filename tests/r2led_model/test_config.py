from __future__ import annotations

import pytest

from r2led_model.config import Config, ConfigError, build_config, load_config, parse_utc_timestamp, split_as_of


@pytest.mark.parametrize("env", ["local", "tiny", "databricks"])
def test_every_shipped_env_loads(env):
    config = load_config(env)
    assert isinstance(config, Config)
    assert config.env == env


def test_env_values_override_base_and_placeholders_resolve():
    config = load_config("tiny", ["workspace.root=/data/ws"])
    assert config.spark.master == "local[2]"  # from tiny.yaml
    assert config.sequences.negatives.seed == 17  # from base.yaml
    assert config.tables.root == "/data/ws/tables"  # ${workspace.root} after the override
    assert config.spark.ivy_dir == "/data/ws/ivy2"  # placeholder in a schema default


def test_set_overrides_are_typed_by_the_schema():
    config = load_config("tiny", ["sequences.max_stored=7", "synthetic.taxonomy=[2, 3, 4]",
                                  "spark.ui_enabled=true", "synthetic.noise_share=0"])
    assert config.sequences.max_stored == 7
    assert config.synthetic.taxonomy == (2, 3, 4)
    assert config.spark.ui_enabled is True
    assert config.synthetic.noise_share == 0.0 and isinstance(config.synthetic.noise_share, float)


@pytest.mark.parametrize("override, key_path", [
    ("sequences.max_stord=5", "sequences.max_stord"),
    ("sequences.split.cutoff=1", "sequences.split.cutoff"),
    ("nonsense=1", "nonsense"),
])
def test_unknown_keys_name_their_path(override, key_path):
    with pytest.raises(ConfigError, match=key_path.replace(".", r"\.")):
        load_config("tiny", [override])


@pytest.mark.parametrize("override, key_path", [
    ("sequences.max_stored=many", "sequences.max_stored"),
    ("sequences.max_stored=1.5", "sequences.max_stored"),
    ("spark.ui_enabled=1", "spark.ui_enabled"),
    ("synthetic.taxonomy=[1, 2]", "synthetic.taxonomy"),
    ("sequences.split.mode=random", "sequences.split.mode"),
    ("sequences.negatives.ratio=0", "sequences.negatives.ratio"),
    ("sequences.split.valid_from=yesterday", "sequences.split.valid_from"),
    ("pipeline.valid_days=0", "pipeline.valid_days"),
    ("pipeline.test_days=-1", "pipeline.test_days"),
])
def test_wrong_values_name_their_path(override, key_path):
    with pytest.raises(ConfigError, match=key_path.replace(".", r"\.").replace("[", r"\[")):
        load_config("tiny", [override])


def test_unknown_key_in_yaml_file_is_an_error(tmp_path):
    (tmp_path / "base.yaml").write_text("spark:\n  master: local[1]\n")
    (tmp_path / "mine.yaml").write_text("sequences:\n  max_storred: 3\n")
    with pytest.raises(ConfigError, match=r"sequences\.max_storred"):
        load_config("mine", conf_dir=tmp_path)


def test_unknown_env_lists_the_known_ones():
    with pytest.raises(ConfigError, match="unknown env 'nope'.*tiny"):
        load_config("nope")


def test_time_split_needs_ordered_cutoffs():
    with pytest.raises(ConfigError, match="valid_from"):
        load_config("tiny", ["sequences.split.valid_from=2024-02-01", "sequences.split.test_from=2024-01-01"])


def test_config_round_trips_through_its_dict():
    config = load_config("tiny")
    assert build_config(config.to_dict()) == config


def test_timestamps_are_utc():
    assert parse_utc_timestamp("1970-01-02") == 86400
    assert parse_utc_timestamp("2024-01-01T01:00:00") == 1704070800


def test_float_accepts_exponent_notation_and_names_the_key_of_a_non_number():
    assert load_config("tiny", ["training.learning_rate=1e-7"]).training.learning_rate == 1e-7
    with pytest.raises(ConfigError, match="training.learning_rate: expected a number"):
        load_config("tiny", ["training.learning_rate=fast"])


def test_a_dated_run_rolls_the_time_split_to_its_date():
    config = load_config("tiny", ["pipeline.valid_days=3", "pipeline.test_days=2", "sequences.split.mode=last_n"])
    split = split_as_of(config, "2024-01-19").sequences.split
    # test = the 2 days up to and including the date; valid = the 3 days before them.
    assert (split.mode, split.valid_from, split.test_from) == ("time", "2024-01-15", "2024-01-18")
