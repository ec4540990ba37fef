"""Peak resident memory of this process, the Spark JVM and its Python workers, sampled from /proc
(Linux) by a background thread while a block of work runs.

The Python workers are every python process under the JVM (PySpark's daemon forks one per task
slot); their memory is summed, since they run at once. On another OS, or where /proc is not
readable, every figure is None.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


@dataclass
class PeakMemory:
    driver_python_mb: float | None = None
    jvm_mb: float | None = None
    python_workers_mb: float | None = None


def _rss_bytes(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return None


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        tree.setdefault(parent, []).append(int(entry.name))
    return tree


def _descendants(tree: dict[int, list[int]], pid: int) -> list[int]:
    found, stack = [], list(tree.get(pid, []))
    while stack:
        child = stack.pop()
        found.append(child)
        stack.extend(tree.get(child, []))
    return found


def _is_python(pid: int) -> bool:
    try:
        return "python" in Path(f"/proc/{pid}/comm").read_text()
    except OSError:
        return False


class MemorySampler:
    """`with MemorySampler(jvm_pid) as sampler: ...` then `sampler.peak`."""

    def __init__(self, jvm_pid: int | None, interval_s: float = 0.5):
        self.jvm_pid = jvm_pid
        self.interval_s = interval_s
        self.peak = PeakMemory()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._available = Path("/proc/self/statm").exists()

    def __enter__(self) -> "MemorySampler":
        if self._available:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._available:
            self._stop.set()
            self._thread.join()
            self._sample()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def _sample(self) -> None:
        def most(current: float | None, value: int | None) -> float | None:
            if value is None:
                return current
            return max(current or 0.0, value / 2**20)

        self.peak.driver_python_mb = most(self.peak.driver_python_mb, _rss_bytes(os.getpid()))
        if self.jvm_pid is None:
            return
        self.peak.jvm_mb = most(self.peak.jvm_mb, _rss_bytes(self.jvm_pid))
        workers = [pid for pid in _descendants(_children(), self.jvm_pid) if _is_python(pid)]
        total = sum(rss for rss in (_rss_bytes(pid) for pid in workers) if rss is not None)
        self.peak.python_workers_mb = most(self.peak.python_workers_mb, total)


def jvm_pid(spark) -> int | None:
    """The pid of the session's JVM (driver and, in local mode, executors)."""
    try:
        name = spark.sparkContext._jvm.java.lang.management.ManagementFactory.getRuntimeMXBean().getName()
        return int(str(name).split("@", 1)[0])
    except Exception:  # Spark Connect or an unusual JVM: memory of the JVM is then not reported
        return None
