"""The Java 17 home Spark 4.0 runs on: the one discovery the Makefile (`python3 jobs/runtime/java_home.py`
prints it) and the tests share.

`JAVA_HOME` wins when set. Otherwise the first folder under /usr/lib/jvm (Debian and Ubuntu packages,
Temurin) that holds `bin/java` and whose `release` file says Java 17, preferring the distribution's
own `java-17-openjdk*`; hidden files (Debian's `.java-*.jinfo`) and JDKs of other versions are skipped.
Standard library only: the Makefile runs it before any environment is installed.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

JVM_ROOT = Path("/usr/lib/jvm")
PREFERRED = ("java-17-openjdk", "temurin-17")


def java_version(home: Path) -> str | None:
    """The JAVA_VERSION a JDK's `release` file names, or None."""
    try:
        match = re.search(r'^JAVA_VERSION="([^"]+)"', (home / "release").read_text(), re.MULTILINE)
    except OSError:
        return None
    return match.group(1) if match else None


def java17_home(root: Path = JVM_ROOT) -> str | None:
    if os.environ.get("JAVA_HOME"):
        return os.environ["JAVA_HOME"]
    if not root.is_dir():
        return None
    homes = [p for p in sorted(root.iterdir()) if not p.name.startswith(".") and (p / "bin" / "java").is_file()
             and (java_version(p) or "").split(".")[0] == "17"]
    homes.sort(key=lambda p: next((i for i, prefix in enumerate(PREFERRED) if p.name.startswith(prefix)),
                                  len(PREFERRED)))
    return str(homes[0]) if homes else None


if __name__ == "__main__":
    found = java17_home()
    if found is None:
        print(f"no Java 17 under {JVM_ROOT}; set JAVA_HOME", file=sys.stderr)
        sys.exit(1)
    print(found)
