"""The dated pipeline on a real Spark standalone cluster: a master and two one-core workers on
127.0.0.1 (`deploy/cluster.sh`), executors in their own JVMs with their own Python workers, the
wheel on --py-files, training as two TorchDistributor barrier tasks on the executors.

One drill, end to end through deploy/submit.sh: `pipeline --date 2024-01-18` while the test kills
one executor's process (its pid found through worker 1's work folder) as soon as a retrieve job
runs, and kills worker 2 (with its executor) once training runs. Retrieve's tasks are retried on
the executors left and the run goes on; training, which needs both task slots at once, ends the
run with a clear error. With the worker back, the same command resumes at train (the ledger) and
finishes. Every data table then equals the same dated run on the session's local[2], row for row,
and the model's test AUC is within a stated tolerance of the same two-rank training on local[2]. Every process the cluster started is
gone afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from jobs.orchestration.ledger import RunLedger
from jobs.runtime.tables import TABLES, TableStore
from jobs.training import train
from r2led_model.config import split_as_of
from tests.helpers import IVY_DIR, NIGHTLY_DAY1, NIGHTLY_FAST, REPO, config_in, table_snapshot
from tests.spark_submit_support import build_wheel, run_command, submit_env, tail

CLUSTER_SH = REPO / "deploy" / "cluster.sh"
SUBMIT_SH = REPO / "deploy" / "submit.sh"
# Tables the model does not shape (predictions come from the model; the ledger and lock are the run's own).
# candidate_scores: written only by `score --candidates`, never by the pipeline.
DATA_TABLES = sorted(set(TABLES) - {"predictions", "pipeline_runs", "pipeline_lock", "candidate_scores"})
# The same two ranks with the same shards and seeds, on executors or as local processes: the same
# steps up to the order of floating-point work inside each process.
AUC_TOLERANCE = 0.005


def free_port_block(size: int) -> int:
    """The first of `size` consecutive free TCP ports on 127.0.0.1."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = probe.getsockname()[1]
        if base + size > 65000:
            continue
        sockets = []
        try:
            for port in range(base, base + size):
                s = socket.socket()
                s.bind(("127.0.0.1", port))
                sockets.append(s)
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError("no block of free ports")


class Cluster:
    def __init__(self, folder: Path):
        self.folder = folder
        base = free_port_block(4)
        self.port, self.ui_port = base, base + 1  # workers' web UIs: ui_port + 1, + 2
        self.driver_ui_port = free_port_block(1)
        self.env = {**submit_env(), "R2LED_CLUSTER_DIR": str(folder), "R2LED_CLUSTER_PORT": str(self.port),
                    "R2LED_CLUSTER_UI_PORT": str(self.ui_port), "R2LED_WORKER_MEMORY": "1536m",
                    "R2LED_WORKER_TIMEOUT_S": "10"}

    @property
    def master(self) -> str:
        return f"spark://127.0.0.1:{self.port}"

    def command(self, action: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(CLUSTER_SH), action], env=self.env, capture_output=True, text=True, timeout=180,
                              check=False)

    def recorded_pids(self) -> dict[str, int]:
        return {p.stem: int(p.read_text()) for p in (self.folder / "pids").glob("*.pid")}

    def executor_pids(self, worker: int) -> list[int]:
        """Executor JVMs launched by worker `worker`: their working folder is inside its work folder."""
        work = (self.folder / f"work-{worker}").resolve()
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
                if "CoarseGrainedExecutorBackend" in cmdline and Path(os.readlink(entry / "cwd")).is_relative_to(work):
                    found.append(int(entry.name))
            except OSError:
                continue
        return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    cluster = Cluster(tmp_path_factory.mktemp("cluster"))
    started = cluster.command("up")
    assert started.returncode == 0 and cluster.master in started.stdout, started.stdout + started.stderr
    pids = cluster.recorded_pids()
    assert set(pids) == {"master", "worker-1", "worker-2"}
    try:
        yield cluster
    finally:
        children = {pid for worker in (1, 2) for pid in cluster.executor_pids(worker)}
        stopped = cluster.command("down")
        assert stopped.returncode == 0, stopped.stderr
        # Every process it started (and the executors they launched) is gone.
        assert not [pid for pid in {*pids.values(), *cluster.recorded_pids().values(), *children} if _alive(pid)]


class Drill(threading.Thread):
    """Watches the driver's REST API; kills an executor of worker 1 while a retrieve job runs and all
    of worker 2 while a training job runs (each once)."""

    def __init__(self, cluster: Cluster):
        super().__init__(daemon=True)
        self.cluster = cluster
        self.killed: dict[str, list[int]] = {}
        self.done = threading.Event()

    def running_groups(self) -> set[str]:
        base = f"http://127.0.0.1:{self.cluster.driver_ui_port}/api/v1/applications"
        try:
            apps = json.load(urllib.request.urlopen(base, timeout=2))
            jobs = json.load(urllib.request.urlopen(f"{base}/{apps[0]['id']}/jobs?status=running", timeout=2))
        except (OSError, ValueError, IndexError, KeyError):
            return set()  # the driver is not up yet, or between jobs
        return {job.get("jobGroup", "") for job in jobs}

    def run(self) -> None:
        while not self.done.is_set() and len(self.killed) < 2:
            groups = self.running_groups()
            if "r2led-retrieve" in groups and "retrieve" not in self.killed:
                executors = self.cluster.executor_pids(1)
                for pid in executors:
                    os.kill(pid, signal.SIGKILL)
                self.killed["retrieve"] = executors
            if "r2led-train" in groups and "train" not in self.killed:
                worker = self.cluster.recorded_pids()["worker-2"]
                os.killpg(worker, signal.SIGKILL)  # the worker, its executor and their Python workers
                self.killed["train"] = [worker]
            time.sleep(0.1)


