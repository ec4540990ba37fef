"""`r2led <command>`: one subcommand per job; each forwards to that job module's `main(argv)`.

Modules are imported only when their command runs, so `r2led --help` starts instantly and a
job's heavy imports (pyspark, torch) load only when needed.
"""

from __future__ import annotations

import importlib
import sys
from typing import Sequence

# command → (module with main(argv), one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "ingest": ("jobs.ingest.ingest", "raw logs → events, items, events_rejected"),
    "sequences": ("jobs.sequences.sequences", "events → user_sequences, samples"),
    "embed-items": ("jobs.sids.embed_items", "items → item_embeddings (sentence encoder; ALS for items without text)"),
    "train-codebook": ("jobs.sids.train_codebook", "item_embeddings → RQ-VAE codebook (MLflow run + versioned file)"),
    "assign-sids": ("jobs.sids.assign_sids", "item_embeddings + current codebook → item_sids"),
    "collab-vectors": ("jobs.retrieval.collab_vectors",
                       "events (training window) → item_collab_vectors (ALS + SimHash)"),
    "retrieve": ("jobs.retrieval.retrieve", "samples ⋈ user_sequences ⋈ SIDs/signatures → route_candidates"),
    "build-training-set": ("jobs.training.build_training_set", "route_candidates + sequences → training_examples"),
    "train": ("jobs.training.train",
              "training_examples → trained CTR model (Petastorm, MLflow run, registered version)"),
    "tune": ("jobs.training.tune", "Optuna study over a model's search space (nested MLflow runs) → tuned parameters"),
    "promote": ("jobs.registry.promote", "challenger → champion if it beats the champion on the same test data"),
    "score": ("jobs.registry.score", "champion model → predictions for a day's samples"),
    "generate": ("jobs.ingest.generate", "write a synthetic world's raw logs (Spark, parallel)"),
    "pipeline": ("jobs.orchestration.pipeline", "every stage end to end; --date D: the nightly incremental run"),
}
REPORTS: dict[str, tuple[str, str]] = {
    "sids": ("jobs.sids.report_sids", "SID usage, collisions, prefixes with example texts, plots (MLflow)"),
    "retrieval": ("jobs.retrieval.report_retrieval",
                  "per-route pool sizes; precision vs planted interests on synthetic data"),
    "oracle": ("jobs.training.report_oracle",
               "an oracle-scored world's ceiling: oracle, partial oracles, learnable quality"),
}
BENCHMARKS: dict[str, tuple[str, str]] = {
    "sequences": ("jobs.benchmarks.sequences", "ingest + sequences throughput vs a single-process reference"),
    "retrieval": ("jobs.benchmarks.retrieval", "retrieval samples/s vs history length: Spark, numpy kernel, naive"),
    "sids": ("jobs.benchmarks.sids", "SID assignment throughput vs numpy; SID quality on MovieLens and synthetic"),
    "scale": ("jobs.benchmarks.scale", "every Spark data stage at 10^6..10^8 events: seconds, rows, memory, spill"),
    "models": ("jobs.benchmarks.models", "R2LED vs baselines and ablations: AUC/GAUC/LogLoss over seeds, latency"),
    "serving": ("jobs.benchmarks.serving", "served model p50/p99 over REST at T=100..10,000; score --candidates pairs/s"),
}


def _usage() -> str:
    lines = ["usage: r2led <command> [--env ENV] [--config FILE] [--set key=value ...] [options]",
             "       r2led --version", "", "commands:"]
    lines += [f"  {name:<12} {text}" for name, (_, text) in COMMANDS.items()]
    lines += [f"  report {name:<15} {text}" for name, (_, text) in REPORTS.items()]
    lines += [f"  benchmark {name:<12} {text}" for name, (_, text) in BENCHMARKS.items()]
    lines += ["", "Every command takes --env, --config FILE (your own YAML) and repeated --set key=value; -h for its options.",
              "Config: conf/base.yaml <- conf/<env>.yaml <- --config FILE <- --set. --env defaults to local",
              "(MovieLens-100K), and to base (base.yaml alone) when --config is given."]
    return "\n".join(lines)


def _version() -> str:
    """The installed package's version (a source tree that is not installed has none to report)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("r2led")
    except PackageNotFoundError:
        return "unknown (not installed: pip install -e .)"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0 if args else 2
    if args[0] in ("-V", "--version"):
        print(f"r2led {_version()}")
        return 0
    command, rest = args[0], args[1:]
    table = COMMANDS
    groups = {"benchmark": BENCHMARKS, "report": REPORTS}
    if command in groups:
        group = groups[command]
        if not rest or rest[0] not in group:
            print(f"r2led {command}: choose one of {', '.join(group)}", file=sys.stderr)
            return 2
        table, command, rest = group, rest[0], rest[1:]
    if command not in table:
        print(f"r2led: unknown command {command!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(table[command][0])
    return int(module.main(rest))


if __name__ == "__main__":
    sys.exit(main())
