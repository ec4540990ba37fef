"""The one Java 17 discovery the Makefile and the tests share: JAVA_HOME wins; otherwise a real Java 17
JDK folder, never a hidden .jinfo file or another version."""

from __future__ import annotations

from pathlib import Path

from jobs.runtime.java_home import java17_home


def jdk(root: Path, name: str, version: str) -> Path:
    home = root / name
    (home / "bin").mkdir(parents=True)
    (home / "bin" / "java").write_text("")
    (home / "release").write_text(f'IMPLEMENTOR="X"\nJAVA_VERSION="{version}"\n')
    return home


def test_a_java_17_folder_is_found_past_hidden_files_and_other_versions(tmp_path, monkeypatch):
    monkeypatch.delenv("JAVA_HOME", raising=False)
    (tmp_path / ".java-1.17.0-openjdk-amd64.jinfo").write_text("name=java-1.17.0-openjdk-amd64\n")
    jdk(tmp_path, "temurin-25-jdk-amd64", "25.0.1")
    jdk(tmp_path, "openjdk-17-extra", "17.0.2")
    wanted = jdk(tmp_path, "java-17-openjdk-amd64", "17.0.15")
    assert java17_home(tmp_path) == str(wanted)
    monkeypatch.setenv("JAVA_HOME", "/opt/my-jdk")
    assert java17_home(tmp_path) == "/opt/my-jdk"


def test_no_java_17_is_none(tmp_path, monkeypatch):
    monkeypatch.delenv("JAVA_HOME", raising=False)
    jdk(tmp_path, "temurin-25-jdk-amd64", "25.0.1")
    assert java17_home(tmp_path) is None