def submit_pipeline(cluster: Cluster, wheel: Path, root: Path, *extra: str) -> subprocess.CompletedProcess:
    opts = " ".join([
        f"--master {cluster.master}", "--conf spark.executor.cores=1", "--conf spark.cores.max=2",
        "--conf spark.executor.memory=1g", "--conf spark.ui.enabled=true",
        f"--conf spark.ui.port={cluster.driver_ui_port}",
        # Start once both executors are registered; a lost task is retried on the executors left; a
        # barrier stage without enough slots gives up after 20 s.
        "--conf spark.scheduler.minRegisteredResourcesRatio=1.0",
        "--conf spark.scheduler.maxRegisteredResourcesWaitingTime=90s",
        "--conf spark.task.maxFailures=4",
        "--conf spark.scheduler.barrier.maxConcurrentTasksCheck.maxFailures=10",
        "--conf spark.scheduler.barrier.maxConcurrentTasksCheck.interval=2s",
    ])
    args = ["pipeline", "--env", "tiny", "--date", NIGHTLY_DAY1, "--set", f"workspace.root={root}",
            "--set", f"spark.ivy_dir={IVY_DIR}", "--set", "training.num_processes=2",
            *[a for o in NIGHTLY_FAST for a in ("--set", o)], *extra]
    env = {**cluster.env, "R2LED_WHEEL": str(wheel), "R2LED_IVY_DIR": str(IVY_DIR), "R2LED_SUBMIT_OPTS": opts}
    return run_command([str(SUBMIT_SH), *args], root, env)


@pytest.mark.slow  # a cluster, two spark-submits: minutes
def test_the_dated_pipeline_on_a_cluster_survives_a_lost_executor_and_resumes_after_a_lost_worker(
        spark, cluster, nightly_day1, tmp_path_factory):
    wheel = build_wheel(tmp_path_factory.mktemp("cluster-wheel"))
    root = tmp_path_factory.mktemp("cluster-run") / "workspace"
    shutil.copytree(nightly_day1 / "raw", root / "raw")  # the same generated logs
    drill = Drill(cluster)
    drill.start()
    try:
        first = submit_pipeline(cluster, wheel, root)
    finally:
        drill.done.set()
        drill.join()
    output = first.stdout + first.stderr
    assert drill.killed.get("retrieve"), f"no executor was killed during retrieve:\n{tail(first)}"
    assert drill.killed.get("train"), f"worker 2 was not killed during training:\n{tail(first)}"
    assert first.returncode == 1, tail(first)
    assert "training under TorchDistributor (2 processes on spark://" in output and "re-run the same command" in output
    store = TableStore(spark, config_in(root).tables)
    stands = {r.stage: r.status for r in RunLedger(store).state() if r.run_date == NIGHTLY_DAY1}
    assert stands["retrieve"] == stands["build-training-set"] == "done" and stands["train"] == "failed"

    restarted = cluster.command("up")  # worker 2 again (the master and worker 1 are still up)
    assert restarted.returncode == 0, restarted.stderr
    second = submit_pipeline(cluster, wheel, root)
    assert second.returncode == 0, tail(second)
    stands = {r.stage: r.status for r in RunLedger(store).state() if r.run_date == NIGHTLY_DAY1}
    assert set(stands.values()) == {"done"}
    assert "build-training-set  skipped" in second.stdout

    local = TableStore(spark, config_in(nightly_day1).tables)
    for table in DATA_TABLES:
        assert table_snapshot(store, table) == table_snapshot(local, table), table
    assert store.read("predictions").count() == local.read("predictions").count() > 0

    # The model: the same two-rank training on local[2] (TorchDistributor's local processes), on a
    # copy of the same tables, against the two barrier tasks on the executors.
    ledger = {r.stage: r for r in RunLedger(store).state()}
    on_cluster = ledger["train"].detail["test_auc"]
    copy = tmp_path_factory.mktemp("local-two-ranks") / "workspace"
    shutil.copytree(nightly_day1, copy)
    two_ranks = split_as_of(config_in(copy, *NIGHTLY_FAST, "training.num_processes=2",
                                      "registry.model_name=two_ranks"), NIGHTLY_DAY1)
    on_local = train.train(spark, two_ranks).test["auc"]
    assert abs(on_cluster - on_local) <= AUC_TOLERANCE, (on_cluster, on_local)
