from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from r2led_model.config import (Config, ConfigError, ModelConfig, R2LEDConfig, build_config, for_model, load_config,
                                parse_utc_timestamp, split_as_of)


SHIPPED_ENVS = sorted(p.stem for p in (Path(__file__).resolve().parents[2] / "conf").glob("*.yaml") if p.stem != "base")


def test_the_shipped_envs_are_the_ones_documented():
    assert SHIPPED_ENVS == ["databricks", "lifelong", "lifelong_tiny", "local", "oracle", "synthetic", "synthetic_long",
                            "tiny"]


@pytest.mark.parametrize("env", SHIPPED_ENVS)
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
    with pytest.raises(ConfigError, match=r"mine\.yaml: sequences\.max_storred: unknown config key"):
        load_config("mine", conf_dir=tmp_path)


# ---- your own config file (--config) -------------------------------------------------------


def _own(tmp_path, text: str, name: str = "my.yaml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_own_file_layers_over_base_and_env_and_under_set(tmp_path):
    # Each key is set by the layers above it and by this one; the last layer that sets it wins.
    own = _own(tmp_path, "spark:\n  shuffle_partitions: 3\n"            # tiny says 2
                         "sequences:\n  max_stored: 50\n"              # tiny says 200, --set says 7
                         "  negatives:\n    seed: 5\n"                 # base says 17
                         "retrieval:\n  k_per_route:\n    sid1: 4\n")  # a partial mapping merges
    config = load_config("tiny", ["sequences.max_stored=7"], config_file=own)
    assert config.env == "tiny"
    assert config.spark.master == "local[2]" and config.spark.driver_memory == "2g"  # tiny, untouched
    assert config.spark.shuffle_partitions == 3  # my.yaml over tiny
    assert config.sequences.negatives.seed == 5  # my.yaml over base
    assert config.sequences.negatives.ratio == 1  # its sibling in base stays
    assert config.sequences.max_stored == 7  # --set over my.yaml
    assert config.retrieval.k_per_route == {"sid1": 4}
    assert config.source.kind == "synthetic"  # tiny's, since my.yaml names no source


def test_own_file_without_env_is_layered_over_base_alone(tmp_path):
    own = _own(tmp_path, "training:\n  epochs: 1\n")
    mine, base_only, local = load_config(config_file=own), load_config("base"), load_config()
    # No env named: base.yaml alone, not local's MovieLens settings (local sets codebook_size 64).
    assert (mine.env, base_only.env, local.env) == ("base", "base", "local")
    assert local.codebook.codebook_size == 64 and mine.codebook.codebook_size == base_only.codebook.codebook_size != 64
    assert mine.training.epochs == 1
    assert mine == dataclasses.replace(base_only, training=dataclasses.replace(base_only.training, epochs=1))
    # An env named beside the file is layered under it, as on the command line.
    assert load_config("local", config_file=own).codebook.codebook_size == 64


@pytest.mark.parametrize("text, message", [
    ("retrieval:\n  kk: 3\n", r"my\.yaml: retrieval\.kk: unknown config key \(allowed here: .*\bk\b"),
    ("source:\n  movielens100k:\n    click_treshold: 3\n",
     r"my\.yaml: source\.movielens100k\.click_treshold: unknown config key"),
    ("retrival:\n  k: 3\n", r"my\.yaml: retrival: unknown config key"),
    ("training:\n  epochs: many\n", r"my\.yaml: training\.epochs: expected an integer, got 'many'"),
    ("spark:\n  mode: cluster\n", r"my\.yaml: spark\.mode: 'cluster' is not one of"),
    ("retrieval: 3\n", r"my\.yaml: retrieval: expected a mapping, got int"),
    ("- a\n- b\n", r"my\.yaml: top level must be a mapping"),
])
def test_a_bad_key_or_value_in_own_file_names_the_file_and_key_path(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message) as raised:
        load_config("tiny", config_file=_own(tmp_path, text))
    assert str(raised.value).startswith(str(tmp_path / "my.yaml"))


def test_a_yaml_syntax_error_names_the_file_and_line(tmp_path):
    own = _own(tmp_path, "training:\n  epochs: 2\nmodel:\n  mlp_dims: [32, 16\n  dropout: 0.1\n")
    with pytest.raises(ConfigError, match=r"my\.yaml:5:\d+: not valid YAML: .*from line 4") as raised:
        load_config(config_file=own)
    assert str(raised.value).startswith(f"{own}:5:")
    tabbed = _own(tmp_path, "training:\n\tepochs: 2\n", name="tabbed.yaml")
    with pytest.raises(ConfigError, match=r"tabbed\.yaml:2:1: not valid YAML: found character '\\t'"):
        load_config(config_file=tabbed)


def test_a_missing_own_file_names_its_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=rf"config file mine\.yaml not found \(looked at {tmp_path}/mine\.yaml\)"):
        load_config(config_file="mine.yaml")
    with pytest.raises(ConfigError, match=rf"config file {tmp_path}/gone\.yaml not found$"):
        load_config(config_file=tmp_path / "gone.yaml")


