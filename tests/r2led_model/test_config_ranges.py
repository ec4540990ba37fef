"""What the loader refuses before any job starts: a key given twice in one YAML file, an empty --config
file, and a number outside its key's range (one table, `config.RANGES`)."""

from __future__ import annotations

import dataclasses
import math
import typing
from pathlib import Path

import pytest

from r2led_model.config import loader
from r2led_model.config import schema as config_module
from r2led_model.config import RANGES, ConfigError, Range, build_config, load_config

CONF = Path(__file__).resolve().parents[2] / "conf"


def _conf_dir(tmp_path: Path) -> Path:
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "base.yaml").write_text("sequences:\n  split:\n    mode: last_n\n", encoding="utf-8")
    return conf


# ---- duplicate keys -------------------------------------------------------------------------------


def test_a_top_level_key_given_twice_names_the_file_and_the_line_of_the_second(tmp_path):
    own = tmp_path / "my.yaml"
    own.write_text("source:\n  kind: taobao\nretrieval:\n  k: 5\nsource:\n  kind: tmall\n", encoding="utf-8")
    with pytest.raises(ConfigError) as raised:
        load_config(conf_dir=_conf_dir(tmp_path), config_file=own)
    assert str(raised.value) == f"{own}:5:1: duplicate key 'source' (first at line 1): YAML would keep only the last"


