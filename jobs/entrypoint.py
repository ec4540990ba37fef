"""What every job's `main(argv)` shares: arguments, logging, config, session, exit status."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

from r2led_model.config import BASE_ENV, DEFAULT_ENV, Config, ConfigError, load_config, resolve_env

log = logging.getLogger("r2led")


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


def load_dataset_config(args: argparse.Namespace | None, env: str, overrides: Sequence[str] = ()) -> Config:
    """One of a benchmark's dataset envs, loaded as the command's own config is: the same --conf-dir,
    and the command's --config over that env. `overrides` are the benchmark's own (the command's
    --set shapes the command's config, not the datasets')."""
    return load_config(env, overrides, conf_dir=getattr(args, "conf_dir", None),
                       config_file=getattr(args, "config", None))


def dataset_envs(args: argparse.Namespace | None, given: Sequence[str] | None, defaults: Sequence[str]) -> list[str]:
    """A benchmark's dataset envs: those `given`, else, with --config, the command's own env (the user's
    file is the data to measure), else `defaults`."""
    if given is not None:
        return list(given)
    if getattr(args, "config", None):
        return [resolve_env(getattr(args, "env", None), args.config)]
    return list(defaults)


def dataset_label(args: argparse.Namespace | None, env: str) -> str:
    """How results and folders name a dataset env: `env`, or `env+<file stem>` with --config, so that
    a run with a user's file never reuses the tables built without it."""
    config_file = getattr(args, "config", None)
    return f"{env}+{Path(config_file).stem}" if config_file else env


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
    print(f"# r2led {name}: resolved config (env={config.env}{own})\n{config.to_yaml()}", flush=True)
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
) -> int:
    """`main(argv)` of a job whose library function is `run(spark, config, args)`."""
    parser = job_parser(f"r2led {name}", description)
    if add_arguments:
        add_arguments(parser)
    args = parser.parse_args(argv)

    def body(config: Config, parsed: argparse.Namespace) -> object:
        from jobs.spark_runtime import get_spark

        return run(get_spark(config), config, parsed)

    return run_job(args, name, body)
