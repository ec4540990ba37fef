"""The one stage table: every reader (full run, nightly run, CLI, benchmarks) sees the same stages."""

from __future__ import annotations

import importlib
import inspect
import re

import pytest

from jobs import cli
from jobs.orchestration import nightly, pipeline
from jobs.orchestration.stages import DATA_STAGES, MODEL_STAGES, STAGE_NAMES, STAGES, stage, stages
from jobs.runtime.tables import TABLES


def test_every_stage_is_a_command_whose_run_takes_only_spark_and_config():
    for s in STAGES:
        assert cli.COMMANDS[s.name][0] == s.module
        required = [p for p in inspect.signature(s.run).parameters.values()
                    if p.default is inspect.Parameter.empty]
        assert [p.name for p in required] == ["spark", "config"], s.name


def test_the_tables_stages_write_are_contract_tables_each_written_by_one_stage():
    written = [table for s in STAGES for table in s.writes]
    assert set(written) <= set(TABLES) and len(written) == len(set(written))
    for s in STAGES:
        assert set(s.produces) <= set(s.writes), s.name
        assert all(any(table in earlier.writes for earlier in STAGES[:STAGES.index(s)]) for table in s.reads), s.name


def test_every_stage_has_one_entry_point_that_both_runs_call_and_no_orchestrator_imports_a_stage():
    for s in STAGES:
        parameters = inspect.signature(s.derive).parameters
        assert list(parameters) == ["spark", "config", "scope"], s.name
        assert parameters["scope"].kind is inspect.Parameter.KEYWORD_ONLY, s.name
    stage_modules = {s.module for s in STAGES}
    for orchestrator in (nightly, pipeline):
        imported = set(re.findall(r"^\s*(?:from|import) (jobs\.[\w.]+)", inspect.getsource(orchestrator), re.M))
        assert not imported & stage_modules, (orchestrator.__name__, imported & stage_modules)
    # Stages import no orchestrator: the shared helpers live beside them (jobs.runtime), not above them.
    for s in STAGES:
        source = inspect.getsource(importlib.import_module(s.module))
        assert "jobs.orchestration" not in source, s.module


def test_the_stage_groups_cover_the_stages_in_order():
    assert DATA_STAGES + MODEL_STAGES == STAGE_NAMES and DATA_STAGES[-1] == "build-training-set"
    assert [s.name for s in stages(("score", "ingest"))] == ["ingest", "score"]  # pipeline order, not the caller's
    with pytest.raises(ValueError, match="unknown stage 'retrain'; stages are ingest, sequences"):
        stage("retrain")
