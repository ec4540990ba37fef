"""Running jobs through a real spark-submit from tests: the environment, the wheel (the `make wheel`
command into a temp folder), deploy/submit.sh and plain spark-submit (never imported by production code)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from jobs.cli import COMMANDS
from jobs.runtime.java_home import java17_home
from tests.helpers import IVY_DIR, REPO, expected_delta_package

DELTA_PACKAGE = expected_delta_package()
SUBMIT_SH = REPO / "deploy" / "submit.sh"
JOB_TIMEOUT_S = 600  # a 2-core machine under load: JVM start + Ivy resolve + the job


def java_home() -> str:
    found = java17_home()
    assert found, "no Java 17 under /usr/lib/jvm; set JAVA_HOME"
    return found


def spark_submit() -> str:
    beside_python = Path(sys.executable).parent / "spark-submit"
    if beside_python.is_file():
        return str(beside_python)
    import pyspark

    return str(Path(pyspark.__file__).parent / "bin" / "spark-submit")


def submit_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        JAVA_HOME=java_home(),
        SPARK_LOCAL_IP="127.0.0.1",
        PYSPARK_PYTHON=sys.executable,
        PYSPARK_DRIVER_PYTHON=sys.executable,
        # The wheel is a zip on --py-files: the config loader needs conf/ as a real folder.
        R2LED_CONF_DIR=str(REPO / "conf"),
    )
    env.update(extra)
    return env


def run_command(cmd: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    # cwd is the temp workspace: Spark's own leftovers (spark-warehouse, derby.log) stay out of the repo.
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=JOB_TIMEOUT_S,
                          check=False)


def tail(result: subprocess.CompletedProcess, lines: int = 40) -> str:
    text = (result.stdout + "\n" + result.stderr).splitlines()
    return "\n".join(text[-lines:])


def submit_job(job: str, wheel: Path, root: Path, *job_args: str) -> subprocess.CompletedProcess:
    """The documented command: spark-submit --packages <delta> --conf ... --py-files <wheel>
    jobs/<component>/<job>.py ... (the job's module file, as `jobs.cli.COMMANDS` names it)."""
    module = COMMANDS[job][0]  # e.g. jobs.ingest.ingest
    cmd = [
        spark_submit(), "--master", "local[2]",
        "--packages", DELTA_PACKAGE,
        "--conf", f"spark.jars.ivy={IVY_DIR}",
        "--conf", "spark.sql.extensions=io.delta.sql.DeltaSparkSessionExtension",
        "--conf", "spark.sql.catalog.spark_catalog=org.apache.spark.sql.delta.catalog.DeltaCatalog",
        "--py-files", str(wheel),
        str(REPO.joinpath(*module.split(".")).with_suffix(".py")),
        "--env", "tiny", "--set", "spark.mode=submit",
        "--set", f"workspace.root={root}", "--set", f"spark.ivy_dir={IVY_DIR}",
        *job_args,
    ]
    return run_command(cmd, root, submit_env())


def submit_sh(wheel: Path, root: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return run_command([str(SUBMIT_SH), *args], root, submit_env(
        R2LED_WHEEL=str(wheel), R2LED_IVY_DIR=str(IVY_DIR), R2LED_SUBMIT_OPTS="--master local[2]", **env))


def build_wheel(src: Path) -> Path:
    """`make wheel` into `src`/dist, from a copy of the sources there (no build/ left in the repo)."""
    src.mkdir(parents=True, exist_ok=True)
    for name in ("setup.py", "README.md"):
        shutil.copy2(REPO / name, src / name)
    for name in ("r2led_model", "jobs", "conf"):
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dist = src / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(dist), str(src)], check=True, timeout=300)
    (built,) = dist.glob("r2led-*-py3-none-any.whl")
    return built
