"""A registered model served by `mlflow models serve` on a free loopback port, for as long as a `with`
block runs: what the serving benchmark times and the serving tests call."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

STARTUP_SECONDS = 180


def free_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def served_model(uri: str, *, tracking_uri: str, registry_uri: str | None, log_path: Path) -> Iterator[str]:
    """Serve `uri` (models:/NAME/VERSION) in this interpreter's environment (`--env-manager local`), wait
    until it answers /ping, yield its base URL, and stop it on exit. The server's output goes to
    `log_path`, whose tail a failed start raises with."""
    port = free_loopback_port()
    # MLflow starts the server as `uvicorn` on PATH: this interpreter's own scripts come first.
    scripts = str(Path(sys.executable).parent)
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "MLFLOW_REGISTRY_URI": registry_uri or tracking_uri,
           "PATH": os.pathsep.join([scripts, os.environ.get("PATH", "")])}
    with open(log_path, "w", encoding="utf-8") as sink:
        server = subprocess.Popen([sys.executable, "-m", "mlflow", "models", "serve", "-m", uri, "--env-manager",
                                   "local", "-h", "127.0.0.1", "-p", str(port)],
                                  env=env, stdout=sink, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while not _answers(f"{base}/ping"):
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mlflow models serve {uri} did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        yield base
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False