def test_a_bad_set_after_a_good_own_file_names_the_set(tmp_path):
    own = _own(tmp_path, "training:\n  epochs: 1\n")
    with pytest.raises(ConfigError, match=r"^--set: training\.epochz: unknown config key"):
        load_config(config_file=own, overrides=["training.epochz=2"])


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


# ---- per-model sections ----------------------------------------------------------------------


def test_each_model_with_options_has_a_section_named_like_it():
    from r2led_model.models import MODELS

    sections = ModelConfig().sections()
    assert set(sections) == set(MODELS) - {"din", "din_long"}
    config = load_config("tiny", ["model.name=eta", "model.eta.hash_bits=12", "model.eta.retrieve_k=30"])
    assert (config.model.eta.hash_bits, config.model.eta.retrieve_k, config.model.eta.seed_hash) == (12, 30, 11)
    assert config.model.read_values()["model.eta.hash_bits"] == 12
    assert not [k for k in config.model.read_values() if k.startswith(("model.r2led.", "model.sdim."))]


@pytest.mark.parametrize("overrides, message", [
    (["model.name=din", "model.r2led.gate=id_only"],
     "model.r2led.gate: model.name is din, which does not read model.r2led (it is read by r2led)"),
    (["model.name=sim_hard", "model.twin.retrieve_k=30"],
     "model.twin.retrieve_k: model.name is sim_hard, which does not read model.twin (it is read by twin)"),
    (["model.sdim.hashes=8"],  # the default model is r2led
     "model.sdim.hashes: model.name is r2led, which does not read model.sdim (it is read by sdim)"),
])
def test_a_key_of_another_models_section_set_away_from_its_default_is_an_error_naming_it(overrides, message):
    with pytest.raises(ConfigError) as raised:
        load_config("tiny", overrides)
    assert str(raised.value) == message


def test_another_models_section_at_its_defaults_is_fine_and_a_file_is_checked_like_set(tmp_path):
    assert load_config("tiny", ["model.name=din", "model.r2led.gate=sum"]).model.name == "din"
    own = _own(tmp_path, "model:\n  name: twin\n  eta:\n    hash_bits: 16\n")
    with pytest.raises(ConfigError, match=r"^model\.eta\.hash_bits: model\.name is twin, which does not read"):
        load_config("tiny", config_file=own)


@pytest.mark.parametrize("flat, home", [
    ("gate=sum", "model.r2led.gate"),
    ("route_fusion=mean", "model.r2led.route_fusion"),
    ("routes=[collab]", "model.r2led.routes"),
    ("eta_hash_bits=8", "model.eta.hash_bits"),
    ("sdim_hashes=2", "model.sdim.hashes"),
    ("sdim_hash_bits=2", "model.sdim.hash_bits"),
])
def test_an_old_flat_model_key_is_an_error_naming_its_new_home(flat, home):
    key = f"model.{flat.split('=')[0]}"
    with pytest.raises(ConfigError) as raised:
        load_config("tiny", [f"model.{flat}"])
    assert str(raised.value) == f"--set: {key} moved to {home}"


def test_an_old_flat_key_read_by_several_models_names_every_home(tmp_path):
    with pytest.raises(ConfigError) as raised:
        load_config("tiny", config_file=_own(tmp_path, "model:\n  name: sim_hard\n  retrieve_k: 30\n"))
    assert str(raised.value) == (f"{tmp_path / 'my.yaml'}: model.retrieve_k moved to the section of each model that "
                                 "reads it (model.sim_hard.retrieve_k, model.sim_soft.retrieve_k, "
                                 "model.eta.retrieve_k, model.twin.retrieve_k)")
    with pytest.raises(ConfigError, match=r"model\.seed_hash moved to .*model\.eta\.seed_hash, model\.sdim\.seed_hash"):
        build_config({"model": {"name": "eta", "seed_hash": 3}})


