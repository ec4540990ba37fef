"""The image smoke run's check: the tables the pipeline wrote have rows, and a model was registered.

Run through deploy/submit.sh (R2LED_MAIN=<this file>), so it reads the tables with the same
spark-submit, Delta package and config as the pipeline run before it:

    R2LED_MAIN=/app/workspace/image_smoke_check.py /app/deploy/submit.sh check --env tiny

Prints one line per table (`table rows`) and the registered versions; exits 1 naming what is missing.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

TABLES = ("events", "items", "user_sequences", "samples", "item_sids", "route_candidates", "training_examples")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="image_smoke_check")
    parser.add_argument("command", help="ignored: submit.sh names the run after it")
    parser.add_argument("--env", default="tiny")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args(argv)

    from mlflow import MlflowClient

    from jobs.runtime.spark_runtime import get_spark
    from jobs.runtime.tables import TableStore
    from r2led_model.config import load_config

    config = load_config(args.env, overrides=args.overrides)
    store = TableStore(get_spark(config), config.tables)
    problems = []
    for name in TABLES:
        rows = store.read(name).count() if store.exists(name) else None
        print(f"table {name} {rows if rows is not None else 'missing'}")
        if not rows:
            problems.append(f"{name}: {'no table' if rows is None else 'no rows'} at {store.location(name)}")

    uri = config.mlflow.tracking_uri
    client = MlflowClient(tracking_uri=uri, registry_uri=config.mlflow.registry_uri or uri)
    name = config.registry.model_name
    versions = client.search_model_versions(f"name='{name}'")
    # search_model_versions leaves aliases empty on a SQLite registry; the registered model has them.
    aliases = client.get_registered_model(name).aliases if versions else {}
    print(f"model {name} versions {sorted(int(v.version) for v in versions)} aliases {dict(sorted(aliases.items()))}")
    if not versions:
        problems.append(f"no registered version of {name} in {uri}")

    for problem in problems:
        print(f"image smoke check failed: {problem}", file=sys.stderr)
    print("image smoke check: ok" if not problems else "image smoke check: FAILED")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
