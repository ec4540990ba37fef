"""What every job's `main(argv)` shares: arguments, logging, config, session, exit status."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from typing import Callable, Sequence

from r2led_model.config import Config, ConfigError, load_config

log = logging.getLogger("r2led")


def job_parser(prog: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--env", default="local", help="config environment: conf/<env>.yaml (default: local)")
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


def run_job(
    args: argparse.Namespace,
    name: str,
    body: Callable[[Config, argparse.Namespace], object],
) -> int:
    """Load config, print it resolved, run `body`; 0 on success, 2 on a config error, 1 otherwise."""
    configure_logging(getattr(args, "verbose", False))
    try:
        config = load_config(args.env, args.overrides, conf_dir=args.conf_dir)
    except ConfigError as exc:
        print(f"r2led {name}: config error: {exc}", file=sys.stderr)
        return 2
    print(f"# r2led {name}: resolved config (env={config.env})\n{config.to_yaml()}", flush=True)
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
