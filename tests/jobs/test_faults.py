"""The fault plan a dated run carries (`--inject-failure`) and the request it is part of, without Spark."""

import pytest

from jobs.orchestration.nightly import RunRequest, check_failure
from jobs.runtime import commit_guard
from jobs.runtime.faults import FaultPlan, InjectedFailure


def test_a_plan_fails_at_its_nth_commit_inside_its_stage_once_and_only_while_armed():
    plan = FaultPlan("retrieve", 2)
    commit_guard.after_commit("a write outside any run")  # nothing armed: nothing counts
    with plan.armed():
        with plan.inside("sequences"):
            for _ in range(3):
                commit_guard.after_commit("merge into samples")  # another stage's commits do not count
        with plan.inside("retrieve"):
            commit_guard.after_commit("write of route_candidates")
            with pytest.raises(InjectedFailure, match="'retrieve' after merge into route_candidates"):
                commit_guard.after_commit("merge into route_candidates")
        with plan.inside("retrieve"):
            commit_guard.after_commit("merge into route_candidates")  # it fires once
    with plan.inside("retrieve"):
        commit_guard.after_commit("write of route_candidates")  # disarmed when the run ended


def test_a_plan_outside_its_stage_block_never_fires_and_two_runs_plans_are_their_own():
    first, second = FaultPlan("train"), FaultPlan("train", 3)
    with first.armed(), second.armed():
        commit_guard.after_commit("model registration")  # no stage running
        with first.inside("train"):
            with pytest.raises(InjectedFailure):
                commit_guard.after_commit("model registration")
    assert second._seen == 0  # the other plan's stage was not running


@pytest.mark.parametrize("text", ["retrieve:0", "nosuch", "retrieve:x"])
def test_inject_failure_values_that_cannot_work_are_refused(text):
    with pytest.raises(Exception, match="is not STAGE\\[:N\\]"):
        check_failure(text)
    with pytest.raises(ValueError):
        FaultPlan("retrieve", 0)


def test_a_run_request_checks_its_flags_together_before_any_run():
    request = RunRequest(day="2024-01-19", skip_days=("2024-01-17", "2024-01-16", "2024-01-17"),
                         inject_failure=("train", 2))
    assert request.skip_days == ("2024-01-16", "2024-01-17")
    assert request.fault_plan() == FaultPlan("train", 2)
    assert RunRequest(day="2024-01-19").fault_plan() is None
    assert RunRequest(day="2024-01-19", backfill=True).command() == "pipeline --date 2024-01-19 --backfill"
    with pytest.raises(ValueError, match="is not a calendar date"):
        RunRequest(day="2024-13-01")
    with pytest.raises(ValueError, match=r"unknown stage\(s\) \['nosuch'\]"):
        RunRequest(day="2024-01-19", force_stages=("nosuch",))
    with pytest.raises(ValueError, match="--backfill runs every data stage"):
        RunRequest(day="2024-01-19", backfill=True, until="retrieve")
    with pytest.raises(AttributeError):
        request.day = "2024-01-20"  # frozen
