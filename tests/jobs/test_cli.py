"""`r2led` driven in-process through `jobs.cli.main(argv)`: usage and exit codes, config errors
that name their key before any Spark work, and a real ingest whose tables we then read.

The `spark` fixture is requested wherever a job runs, so the CLI's `get_spark` reuses the
session already running (getOrCreate) instead of starting a second JVM.
"""

from __future__ import annotations

import re

import pytest

from jobs import cli
from jobs.runtime.run_lock import LOCK_TABLE
from jobs.runtime.tables import TableStore
from tests.helpers import IVY_DIR, config_in, write_lines

TAOBAO = [
    "1,100,10,pv,1700000000",
    "1,101,10,cart,1700000100",
    "2,100,10,buy,1700000200",
    "2,100,10,like,1700000300",  # unknown behaviour: rejected
]


pytestmark = pytest.mark.usefixtures("restore_logging")  # jobs reconfigure the root logger


def _job_args(root, *overrides: str) -> list[str]:
    args = ["--env", "tiny", "--set", f"workspace.root={root}", "--set", f"spark.ivy_dir={IVY_DIR}"]
    for override in overrides:
        args += ["--set", override]
    return args


@pytest.mark.parametrize("argv, code", [([], 2), (["--help"], 0), (["-h"], 0), (["help"], 0)])
def test_usage_lists_every_command(capsys, argv, code):
    assert cli.main(argv) == code
    out = capsys.readouterr().out
    assert out.startswith("usage: r2led <command>")
    for name in ("ingest", "sequences", "generate", "pipeline"):
        assert re.search(rf"^  {name}\s", out, re.M), name
    assert re.search(r"^  benchmark sequences\s", out, re.M)


def test_unknown_command_and_missing_benchmark_name_exit_2(capsys):
    assert cli.main(["frobnicate"]) == 2
    err = capsys.readouterr().err
    assert "unknown command 'frobnicate'" in err and "usage: r2led" in err

    assert cli.main(["benchmark"]) == 2
    assert "r2led benchmark: choose one of sequences" in capsys.readouterr().err
    assert cli.main(["benchmark", "nope"]) == 2
    assert "choose one of sequences" in capsys.readouterr().err