def test_a_nested_key_given_twice_is_refused_too(tmp_path):
    own = tmp_path / "my.yaml"
    own.write_text("training:\n  epochs: 3\n  batch_size: 8\n  epochs: 30\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"^{own}:4:3: duplicate key 'epochs' \(first at line 2\)"):
        load_config(conf_dir=_conf_dir(tmp_path), config_file=own)


def test_a_duplicate_key_in_an_env_file_or_a_set_value_is_refused(tmp_path):
    conf = _conf_dir(tmp_path)
    (conf / "team.yaml").write_text("# the team's env\nspark:\n  shuffle_partitions: 4\n  shuffle_partitions: 2\n",
                                    encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"^{conf / 'team.yaml'}:4:3: duplicate key 'shuffle_partitions'"):
        load_config("team", conf_dir=conf)
    with pytest.raises(ConfigError, match=r"--set .*duplicate key 'k'"):
        load_config("tiny", ["retrieval={k: 3, k: 4}"])


def test_the_same_key_in_two_sibling_sections_is_no_duplicate(tmp_path):
    own = tmp_path / "my.yaml"
    own.write_text("codebook:\n  epochs: 2\ntraining:\n  epochs: 3\n", encoding="utf-8")
    config = load_config(conf_dir=_conf_dir(tmp_path), config_file=own)
    assert (config.codebook.epochs, config.training.epochs) == (2, 3)


@pytest.mark.parametrize("text", ["", "\n\n", "# nothing set yet\n  # still nothing\n", "---\n"])
def test_an_empty_own_config_file_names_the_file(tmp_path, text):
    own = tmp_path / "my.yaml"
    own.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as raised:
        load_config(conf_dir=_conf_dir(tmp_path), config_file=own)
    assert str(raised.value) == f"{own}: empty config file (no keys set); give it some keys or leave out --config"


@pytest.mark.parametrize("path", sorted(CONF.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_conf_layer_sets_something_and_repeats_no_key(path):
    layer = loader._read_yaml(path)
    assert layer, f"{path.name} sets no key"


# ---- the range table ------------------------------------------------------------------------------


@pytest.mark.parametrize("override, message", [
    ("codebook.batch_size=0", "codebook.batch_size: must be >= 1, got 0"),
    ("codebook.batch_size=-5", "codebook.batch_size: must be >= 1, got -5"),
    ("collab.alpha=-1", "collab.alpha: must be >= 0, got -1.0"),
    ("collab.reg=-0.1", "collab.reg: must be >= 0, got -0.1"),
    ("embedding.als_alpha=-2", "embedding.als_alpha: must be >= 0, got -2.0"),
    ("embedding.als_reg=-1e-3", "embedding.als_reg: must be >= 0, got -0.001"),
    ("model.mlp_dims=[64, 0]", "model.mlp_dims[1]: must be >= 1, got 0"),
    ("codebook.hidden_dims=[-3]", "codebook.hidden_dims[0]: must be >= 1, got -3"),
    ("training.learning_rate=0", "training.learning_rate: must be > 0, got 0.0"),
    ("codebook.learning_rate=-1e-3", "codebook.learning_rate: must be > 0, got -0.001"),
    ("training.seed=-1", "training.seed: must be in [0, 9223372036854775807], got -1"),
    ("retrieval.simhash_bits=65", "retrieval.simhash_bits: must be in [1, 64], got 65 (bits of one 64-bit signature)"),
    ("retrieval.k_per_route={sid1: 0}", "retrieval.k_per_route.sid1: must be >= 1, got 0"),
    ("synthetic.noise_share=1", "synthetic.noise_share: must be in [0, 1), got 1.0"),
    ("synthetic.impressions.interest_mix=[0.5, -0.1, 0.6]",
     "synthetic.impressions.interest_mix[1]: must be >= 0, got -0.1"),
    ("benchmark.scale_sample_share=0", "benchmark.scale_sample_share: must be in (0, 1], got 0.0"),
    ("benchmark.sequence_sizes=[0]", "benchmark.sequence_sizes[0]: must be >= 1, got 0"),
    ("tuning.warmup_epochs=-1", "tuning.warmup_epochs: must be >= 0, got -1"),
    ("training.weight_decay=-0.01", "training.weight_decay: must be >= 0, got -0.01"),
    ("source.movielens100k.click_threshold=6", "source.movielens100k.click_threshold: must be in [0, 5], got 6.0 "
                                               "(ratings are 1..5)"),
])
def test_a_number_outside_its_range_names_the_key_and_the_range(override, message):
    with pytest.raises(ConfigError) as raised:
        load_config("local", [override])
    assert str(raised.value) == message


@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan", "inf", "nan", "1e999"])
def test_a_learning_rate_must_be_a_finite_number(value):
    with pytest.raises(ConfigError, match=r"^--set: training\.learning_rate: expected a finite number, got "):
        load_config("tiny", [f"training.learning_rate={value}"])


def test_a_non_finite_number_in_a_file_names_the_file(tmp_path):
    own = tmp_path / "my.yaml"
    own.write_text("codebook:\n  learning_rate: .inf\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"^{own}: codebook\.learning_rate: expected a finite number, got inf"):
        load_config(conf_dir=_conf_dir(tmp_path), config_file=own)


def test_the_ingest_window_and_behaviours(tmp_path):
    with pytest.raises(ConfigError, match=r"^ingest\.max_date: '2020-01-01' must be after ingest\.min_date "
                                          r"\('2020-01-01'\)"):
        load_config("tiny", ["ingest.min_date=2020-01-01", "ingest.max_date=2020-01-01"])
    with pytest.raises(ConfigError, match=r"^ingest\.max_date: .* must be after ingest\.min_date"):
        load_config("tiny", ["ingest.min_date=2021-01-01", "ingest.max_date=2020-01-01"])
    with pytest.raises(ConfigError, match=r"^ingest\.behaviors: empty: every event would be rejected"):
        load_config("tiny", ["ingest.behaviors=[]"])


def test_the_edges_of_each_range_are_as_written():
    assert load_config("tiny", ["codebook.batch_size=1"]).codebook.batch_size == 1
    assert load_config("tiny", ["synthetic.noise_share=0"]).synthetic.noise_share == 0.0
    assert load_config("tiny", ["benchmark.scale_sample_share=1"]).benchmark.scale_sample_share == 1.0
    assert load_config("tiny", ["retrieval.simhash_bits=64"]).retrieval.simhash_bits == 64
    assert load_config("tiny", ["model.mlp_dims=[]"]).model.mlp_dims == ()  # a linear head: no hidden layer


def test_a_range_of_a_section_that_is_not_read_is_not_checked():
    # Only the named model's section is read, and another's must stay at its defaults anyway; only the
    # named source kind's section is read, and the others may hold anything.
    config = load_config("tiny", ["source.amazon.click_threshold=40"])
    assert config.source.kind == "synthetic"
    with pytest.raises(ConfigError, match=r"^source\.amazon\.click_threshold: must be in \[0, 5\], got 40\.0"):
        load_config("tiny", ["source.kind=amazon", "source.amazon.click_threshold=40"])


def _numeric(tp) -> bool:
    """Whether a field's type holds numbers: int or float, alone, optional, or as a tuple's or dict's values."""
    if tp in (int, float):
        return True
    args = [a for a in typing.get_args(tp) if a is not type(None) and a is not Ellipsis]
    if typing.get_origin(tp) is dict:
        return _numeric(args[1])
    if typing.get_origin(tp) is tuple:
        return all(_numeric(a) for a in args) and bool(args)
    return len(args) == 1 and _numeric(args[0])  # X | None


def _schema_classes() -> list[type]:
    return [cls for cls in vars(config_module).values()
            if isinstance(cls, type) and dataclasses.is_dataclass(cls) and cls.__module__ == config_module.__name__
            and cls is not Range]


def test_every_numeric_field_of_every_section_has_a_range_and_every_range_a_numeric_field():
    numeric = {(cls, f.name) for cls in _schema_classes()
               for f, tp in ((f, typing.get_type_hints(cls)[f.name]) for f in dataclasses.fields(cls)) if _numeric(tp)}
    listed = {(cls, name) for cls, fields in RANGES.items() for name in fields}
    assert numeric - listed == set(), "numeric fields without a range"
    assert listed - numeric == set(), "ranges of no numeric field"
    assert len(numeric) > 90  # every section's counts, shares, dims, seeds and rates


def test_every_default_is_inside_its_range():
    for cls, fields in RANGES.items():
        default = cls()
        for name, rng in fields.items():
            values = getattr(default, name)
            values = values.values() if isinstance(values, dict) else values
            for value in values if isinstance(values, (tuple, type({}.values()))) else [values]:
                assert value is None or rng.contains(value), (cls.__name__, name, value)


def test_a_range_describes_itself_as_its_message_says():
    assert str(Range(low=1)) == ">= 1"
    assert str(Range(low=0, low_open=True)) == "> 0"
    assert str(Range(low=0, high=1)) == "in [0, 1]"
    assert str(Range(low=0, high=1, high_open=True)) == "in [0, 1)"
    assert str(Range(high=5)) == "<= 5"
    assert str(Range()) == "any finite number"
    assert Range(low=0, high=1, high_open=True).contains(0.0) and not Range(low=0, high=1, high_open=True).contains(1.0)
    assert not Range(low=0).contains(math.nan)


def test_build_config_checks_ranges_like_the_loader():
    values = load_config("tiny").to_dict()
    values["codebook"]["batch_size"] = 0
    with pytest.raises(ConfigError, match=r"^codebook\.batch_size: must be >= 1, got 0$"):
        build_config(values)
