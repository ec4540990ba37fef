"""What every job's `main(argv)` shares: arguments, logging, config, session, exit status."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

from r2led_model.config import BASE_ENV, DEFAULT_ENV, Config, ConfigError, load_config, resolve_env

log = logging.getLogger("r2led")

# The flags every job's parser has (`job_parser`): they shape the config; a job's own flags become
# keyword arguments of its `run` (`own_flags`).
COMMON_FLAGS = ("env", "config", "overrides", "conf_dir", "verbose")


@dataclass(frozen=True)
class ConfigSource:
    """Where a command's config came from: the --env, --config and --conf-dir a benchmark loads each
    of its dataset envs with, so they are read the way the command's own config was."""

    env: str | None = None
    config_file: str | None = None
    conf_dir: str | None = None

    @classmethod
    def of(cls, args: argparse.Namespace) -> "ConfigSource":
        return cls(env=args.env, config_file=args.config, conf_dir=args.conf_dir)


def job_parser(prog: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description=description,
        epilog=f"config: conf/{BASE_ENV}.yaml <- conf/<env>.yaml <- --config FILE <- --set, later wins. --env "
               f"defaults to {DEFAULT_ENV} (MovieLens-100K); with --config it defaults to {BASE_ENV}: your file "
               f"over {BASE_ENV}.yaml alone, so nothing of {DEFAULT_ENV}'s data comes along unasked.")
    parser.add_argument("--env", default=None,
                        help=f"config environment conf/<env>.yaml ({BASE_ENV}: none; "
                             f"default: {DEFAULT_ENV}, or {BASE_ENV} with --config)")
    parser.add_argument("--config", default=None, metavar="FILE",
                        help="your own YAML config, layered over the env and under --set")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one config value, e.g. --set sequences.max_stored=500 (repeatable)")
    parser.add_argument("--conf-dir", default=None, help="folder with base.yaml and <env>.yaml (default: conf/)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser


def configure_logging(verbose: bool = False) -> None:
    """Handlers are configured here, in entry points only; library modules just log."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )
    for noisy in ("py4j", "urllib3", "matplotlib", "petastorm"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def job_config(args: argparse.Namespace) -> Config:
    """The config a command's arguments name: base ← --env ← --config ← --set, from --conf-dir."""
    return load_config(args.env, args.overrides, conf_dir=args.conf_dir, config_file=args.config)


def load_dataset_config(source: ConfigSource, env: str, overrides: Sequence[str] = ()) -> Config:
    """One of a benchmark's dataset envs, loaded as the command's own config is: the same --conf-dir,
    and the command's --config over that env. `overrides` are the benchmark's own (the command's
    --set shapes the command's config, not the datasets')."""
    return load_config(env, overrides, conf_dir=source.conf_dir, config_file=source.config_file)


def dataset_envs(source: ConfigSource, given: Sequence[str] | None, defaults: Sequence[str]) -> list[str]:
    """A benchmark's dataset envs: those `given`, else, with --config, the command's own env (the user's
    file is the data to measure), else `defaults`."""
    if given is not None:
        return list(given)
    if source.config_file:
        return [resolve_env(source.env, source.config_file)]
    return list(defaults)


def dataset_label(source: ConfigSource, env: str) -> str:
    """How results and folders name a dataset env: `env`, or `env+<file stem>` with --config, so that
    a run with a user's file never reuses the tables built without it."""
    return f"{env}+{Path(source.config_file).stem}" if source.config_file else env


def own_flags(args: argparse.Namespace) -> dict[str, object]:
    """A job's own parsed flags, by dest: the keyword arguments its `run` takes."""
    return {name: value for name, value in vars(args).items() if name not in COMMON_FLAGS}


def flags_and_source(args: argparse.Namespace) -> dict[str, object]:
    """A benchmark's keyword arguments: its own flags and the `source` its dataset envs load from."""
    return {**own_flags(args), "source": ConfigSource.of(args)}


def run_job(
    args: argparse.Namespace,
    name: str,
    body: Callable[[Config, argparse.Namespace], object],
) -> int:
    """Load config, print it resolved, run `body`; 0 on success, 2 on a config error, 1 otherwise."""
    configure_logging(getattr(args, "verbose", False))
    try:
        config = job_config(args)
    except ConfigError as exc:
        print(f"r2led {name}: config error: {exc}", file=sys.stderr)
        return 2
    own = f", config={args.config}" if getattr(args, "config", None) else ""
    # Secrets shown as ***: this lands in job logs; the body gets the real values.
    print(f"# r2led {name}: resolved config (env={config.env}{own})\n{config.to_redacted_yaml()}", flush=True)
    started = time.perf_counter()
    try:
        body(config, args)
    except Exception:
        log.exception("r2led %s failed after %.1fs", name, time.perf_counter() - started)
        return 1
    log.info("r2led %s finished in %.1fs", name, time.perf_counter() - started)
    return 0


def spark_job_main(
    argv: Sequence[str] | None,
    name: str,
    description: str,
    run: Callable[..., object],
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
    keywords: Callable[[argparse.Namespace], Mapping[str, object]] = own_flags,
    check: Callable[[argparse.Namespace], str | None] | None = None,
) -> int:
    """`main(argv)` of a job whose library function is `run(spark, config, **keywords)`: typed keyword
    arguments, by default the job's own flags by dest. Only `main` sees the parsed Namespace. `check`
    says what is wrong with flags that are each valid but not together (exit 2 before anything starts)."""
    parser = job_parser(f"r2led {name}", description)
    if add_arguments:
        add_arguments(parser)
    args = parser.parse_args(argv)
    problem = check(args) if check else None
    if problem:
        parser.error(problem)

    def body(config: Config, parsed: argparse.Namespace) -> object:
        from jobs.orchestration.stages import STAGE_NAMES
        from jobs.runtime.spark_runtime import get_spark

        spark = get_spark(config)
        if name not in STAGE_NAMES:  # the pipeline takes the lock itself; other commands write no table
            return run(spark, config, **keywords(parsed))
        from jobs.runtime.run_lock import RunLock
        from jobs.runtime.tables import TableStore

        # A stage run on its own writes the tables a pipeline run may be writing: it takes the same
        # lock, or refuses (exit 1, nothing written) while a run holds it.
        with RunLock(TableStore(spark, config.tables), timeout_minutes=config.pipeline.lock_timeout_minutes,
                     command=f"r2led {name}"):
            return run(spark, config, **keywords(parsed))

    return run_job(args, name, body)
