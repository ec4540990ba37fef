"""The one loader that builds a `Config`: files, merging, overrides, coercion and the checks that name a key.

A config is ``conf/base.yaml`` deep-merged with ``conf/<env>.yaml``, then with a user's own file
(``--config my.yaml``) and then with ``--set a.b=c`` overrides, in that order. Unknown keys and wrong
types are errors that name the file (or --set) and the key path. String values may reference
``${workspace.root}`` (resolved after merging), so that every local path can live under one
workspace folder.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import yaml

from r2led_model.compat import LEGACY_MODEL_KEYS, moved_model_key_message
from r2led_model.config.schema import (CONF_DIR_ENV, Config, ConfigError, ModelConfig, _check_tree)


class _DuplicateKeyError(yaml.MarkedYAMLError):
    """A mapping names one key twice (PyYAML would silently keep the last)."""


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader whose mappings refuse a key given twice: two `source:` blocks in one file are a mistake
    that safe_load hides by dropping the first."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor` may be overridden key by key
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                earlier = first.setdefault(key, key_node)
            except TypeError:  # an unhashable key: the base constructor names it
                continue
            if earlier is not key_node:
                raise _DuplicateKeyError(
                    problem=f"duplicate key {key!r} (first at line {earlier.start_mark.line + 1}): "
                            "YAML would keep only the last",
                    problem_mark=key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


def _load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_StrictLoader)


def default_conf_dir() -> Path:
    """`conf/` beside the package in a checkout, or the copy installed with the package."""
    import os

    if os.environ.get(CONF_DIR_ENV):
        return Path(os.environ[CONF_DIR_ENV])
    here = Path(__file__).resolve().parents[1]  # the r2led_model package
    for candidate in (here.parent / "conf", here / "conf"):
        if (candidate / "base.yaml").is_file():
            return candidate
    packaged = _extract_packaged_conf()
    if packaged is not None:
        return packaged
    raise ConfigError(f"no conf/ folder found beside {here}; set {CONF_DIR_ENV}")


def _extract_packaged_conf() -> Path | None:
    """The YAML shipped inside the package when it is imported from a zip (a wheel on spark-submit's
    --py-files): copied once to a temp folder, since a zipped file has no filesystem path."""
    import importlib.resources
    import tempfile

    try:
        source = importlib.resources.files("r2led_model").joinpath("conf")
        names = [entry.name for entry in source.iterdir() if entry.name.endswith(".yaml")]
    except (FileNotFoundError, NotADirectoryError, ModuleNotFoundError):
        return None
    if "base.yaml" not in names:
        return None
    target = Path(tempfile.mkdtemp(prefix="r2led-conf-"))
    for name in names:
        (target / name).write_bytes(source.joinpath(name).read_bytes())
    return target


# `--env` when none is given: the embedded default, or, with a config file of one's own, no env layer.
DEFAULT_ENV = "local"
BASE_ENV = "base"


def resolve_env(env: str | None, config_file: str | Path | None = None) -> str:
    """The env a load uses when none is named: `local` (MovieLens-100K), or `base` with a config file.

    A user's own file is meant to describe their data; layering it over `local` would quietly keep the
    MovieLens settings it does not mention, so with a file the default is `base`: base.yaml alone.
    """
    if env is not None and env.strip():
        return env.strip()
    return BASE_ENV if config_file else DEFAULT_ENV


def load_config(
    env: str | None = None,
    overrides: Sequence[str] = (),
    conf_dir: str | Path | None = None,
    config_file: str | Path | None = None,
) -> Config:
    """base.yaml ← <env>.yaml ← `config_file` ← `key.path=value` overrides → a validated, frozen Config.

    `env` None takes `resolve_env`'s default; env `base` adds no env layer. Each layer is checked
    against the schema before it is merged, so an unknown key or a wrong type names the file (or
    the --set) it came from and the key path.
    """
    env = resolve_env(env, config_file)
    conf_dir = Path(conf_dir) if conf_dir else default_conf_dir()
    base_file, env_file = conf_dir / f"{BASE_ENV}.yaml", conf_dir / f"{env}.yaml"
    if not base_file.is_file():
        raise ConfigError(f"no {base_file}: a conf folder needs {base_file.name}")
    if not env_file.is_file():
        known = sorted(p.stem for p in conf_dir.glob("*.yaml") if p.stem != BASE_ENV)
        raise ConfigError(f"unknown env {env!r}: no {env_file} "
                          f"(known: {', '.join(known)}; or {BASE_ENV!r}: {base_file.name} alone)")
    # (file, whether it is the user's own --config file)
    files = [(base_file, False)] if env == BASE_ENV else [(base_file, False), (env_file, False)]
    if config_file:
        own = Path(config_file)
        if not own.is_file():
            looked = "" if own.is_absolute() else f" (looked at {own.resolve()})"
            raise ConfigError(f"config file {own} not found{looked}")
        files.append((own, True))
    # Start from the schema's defaults so that defaults may use ${...} placeholders too.
    merged: dict[str, Any] = Config().to_dict()
    for path, is_own in files:
        layer = _read_yaml(path, own=is_own)
        _check_layer(layer, source=str(path))
        merged = _deep_merge(merged, layer, where=str(path))
    merged["env"] = env
    for override in overrides:
        merged = _apply_override(merged, override)
    merged = _resolve_placeholders(merged, merged)
    return build_config(merged)


def with_values(config: Config, values: Mapping[str, Any]) -> Config:
    """`config` with dotted keys set (`{"training.learning_rate": 3e-4}`), validated like --set overrides."""
    merged: dict[str, Any] = config.to_dict()
    for key, value in values.items():
        nested: Any = list(value) if isinstance(value, tuple) else value
        for part in reversed(key.split(".")):
            nested = {part: nested}
        merged = _deep_merge(merged, nested, where=key)
    return build_config(merged)


def for_model(config: Config, name: str) -> Config:
    """`config` training model `name` (`ModelConfig.switched_to`: other models' sections at their defaults)."""
    return build_config(dataclasses.replace(config, model=config.model.switched_to(name)).to_dict())


def build_config(values: Mapping[str, Any]) -> Config:
    """Build a Config from plain values; unknown keys and wrong types raise ConfigError."""
    config = _build(Config, values, path="")
    _check_semantics(config)
    return config


def _read_yaml(path: Path, *, own: bool = False) -> dict[str, Any]:
    """One YAML layer as a mapping. `own`: the user's --config file, which must set something (an empty
    one is a wrong path or an unsaved editor, not a wish for the defaults)."""
    try:
        data = _load_yaml(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except _DuplicateKeyError as exc:
        mark = exc.problem_mark
        raise ConfigError(f"{path}:{mark.line + 1}:{mark.column + 1}: {exc.problem}") from None
    except yaml.MarkedYAMLError as exc:
        # Lines and columns from 1, as editors count; the context names where the broken construct began.
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        began = (f" ({exc.context} from line {exc.context_mark.line + 1})"
                 if exc.context and exc.context_mark and exc.context_mark is not mark else "")
        raise ConfigError(f"{where}: not valid YAML: {exc.problem or exc.context}{began}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if data is None:
        if own:
            raise ConfigError(f"{path}: empty config file (no keys set); give it some keys or leave out --config")
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of config sections, got {type(data).__name__}")
    return data


def _check_layer(layer: Mapping[str, Any], source: str) -> None:
    """One file's or one --set's keys and values against the schema, before merging: an error names
    `source` and the key path (`my.yaml: retrieval.kk: unknown config key`)."""
    try:
        _check_partial(Config, layer, path="")
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def _check_partial(cls: type, values: Any, path: str) -> None:
    """Like `_build`, for a layer that sets only some keys: every key known, every value of its type."""
    _refuse_unknown_keys(cls, values, path)
    hints = typing.get_type_hints(cls)
    for name, value in values.items():
        key_path = f"{path}.{name}" if path else name
        section = _section_type(hints[name])
        if section is not None and isinstance(value, Mapping):
            _check_partial(section, value, key_path)
        else:
            _coerce(hints[name], value, key_path)


def _refuse_unknown_keys(cls: type, values: Any, path: str) -> None:
    """`values` must be a mapping of `cls`'s fields: the one check of every layer and every build. An
    unknown key is an error naming its path and the keys allowed there; one that an earlier release had
    (`model.gate`) names where it went."""
    if not isinstance(values, Mapping):
        raise ConfigError(f"{path or '<root>'}: expected a mapping, got {type(values).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(str(k) for k in values if k not in names)
    if cls is ModelConfig:
        for key in unknown:
            if key in LEGACY_MODEL_KEYS:
                raise ConfigError(moved_model_key_message(key, path))
    if unknown:
        where = ", ".join(f"{path}.{k}" if path else k for k in unknown)
        raise ConfigError(f"{where}: unknown config key{'s' if len(unknown) > 1 else ''} "
                          f"(allowed here: {', '.join(sorted(names))})")


def _section_type(tp: Any) -> type | None:
    """The dataclass a field holds (`X` or `X | None`), else None."""
    if dataclasses.is_dataclass(tp):
        return tp
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        sections = [a for a in typing.get_args(tp) if dataclasses.is_dataclass(a)]
        return sections[0] if len(sections) == 1 else None
    return None


def _deep_merge(base: dict[str, Any], update: Mapping[str, Any], where: str) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _deep_merge(out[key], value, where)
        else:
            out[key] = value
    return out


def _apply_override(values: dict[str, Any], override: str) -> dict[str, Any]:
    if "=" not in override:
        raise ConfigError(f"--set {override!r}: expected key.path=value")
    key, raw = override.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"--set {override!r}: empty key segment")
    # YAML parsing gives `3` → int, `true` → bool, `[1, 2]` → list; strings stay strings.
    try:
        value = _load_yaml(raw) if raw.strip() else ""
    except _DuplicateKeyError as exc:
        raise ConfigError(f"--set {override!r}: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {override!r}: not a YAML value ({getattr(exc, 'problem', None) or exc})") from None
    nested: Any = value
    for part in reversed(parts):
        nested = {part: nested}
    _check_layer(nested, source="--set")
    return _deep_merge(values, nested, where="--set")


_PLACEHOLDER = re.compile(r"\$\{([a-z_][a-z0-9_.]*)\}")


def _resolve_placeholders(node: Any, root: Mapping[str, Any]) -> Any:
    if isinstance(node, Mapping):
        return {k: _resolve_placeholders(v, root) for k, v in node.items()}
    if isinstance(node, list):
        return [_resolve_placeholders(v, root) for v in node]
    if isinstance(node, str):

        def lookup(match: re.Match[str]) -> str:
            target: Any = root
            for part in match.group(1).split("."):
                if not isinstance(target, Mapping) or part not in target:
                    raise ConfigError(f"placeholder ${{{match.group(1)}}} names no config key")
                target = target[part]
            return str(target)

        return _PLACEHOLDER.sub(lookup, node)
    return node


def build_section(cls: type, values: Mapping[str, Any], path: str) -> Any:
    """One config section from plain values (e.g. a model's config read back from its MLflow artifact)."""
    return _build(cls, dict(values), path)


def _build(cls: type, values: Any, path: str) -> Any:
    _refuse_unknown_keys(cls, values, path)
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for name in names & set(values):
        key_path = f"{path}.{name}" if path else name
        kwargs[name] = _coerce(hints[name], values[name], key_path)
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, path: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, path)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(arg, value, path)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{path}: {value!r} matches none of {tp}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{path}: {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected a list, got {type(value).__name__} {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, f"{path}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{path}: expected {len(args)} values, got {len(value)}")
        return tuple(_coerce(a, v, f"{path}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{path}: expected a mapping, got {type(value).__name__}")
        return {str(k): _coerce(args[1], v, f"{path}.{k}") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ConfigError(f"{path}: expected a number, got {value!r}")
        try:
            # YAML 1.1 reads 1e-7 (no dot) as a string; accept what a user obviously meant.
            number = float(value)
        except ValueError:
            raise ConfigError(f"{path}: expected a number, got {value!r}") from None
        except OverflowError:  # an int beyond any float
            number = math.inf
        # A config number is finite: `.inf` passes `> 0`, `nan` passes any `if x < low: raise`, and either would
        # surface far from its key (a diverged training, an endless loop).
        if not math.isfinite(number):
            raise ConfigError(f"{path}: expected a finite number, got {number!r}")
        return number
    if tp is str:
        # YAML reads an unquoted 2024-01-01 as a date; keep it as the string the user wrote.
        if isinstance(value, (dt.date, dt.datetime)):
            return value.isoformat()
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{path}: unsupported schema type {tp}")  # schema bug, not user error


def _check_semantics(config: Config) -> None:
    """Constraints a type cannot express, each naming its key: every section's own `check`, then the one
    check that spans sections."""
    _check_tree(config, path="")
    table = config.source.table
    if (config.source.kind == "table" and table.columns.behavior is None
            and table.behavior not in config.ingest.behaviors):
        raise ConfigError(f"source.table.behavior: {table.behavior!r} is not in ingest.behaviors "
                          f"({', '.join(config.ingest.behaviors)}); every row would be rejected")


def split_as_of(config: Config, run_date: str) -> Config:
    """The config a dated pipeline run uses: a time split rolled to `run_date` (pipeline.*_days)."""
    day = dt.date.fromisoformat(run_date)
    test_from = day - dt.timedelta(days=config.pipeline.test_days - 1)
    valid_from = test_from - dt.timedelta(days=config.pipeline.valid_days)
    split = dataclasses.replace(config.sequences.split, mode="time", valid_from=valid_from.isoformat(),
                                test_from=test_from.isoformat())
    return dataclasses.replace(config, sequences=dataclasses.replace(config.sequences, split=split))