def test_unknown_job_option_is_an_argparse_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["ingest", "--no-such-option"])
    assert exit_.value.code == 2
    assert "unrecognized arguments: --no-such-option" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["score", "--candidates", "/tmp/pairs", "--run-id", "a'b"], "a run id is letters, digits"),
    (["score", "--candidates", "/tmp/pairs", "--candidate-columns", "who=uid"], "ROLE one of user, item, ts"),
    (["score", "--candidates", "/tmp/pairs", "--date", "2024-01-02"], "pick one"),
    (["score", "--run-id", "nightly"], "go with --candidates"),
])
def test_score_refuses_candidate_flags_that_cannot_work_before_anything_starts(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_config_errors_exit_2_and_name_the_key(capsys, tmp_path):
    assert cli.main(["ingest", *_job_args(tmp_path, "sequences.max_stord=3")]) == 2
    captured = capsys.readouterr()
    assert "config error" in captured.err and "sequences.max_stord" in captured.err
    assert "resolved config" not in captured.out  # it stopped before printing or running anything

    assert cli.main(["ingest", *_job_args(tmp_path, "sequences.max_stored=0")]) == 2
    assert "sequences.max_stored: must be >= 1, got 0" in capsys.readouterr().err

    assert cli.main(["ingest", "--env", "nosuchenv"]) == 2
    err = capsys.readouterr().err
    assert "unknown env 'nosuchenv'" in err and "tiny" in err  # lists the known envs
    assert not (tmp_path / "tables").exists()


@pytest.mark.parametrize("override, message", [
    ("codebook.batch_size=0", "codebook.batch_size: must be >= 1, got 0"),
    ("training.learning_rate=.inf", "training.learning_rate: expected a finite number, got inf"),
    ("model.mlp_dims=[32, -1]", "model.mlp_dims[1]: must be >= 1, got -1"),
    ("model.name=transformer", "model.name: 'transformer' is not one of 'r2led', 'din', 'din_long'"),
])
def test_a_number_out_of_range_exits_2_before_spark_starts(capsys, tmp_path, override, message):
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    assert cli.main(["train", *_job_args(tmp_path, override)]) == 2
    captured = capsys.readouterr()
    assert "r2led train: config error: " in captured.err and message in captured.err
    assert "resolved config" not in captured.out
    assert SparkSession.getActiveSession() is active  # no session was started for it
    assert not (tmp_path / "tables").exists()


def test_version_prints_the_installed_package_version(capsys):
    from importlib.metadata import version

    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"r2led {version('r2led')}"


def test_a_config_file_with_a_key_twice_or_no_key_exits_2_naming_it(capsys, tmp_path):
    own = tmp_path / "my.yaml"
    own.write_text("source:\n  kind: taobao\nsource:\n  kind: tmall\n", encoding="utf-8")
    assert cli.main(["ingest", "--config", str(own)]) == 2
    assert f"config error: {own}:3:1: duplicate key 'source' (first at line 1)" in capsys.readouterr().err
    own.write_text("# to do\n", encoding="utf-8")
    assert cli.main(["ingest", "--config", str(own)]) == 2
    assert f"config error: {own}: empty config file" in capsys.readouterr().err


def test_ingest_through_the_cli_prints_its_config_and_writes_tables(spark, capsys, tmp_path):
    logs = write_lines(tmp_path / "raw" / "UserBehavior.csv", TAOBAO)
    argv = ["ingest", *_job_args(tmp_path, "source.kind=taobao", f'source.taobao.paths=["{logs}"]',
                                 "ingest.max_reject_share=0.5")]  # 1 of 4 lines is bad on purpose
    assert cli.main(argv) == 0
    captured = capsys.readouterr()
    assert "# r2led ingest: resolved config (env=tiny)" in captured.out
    assert "kind: taobao" in captured.out and str(logs) in captured.out
    # The run's summary is logged: 4 lines read, 3 new events, 1 rejected as unknown_behavior.
    assert re.search(r"rows read\s+4\n", captured.err)
    assert re.search(r"new events\s+3\n", captured.err)
    assert re.search(r"unknown_behavior\s+1\n", captured.err)

    store = TableStore(spark, config_in(tmp_path).tables)
    assert store.read("events").count() == 3


def test_a_failing_job_exits_1(spark, capsys, tmp_path):
    missing = tmp_path / "raw" / "missing.csv"
    argv = ["ingest", *_job_args(tmp_path, "source.kind=taobao", f'source.taobao.paths=["{missing}"]')]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert "r2led ingest failed" in err and str(missing) in err
    # Nothing written but the run lock a stage command takes (and released).
    assert [p.name for p in (tmp_path / "tables").iterdir()] == [LOCK_TABLE]


# ---- --config: your own file, for every command and every benchmark's dataset envs --------------

REQUIRED_OPTIONS = {"tune": ["--model", "din"]}
ALL_COMMANDS = ([[name, *REQUIRED_OPTIONS.get(name, [])] for name in cli.COMMANDS]
                + [["report", name] for name in cli.REPORTS] + [["benchmark", name] for name in cli.BENCHMARKS])


@pytest.mark.parametrize("command", ALL_COMMANDS, ids=lambda c: " ".join(c[:2]) if c[0] in ("report", "benchmark") else c[0])
def test_every_command_loads_its_config_file_and_names_it_in_errors(command, capsys, tmp_path):
    own = tmp_path / "my.yaml"
    own.write_text("retrieval:\n  kk: 3\n", encoding="utf-8")
    assert cli.main([*command, "--config", str(own)]) == 2
    err = capsys.readouterr().err
    assert f"config error: {own}: retrieval.kk: unknown config key" in err
    assert cli.main([*command, "--config", str(tmp_path / "absent.yaml")]) == 2
    assert f"config file {tmp_path / 'absent.yaml'} not found" in capsys.readouterr().err


def test_a_commands_config_file_reaches_the_job(spark, monkeypatch, capsys, tmp_path):
    """`r2led ingest --config my.yaml`: the job gets base ← my.yaml ← --set, no env layer (the test's session,
    whatever the file says about Spark; the stage takes its run lock in it)."""
    import jobs.ingest.ingest
    import jobs.runtime.spark_runtime

    seen = []
    monkeypatch.setattr(jobs.runtime.spark_runtime, "get_spark", lambda config: spark)
    monkeypatch.setattr(jobs.ingest.ingest, "run", lambda session, config, **flags: seen.append((session, config, flags)))
    own = tmp_path / "my.yaml"
    own.write_text(f"workspace:\n  root: {tmp_path}\nsource:\n  kind: taobao\n  taobao:\n"
                   f"    paths: [{tmp_path}/logs.csv]\ningest:\n  max_reject_share: 0.3\n", encoding="utf-8")
    assert cli.main(["ingest", "--config", str(own), "--set", "ingest.max_reject_share=0.4", "--date", "2024-01-02"]) == 0
    ((session, config, flags),) = seen
    assert session is spark and flags == {"date": "2024-01-02", "catch_up": False}  # typed keywords
    assert config.env == "base"  # --config without --env: base.yaml alone
    assert config.source.kind == "taobao" and config.source.taobao.paths == (f"{tmp_path}/logs.csv",)
    assert config.ingest.max_reject_share == 0.4  # --set over the file
    assert config.tables.root == f"{tmp_path}/tables"  # ${workspace.root} from the file
    assert f"# r2led ingest: resolved config (env=base, config={own})" in capsys.readouterr().out

    seen.clear()
    assert cli.main(["ingest", "--config", str(own), "--env", "tiny"]) == 0
    assert seen[0][1].env == "tiny" and seen[0][1].spark.master == "local[2]" and seen[0][1].source.kind == "taobao"


def _benchmark_args(module, argv: list[str]):
    from jobs.runtime.entrypoint import job_parser

    parser = job_parser("r2led benchmark", "")
    module._add_arguments(parser)
    return parser.parse_args(argv)


def test_benchmark_models_loads_its_dataset_envs_with_the_commands_config_file_and_conf_dir(tmp_path):
    from jobs.benchmarks import models
    from jobs.runtime.entrypoint import ConfigSource

    own = tmp_path / "my.yaml"
    own.write_text("model:\n  embedding_dim: 8\n  attention_heads: 2\n", encoding="utf-8")
    folder = tmp_path / "bench" / "oracle"

    plain = _benchmark_args(models, [])
    assert models.dataset_envs(ConfigSource.of(plain), plain.envs, models.DEFAULT_ENVS) == ["oracle", "local"]
    assert models.dataset_config(ConfigSource.of(plain), "oracle", folder, []).model.embedding_dim != 8

    mine = _benchmark_args(models, ["--config", str(own), "--envs", "oracle", "local"])
    assert models.dataset_envs(ConfigSource.of(mine), mine.envs, models.DEFAULT_ENVS) == ["oracle", "local"]
    oracle = models.dataset_config(ConfigSource.of(mine), "oracle", folder, ["training.epochs=1"])
    assert (oracle.env, oracle.source.kind, oracle.model.embedding_dim, oracle.training.epochs) == (
        "oracle", "synthetic", 8, 1)  # the env's data, the user's model, the benchmark's override
    assert oracle.tables.root == str(folder / "tables") and oracle.source.synthetic.path == str(folder / "raw")
    # Never the tables built without the file:
    assert models.dataset_label(ConfigSource.of(mine), "oracle") == "oracle+my"

    # With --config and no --envs, the data to measure is the command's own: base ← my.yaml.
    only = _benchmark_args(models, ["--config", str(own)])
    assert models.dataset_envs(ConfigSource.of(only), only.envs, models.DEFAULT_ENVS) == ["base"]
    assert _benchmark_args(models, ["--config", str(own), "--envs"]).envs == []  # latency only

    # --conf-dir reaches the dataset envs too.
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "base.yaml").write_text("sequences:\n  split:\n    mode: last_n\ntraining:\n  batch_size: 12\n",
                                    encoding="utf-8")
    (conf / "team.yaml").write_text("training:\n  patience: 9\n", encoding="utf-8")
    team = _benchmark_args(models, ["--conf-dir", str(conf), "--config", str(own), "--envs", "team"])
    loaded = models.dataset_config(ConfigSource.of(team), "team", folder, [])
    assert (loaded.training.batch_size, loaded.training.patience, loaded.model.embedding_dim) == (12, 9, 8)


