"""`r2led` driven in-process through `jobs.cli.main(argv)`: usage and exit codes, config errors
that name their key before any Spark work, and a real ingest whose tables we then read.

The `spark` fixture is requested wherever a job runs, so the CLI's `get_spark` reuses the
session already running (getOrCreate) instead of starting a second JVM.
"""

from __future__ import annotations

import logging
import re

import pytest

from jobs import cli
from jobs.tables import TableStore
from tests.conftest import IVY_DIR, config_in
from tests.helpers import write_lines

TAOBAO = [
    "1,100,10,pv,1700000000",
    "1,101,10,cart,1700000100",
    "2,100,10,buy,1700000200",
    "2,100,10,like,1700000300",  # unknown behaviour: rejected
]


@pytest.fixture(autouse=True)
def restore_logging():
    """Jobs call logging.basicConfig(force=True) on stderr; put the root logger back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
    for handler in handlers:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(level)


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


def test_config_errors_exit_2_and_name_the_key(capsys, tmp_path):
    assert cli.main(["ingest", *_job_args(tmp_path, "sequences.max_stord=3")]) == 2
    captured = capsys.readouterr()
    assert "config error" in captured.err and "sequences.max_stord" in captured.err
    assert "resolved config" not in captured.out  # it stopped before printing or running anything

    assert cli.main(["ingest", *_job_args(tmp_path, "sequences.max_stored=0")]) == 2
    assert "sequences.max_stored: must be positive" in capsys.readouterr().err

    assert cli.main(["ingest", "--env", "nosuchenv"]) == 2
    err = capsys.readouterr().err
    assert "unknown env 'nosuchenv'" in err and "tiny" in err  # lists the known envs
    assert not (tmp_path / "tables").exists()


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
    assert not (tmp_path / "tables").exists()