@pytest.mark.parametrize("overrides, key", [
    (["model.name=eta", "model.eta.hash_bits=63"], "model.eta.hash_bits"),
    (["model.name=sdim", "model.sdim.hash_bits=17"], "model.sdim.hash_bits"),
    (["model.name=sdim", "model.sdim.hashes=0"], "model.sdim.hashes"),
    (["model.name=twin", "model.twin.retrieve_k=0"], "model.twin.retrieve_k"),
    (["model.r2led.routes=[collab, collab]"], "model.r2led.routes"),
    (["model.embedding_dim=9"], "model.attention_heads"),
])
def test_each_section_checks_its_own_values(overrides, key):
    with pytest.raises(ConfigError, match=rf"^{key.replace('.', chr(92) + '.')}: "):
        load_config("tiny", overrides)


def test_switching_model_resets_only_the_other_models_sections():
    config = load_config("tiny", ["model.r2led.route_fusion=mean", "model.embedding_dim=8"])
    din = for_model(config, "din")
    assert din.model.name == "din" and din.model.embedding_dim == 8 and din.model.r2led == R2LEDConfig()
    assert for_model(config, "r2led").model.r2led.route_fusion == "mean"


# ---- section checks: each section checks itself, the walker reaches every one ----------------------


@pytest.mark.parametrize("override, key", [
    ("spark.shuffle_partitions=0", "spark.shuffle_partitions"),  # a top-level section
    ("synthetic.catalogue.mislabel_share=2", "synthetic.catalogue.mislabel_share"),  # nested
    ("sequences.split.last_n_test=-1", "sequences.split.last_n_test"),  # nested
])
def test_a_bad_value_in_a_top_level_or_nested_section_names_its_key(override, key):
    with pytest.raises(ConfigError, match=rf"^{key.replace('.', chr(92) + '.')}: "):
        load_config("tiny", [override])


def _sections_with_a_check(section, path: str = "") -> set[str]:
    """The dotted path of every section in the tree that has a `check` or numbers in `RANGES`, unread ones
    (other models' and other source kinds' sections) included."""
    from r2led_model.config import RANGES

    found = {path} if hasattr(section, "check") or type(section) in RANGES else set()
    for f in dataclasses.fields(section):
        child = getattr(section, f.name)
        if dataclasses.is_dataclass(child):
            found |= _sections_with_a_check(child, f"{path}.{f.name}" if path else f.name)
    return found


def test_every_section_with_a_check_or_a_range_is_checked_when_it_is_read(monkeypatch):
    import r2led_model.config.schema as config_module

    reached: list[set[str]] = []

    def spy(original):
        def check(self, path):
            reached[-1].add(path)
            original(self, path)
        return check

    for cls in vars(config_module).values():
        if isinstance(cls, type) and dataclasses.is_dataclass(cls) and "check" in vars(cls):
            monkeypatch.setattr(cls, "check", spy(cls.check))
    check_ranges = config_module._check_ranges

    def ranges_spy(section, path):
        if type(section) in config_module.RANGES:
            reached[-1].add(path)
        check_ranges(section, path)

    monkeypatch.setattr(config_module, "_check_ranges", ranges_spy)
    table = ('source.table={"path": "/t", "columns": {"user": "u", "item": "i", "timestamp": "t"}, '
             '"items": {"path": "/i"}}')
    # Each build selects one model and one source kind: together they read every section.
    builds = [[f"model.name={name}"] for name in ModelConfig().sections()]
    builds += [[f"source.kind={f.name}"] for f in dataclasses.fields(config_module.SourceConfig) if f.name != "kind"]
    for overrides in builds:
        reached.append(set())
        config = load_config("tiny", [table, *overrides])
    expected = _sections_with_a_check(config)
    assert {"spark", "synthetic.catalogue", "sequences.split", "source.table.items", "model.eta", "model.sim_hard",
            "source.tmall"} <= expected
    assert set().union(*reached) == expected
    # A section that is not read is not checked: the first build reads model.r2led and source.synthetic.
    assert not {"model.eta", "source.table", "source.amazon"} & reached[0]


def test_a_built_config_and_a_layer_refuse_an_unknown_key_with_the_same_message():
    values = load_config("tiny").to_dict()
    with pytest.raises(ConfigError, match=r"^retrieval\.kk: unknown config key \(allowed here: .*\bk\b") as built:
        build_config({**values, "retrieval": {**values["retrieval"], "kk": 3}})
    with pytest.raises(ConfigError, match=r"^--set: retrieval\.kk: unknown config key") as layered:
        load_config("tiny", ["retrieval.kk=3"])
    assert str(layered.value) == f"--set: {built.value}"