def test_benchmark_sids_quality_envs_follow_the_commands_config_file(tmp_path):
    from jobs.benchmarks import sids
    from jobs.runtime.entrypoint import ConfigSource, dataset_envs, load_dataset_config

    own = tmp_path / "my.yaml"
    own.write_text("codebook:\n  levels: 2\n", encoding="utf-8")
    plain = _benchmark_args(sids, [])
    assert dataset_envs(ConfigSource.of(plain), plain.quality_envs, sids.QUALITY_ENVS) == ["local", "synthetic"]
    mine = _benchmark_args(sids, ["--config", str(own), "--env", "tiny"])
    assert dataset_envs(ConfigSource.of(mine), mine.quality_envs, sids.QUALITY_ENVS) == ["tiny"]
    loaded = load_dataset_config(ConfigSource.of(mine), "synthetic", [])
    assert (loaded.env, loaded.codebook.levels) == ("synthetic", 2)


@pytest.mark.parametrize("module_name", sorted({module for table in (cli.COMMANDS, cli.REPORTS, cli.BENCHMARKS)
                                                for module, _ in table.values()}))
def test_every_commands_flags_are_typed_keyword_arguments_of_its_run(module_name):
    """`main` alone parses: each flag's dest is a keyword-only parameter of the job's `run`, whose own
    default agrees with the flag's, so a library caller and the command line run the same job."""
    import importlib
    import inspect

    from jobs.runtime.entrypoint import flags_and_source, job_parser, own_flags

    module = importlib.import_module(module_name)
    parser = job_parser("r2led job", "")
    for name in ("add_arguments", "_add_arguments"):
        if hasattr(module, name):
            getattr(module, name)(parser)
    args = parser.parse_args(["--model", "din"] if module_name == "jobs.training.tune" else [])
    parameters = inspect.signature(module.run).parameters
    keywords = flags_and_source(args) if "source" in parameters else own_flags(args)
    inspect.signature(module.run).bind("spark", "config", **keywords)  # raises on a flag run does not take
    for name, value in keywords.items():
        parameter = parameters[name]
        assert parameter.kind is inspect.Parameter.KEYWORD_ONLY, (module_name, name)
        if parameter.default is not inspect.Parameter.empty and name != "source":
            assert value == parameter.default or list(value) == list(parameter.default), (module_name, name, value)
