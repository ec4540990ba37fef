"""`--date` is a strict YYYY-MM-DD calendar day for every command that takes it: anything else is a
usage error (exit 2) before a session starts or a table changes, and the library functions below
`main` refuse it too, so no predicate or path is ever built from unchecked text."""

from __future__ import annotations

import subprocess
import sys

import pytest

from jobs.ingest import ingest
from jobs.orchestration import pipeline
from jobs.orchestration.ledger import LEDGER
from jobs.orchestration.nightly import run_date
from jobs.registry import score
from jobs.runtime.dates import parse_day
from jobs.runtime.tables import TableStore
from tests.helpers import IVY_DIR, REPO, config_in, rows

HOSTILE = "x' OR '1'='1"
BAD = [HOSTILE, "2024-02-30", "2023-02-29", "20240116", "2024-W03-2", "2024-1-5", " 2024-01-05", "2024-01-05\n",
       "../../etc", "٢٠٢٤-٠١-٠٥", "", "yesterday!"]


def test_parse_day_accepts_only_real_calendar_days_in_canonical_form():
    assert parse_day("2024-02-29") == "2024-02-29"
    assert parse_day("1999-12-31") == "1999-12-31"
    for text in BAD:
        with pytest.raises(ValueError, match="is not a (YYYY-MM-DD|calendar) date"):
            parse_day(text)
    with pytest.raises(ValueError, match="is not a YYYY-MM-DD date"):
        parse_day(None)


def _argv(root, *extra: str) -> list[str]:
    return ["--env", "tiny", "--set", f"workspace.root={root}", "--set", f"spark.ivy_dir={IVY_DIR}", *extra]


@pytest.fixture
def scored(spark, tmp_path):
    """A workspace whose `predictions` holds two scored days (hand-made rows)."""
    config = config_in(tmp_path)
    store = TableStore(spark, config.tables)
    data = [(1, 10, 100, 1705363200, 0.25, "m", "1", "2024-01-16"),
            (2, 11, 101, 1705449600, 0.75, "m", "1", "2024-01-17")]
    schema = ("sample_id BIGINT, user_id BIGINT, item_id BIGINT, ts BIGINT, score DOUBLE, model_name STRING, "
              "model_version STRING, score_date STRING")
    store.overwrite("predictions", spark.createDataFrame(data, schema))
    return config, store


def test_a_hostile_score_date_exits_2_and_changes_no_table(spark, scored, tmp_path, capsys):
    config, store = scored
    before, version = rows(store.read("predictions")), store.version("predictions")
    # The real command line, in its own process: the exit status the operator's shell sees.
    done = subprocess.run([sys.executable, str(REPO / "jobs" / "cli.py"), "score", *_argv(tmp_path, "--date", HOSTILE)],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "--date: \"x' OR '1'='1\" is not a YYYY-MM-DD date" in done.stderr
    assert "resolved config" not in done.stdout  # refused while parsing, before config, session or tables
    # Below `main`, the keyword API refuses it as well, before any model is looked up.
    with pytest.raises(ValueError, match="is not a YYYY-MM-DD date"):
        score.score(spark, config, date=HOSTILE)
    assert rows(store.read("predictions")) == before and store.version("predictions") == version


@pytest.mark.parametrize("main", [score.main, ingest.main, pipeline.main], ids=["score", "ingest", "pipeline"])
@pytest.mark.parametrize("bad", [HOSTILE, "2024-02-30", "20240116"])
def test_every_command_refuses_a_bad_date_before_writing(scored, tmp_path, capsys, main, bad):
    _, store = scored
    before = rows(store.read("predictions"))
    with pytest.raises(SystemExit) as exit_:
        main(_argv(tmp_path, "--date", bad))
    assert exit_.value.code == 2
    assert "--date: " in capsys.readouterr().err
    assert rows(store.read("predictions")) == before
    assert sorted(p.name for p in (tmp_path / "tables").iterdir()) == ["predictions"]


def test_the_library_calls_below_main_refuse_a_bad_date(spark, tmp_path):
    config = config_in(tmp_path)
    with pytest.raises(ValueError, match="is not a YYYY-MM-DD date"):
        ingest.ingest_day(spark, config, "../2024-01-16")
    with pytest.raises(ValueError, match="is not a calendar date"):
        run_date(spark, config, "2024-13-01")
    assert not (tmp_path / "tables").exists() and not TableStore(spark, config.tables).exists(LEDGER)


# ---- dates from the future, and which flag a bad date came from -------------------------------------


def _parse(add_arguments, argv: list[str]):
    from jobs.runtime.entrypoint import job_parser

    parser = job_parser("r2led job", "")
    add_arguments(parser)
    return parser.parse_args(argv)


@pytest.mark.parametrize("add_arguments", [score.add_arguments, ingest._add_arguments, pipeline.add_arguments],
                         ids=["score", "ingest", "pipeline"])
def test_a_date_in_the_future_is_a_usage_error(add_arguments, capsys):
    with pytest.raises(SystemExit) as exit_:
        _parse(add_arguments, ["--date", "2099-12-31"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "argument --date: '2099-12-31' is in the future (after tomorrow, " in err
    assert "a day in the future has no data yet" in err


def test_every_command_main_refuses_a_future_date_before_loading_config(capsys, tmp_path):
    for main in (score.main, ingest.main, pipeline.main):
        with pytest.raises(SystemExit) as exit_:
            main(_argv(tmp_path, "--date", "2099-12-31"))
        assert exit_.value.code == 2
        captured = capsys.readouterr()
        assert "'2099-12-31' is in the future" in captured.err and "resolved config" not in captured.out
    assert not (tmp_path / "tables").exists()


def test_today_and_tomorrow_utc_are_accepted_the_day_after_is_not(monkeypatch, capsys):
    import datetime as dt

    from jobs.runtime import dates

    monkeypatch.setattr(dates, "utc_today", lambda: dt.date(2024, 2, 28))
    # Tomorrow in UTC is today somewhere east of it: a scheduler there may name it.
    for day in ("2024-02-27", "2024-02-28", "2024-02-29"):
        assert _parse(pipeline.add_arguments, ["--date", day]).date == day
    with pytest.raises(SystemExit):
        _parse(pipeline.add_arguments, ["--date", "2024-03-01"])
    assert "argument --date: '2024-03-01' is in the future (after tomorrow, 2024-02-29, UTC)" in capsys.readouterr().err
    assert _parse(pipeline.add_arguments, ["--date", "yesterday", "--as-of", "2024-02-29"]).as_of == "2024-02-29"


@pytest.mark.parametrize("bad, message", [
    ("2024-02-30", "'2024-02-30' is not a calendar date"),
    ("20240116", "'20240116' is not a YYYY-MM-DD date"),
    ("2099-12-31", "'2099-12-31' is in the future"),
])
def test_a_bad_as_of_is_labelled_as_of(bad, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        _parse(pipeline.add_arguments, ["--date", "yesterday", "--as-of", bad])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"argument --as-of: {message}" in err
    assert "--date" not in err.splitlines()[-1]  # the error line names only the flag it came from
