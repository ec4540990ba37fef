"""`r2led benchmark models`: R2LED, every baseline, fair controls and the main ablations on the same data.

For each dataset env (default: `oracle`, the oracle-scored world, and `local` = MovieLens-100K; the
lifelong world is `--envs lifelong`), the pipeline stages up to
build-training-set run once into `<benchmark.output_dir>/models/<env>/` (reused on later runs
unless `--rebuild`). Then every variant trains with the same trainer, feed and seeds, and is
evaluated on the test split: AUC, GAUC, LogLoss (mean ± std over seeds), training time and
training samples/s. Beside that rate, two parts of it: `feed_samples_per_s`, one epoch of the very
training feed the trainer reads (Petastorm), doing nothing with the batches (once per dataset and set
of columns read), and `step_samples_per_s`, the trainer's own training step (forward, backward, Adam)
on STEP_BATCHES of those batches held in memory; the lower of the two is what bounds training.

Inference latency per 1,000 samples is measured separately on random valid inputs for T_max in
`--lengths` (default 200 and 1000): models that retrieve inside the network read the whole long
history, while R2LED reads its precomputed per-route candidates, whose width does not depend on
T_max. Results: JSON lines on stdout and in `models.jsonl`, a table, `models.png`, one MLflow run.

On an oracle-scored world (`conf/oracle.yaml`, the default) every quality row also carries the
oracle's AUC on the same test rows and the model's share of the oracle's lift. `--tuned` gives every
model the same Optuna budget (`r2led tune`, `tuning.trials` trials on the dataset) before the seeded
runs, and reuses the saved parameters while the data is unchanged; R2LED's ablations run with R2LED's
tuned parameters, or with `--tune-variants` each with a study of its own. `--sweep LEVEL:SHARE ...`
repeats each synthetic dataset with the catalogue's category at another taxonomy level and mislabel
share (the parameters tuned on the first setting are reused on the others), so the table shows where
R2LED wins and where it does not.

Fair controls run beside the baselines (unless `--no-controls`): each baseline "+sid" (its items fused
with their SIDs as R2LED's are, `model.item_sids`) and SIM-hard on a SID prefix. Each variant trains
from its own seed (`init_seed`), and every seed's test predictions are saved under
`<dataset>/predictions/`, so each row is paired with R2LED's on the same test rows: the mean-over-seeds
AUC difference with its user-bootstrap 95% CI, overall and per segment of the test rows (target
warmth; on a world with truth, dormant-interest targets, community- or taxonomy-driven relevance,
noisy or clean text: `row_segments`). `--summarize` recomputes them from the saved predictions.

The rows it can train are in `model_variants`, their rates and latency in `model_rates`, the tables it
prints in `model_table`; this module builds the data, tunes, trains and evaluates.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import statistics
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch
from pyspark.sql import SparkSession

from jobs.benchmarks.content_references import ReferenceRun, run_references
from jobs.benchmarks.model_rates import FeedPass, catalogue_spec, latency_ms_per_1000, training_rates
from jobs.benchmarks.model_table import format_rates, format_table, plot
from jobs.benchmarks.model_variants import (ABLATIONS, CONTROLS, EVERY_VARIANT, Variant, init_seed, study_of,
                                            variant_config, variant_job, variants)
from jobs.benchmarks.paired_evaluation import (file_safe, format_comparisons, paired_comparisons, prediction_path,
                                               save_predictions, save_segments)
from jobs.benchmarks.residual_rows import format_residuals, residual_rows
from jobs.benchmarks.row_segments import segments_of_test_rows
from jobs.ingest import generate
from jobs.ingest.oracle_truth import load_oracle_truth
from jobs.orchestration.stages import DATA_STAGES, stages
from jobs.runtime.entrypoint import (ConfigSource, dataset_envs, dataset_label, flags_and_source, load_dataset_config,
                                     spark_job_main)
from jobs.runtime.tables import TableStore
from jobs.training import build_training_set
from jobs.training.build_training_set import layout_outdated
from jobs.training.training_data import TrainingData, training_data
from jobs.training.tune import tune_model
from jobs.training.worker import TrainJob, evaluate_rows, make_feed, train_worker
from r2led_model.config import Config, SyntheticSourceConfig, TablesConfig
from r2led_model.evaluation.counterfactuals import frozen, mean_refinement
from r2led_model.evaluation.diagnostics import r2led_diagnostics
from r2led_model.evaluation.metrics import evaluate
from r2led_model.models import MODELS, CTRTask
from r2led_model.retrieval.route_names import CATEGORY_ROUTE
from r2led_model.tracking.bundle import ModelBundle
from r2led_model.training.tuning import TunedParams, tuned_path
from r2led_model.worlds.oracle import OracleTruth, oracle_metrics, with_ceiling

log = logging.getLogger(__name__)

DEFAULT_ENVS = ["oracle", "local"]
SEEDS = 3  # seeds 0..n-1 per variant
EPOCHS = 4  # the most epochs a run trains; early stopping still applies
LENGTHS = (200, 1000)  # T_max values the latency part times
# Test rows R2LED's diagnostics read: every row of the lifelong world's test split, so each segment has its own.
DIAGNOSED_ROWS = 100_000


def dataset_config(source: ConfigSource, env: str, folder: Path, overrides: Sequence[str]) -> Config:
    """A dataset env as the command loads its own config (its --conf-dir, its --config over `env`), with
    every table, file and run of it under `folder`."""
    config = load_dataset_config(source, env, [f"workspace.root={folder}", *overrides])
    config = replace(config, tables=TablesConfig(backend="path", root=str(folder / "tables")))
    if config.source.kind == "synthetic":
        config = replace(config, source=replace(config.source, synthetic=SyntheticSourceConfig(
            path=str(folder / "raw"))))
    return config


def build_tables(spark: SparkSession, config: Config, rebuild: bool) -> TrainingData:
    """The dataset's tables, built once and reused; examples written in another input layout (an earlier
    release's) are rebuilt from the stored candidates, which are the same."""
    store = TableStore(spark, config.tables)
    if rebuild or not store.exists("training_examples"):
        if config.source.kind == "synthetic":
            generate.run(spark, config)
        for stage in stages(DATA_STAGES):
            stage.run(spark, config)
    elif layout_outdated(store.read("training_examples")):
        build_training_set.run(spark, config)
    return training_data(store, config)


@dataclass(frozen=True)
class CatalogueSetting:
    """One point of the fairness sweep: the taxonomy level the category names and its mislabel share."""

    level: int
    mislabel_share: float

    @classmethod
    def parse(cls, text: str) -> "CatalogueSetting":
        level, _, share = text.partition(":")
        try:
            setting = cls(int(level), float(share or 0.0))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected LEVEL:SHARE such as 2:0.1, got {text!r}") from None
        if setting.level not in (1, 2, 3) or not 0.0 <= setting.mislabel_share <= 1.0:
            raise argparse.ArgumentTypeError(f"{text!r}: level must be 1, 2 or 3 and the share in [0, 1]")
        return setting

    @property
    def label(self) -> str:
        return f"category=L{self.level} mislabel={self.mislabel_share:g}"

    @property
    def folder(self) -> str:
        return f"cat{self.level}-mis{self.mislabel_share:g}"

    def overrides(self) -> list[str]:
        return [f"synthetic.catalogue.category_level={self.level}",
                f"synthetic.catalogue.mislabel_share={self.mislabel_share}"]


def tuned_for(spark: SparkSession, config: Config, data: TrainingData, model: str, trials: int | None,
              folder: Path, reuse: Path | None = None) -> TunedParams:
    """The saved parameters of `model` tuned on this data, or a new study (the same budget for every model).

    With `reuse`, the parameters saved there are taken as they are, whatever data they were tuned on.
    """
    if reuse is not None:
        return TunedParams.load(tuned_path(reuse, model))
    path = tuned_path(folder, model)
    if path.is_file():
        saved = TunedParams.load(path)
        budget = trials or config.tuning.trials
        if (saved.data.get("training_examples_version") == data.versions.training_examples_version
                and saved.data.get("rows") == dict(data.rows) and saved.trials == budget):
            log.info("%s: reusing tuned parameters from %s", model, path)
            return saved
    tuning = replace(config.tuning, output_dir=str(folder))
    return tune_model(spark, replace(config, tuning=tuning), model=model, trials=trials, data=data)


COUNTERFACTUALS = ("frozen gate", "frozen route weights")


def counterfactual_runs(job: TrainJob, task: CTRTask, truth: OracleTruth | None,
                        variant: str = "r2led") -> dict[str, tuple[dict, object]]:
    """An R2LED variant's refinement counterfactuals (`r2led_model.evaluation.counterfactuals`), the means taken on the
    valid split: {"<variant> frozen gate" / "... frozen route weights": (test metrics, test rows)} for each
    that the model has (no gate, no route weights: none)."""
    means = mean_refinement(task.model, make_feed(job, "valid", shuffle=False).batches(0))
    out = {}
    for part, frozen_parts in zip(COUNTERFACTUALS, ({"gate": means.gate}, {"route": means.route})):
        label = f"{variant} {part}"
        if next(iter(frozen_parts.values())) is None:
            continue
        with frozen(task.model, **frozen_parts):
            out[label] = evaluate_rows(job, task, "test", truth)
    return out


def seed_summary(per_seed: Sequence[dict], seeds: Sequence[int]) -> dict:
    """Mean and SD over seeds of every metric of the per-seed dicts, rounded, with each seed's AUC and epoch."""
    def mean_std(key: str) -> tuple[float, float]:
        values = [r[key] for r in per_seed]
        return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)

    summary = {}
    keys = ["auc", "gauc", "logloss", "train_s", "train_samples_per_s"]
    if all("valid_auc" in r for r in per_seed):
        keys.append("valid_auc")  # the best evaluation's, on the whole validation split: what picks a default
    if all("oracle_auc" in r for r in per_seed):
        keys += [k for k in per_seed[0] if k.startswith("oracle_")] + ["lift_share"]
    for key in keys:
        summary[key], summary[f"{key}_std"] = mean_std(key)
    return {**{k: round(v, 5) for k, v in summary.items()}, "seeds": list(seeds),
            "per_seed_auc": [round(r["auc"], 5) for r in per_seed], "best_epochs": [r["best_epoch"] for r in per_seed]}


def quality(config: Config, data: TrainingData, variant: Variant, seeds: Sequence[int],
            truth: OracleTruth | None = None, predictions: Path | None = None,
            segments: Mapping[str, np.ndarray] | None = None) -> dict:
    """Each seed trained and scored on the test split (its rows saved under `predictions` for the paired
    comparisons) → mean and SD over seeds of every metric. Every R2LED variant also gets its counterfactuals
    (`COUNTERFACTUALS`, same weights), summarised under "counterfactuals"."""
    per_seed, diagnosis = [], None
    counterfactual: dict[str, list[dict]] = {}
    for seed in seeds:
        job = variant_job(config, data, variant, seed)
        started = time.perf_counter()
        worker = train_worker(job)
        seconds = time.perf_counter() - started
        bundle = ModelBundle(model_config=job.model, spec=data.spec, versions=data.versions,
                             state_dict=worker.state_dict)
        task = bundle.build()
        test, rows = evaluate_rows(job, task, "test", truth)
        if predictions is not None:
            save_predictions(prediction_path(predictions, variant.label, seed), rows)
        if variant.model == "r2led" and not per_seed:  # seed 0's model: what its gate and fusion do
            diagnosis = r2led_diagnostics(task.model, make_feed(job, "test", shuffle=False).batches(0),
                                          max_rows=DIAGNOSED_ROWS, segments=segments)
        run = {"train_s": seconds, "train_samples_per_s": worker.samples_seen / max(seconds, 1e-9),
               "best_epoch": worker.best_epoch, "valid_auc": max(e["valid_auc"] for e in worker.history)}
        per_seed.append({**test, **run})
        if variant.model == "r2led":  # every R2LED variant: what its own gate and route weights are worth
            for label, (metrics, frozen_rows) in counterfactual_runs(job, task, truth, variant.label).items():
                counterfactual.setdefault(label, []).append({**metrics, **run})
                if predictions is not None:
                    save_predictions(prediction_path(predictions, label, seed), frozen_rows)
        log.info("%s seed %d: test AUC %.4f GAUC %.4f LogLoss %.4f (%.1fs)", variant.label, seed, test["auc"],
                 test["gauc"], test["logloss"], seconds)
    return {**seed_summary(per_seed, seeds), **({"diagnostics": diagnosis} if diagnosis else {}),
            **({"counterfactuals": {label: seed_summary(runs, seeds) for label, runs in counterfactual.items()}}
               if counterfactual else {})}


def reference_summary(run: ReferenceRun, seeds: Sequence[int], train_rows: int, truth: OracleTruth | None) -> dict:
    """A content-feature reference's quality row fields, shaped like a variant's (`seed_summary`): the same
    scores for every seed, so every spread is 0; train s is its share of the references' fitting time."""
    rows = run.test
    metrics = evaluate(rows.users, rows.labels, rows.probs)
    if truth is not None:
        metrics = with_ceiling(metrics, oracle_metrics(truth, rows.sample_ids, rows.users, rows.labels))
    per_seed = {**metrics, "train_s": run.fit_s, "train_samples_per_s": train_rows / max(run.fit_s, 1e-9),
                "valid_auc": run.valid["auc"], "best_epoch": None}
    summary = seed_summary([per_seed] * len(seeds), seeds)
    summary.pop("best_epochs")  # a regression has no epochs
    return summary


def metric_name(*parts: str) -> str:
    """An MLflow metric name from labels such as "oracle category=L2 mislabel=0.1" and "r2led gate=sum":
    MLflow refuses '=' (and anything but letters, digits, _ - . space : /)."""
    return ".".join(re.sub(r"[^0-9A-Za-z_\-.:/]", "_", part.replace("=", "-").replace(" ", "_")) for part in parts)


def emit(result: dict, sink: Path) -> None:
    """Print one JSON line and append it to the sink at once, so an interrupted run keeps its results."""
    print(json.dumps(result), flush=True)
    with open(sink, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(result) + "\n")


def summarize(sink: Path, figure: Path, pairs: Sequence[tuple[str, str]] = (), residuals: Sequence[str] = ()
              ) -> list[dict]:
    """The newest result per (env, variant) and per (variant, T_max) in the sink: table and plot; with
    `pairs`, each (variant, reference) pair's paired difference on every env's saved predictions; with
    `residuals`, what the content features stacked on each of those variants' logits add (`residual_rows`)."""
    latest: dict[tuple, dict] = {}
    for line in sink.read_text(encoding="utf-8").splitlines():
        r = json.loads(line)
        key = (r["bench"], r.get("env"), r["variant"], r.get("t_max"))
        latest.pop(key, None)
        latest[key] = r  # re-inserted: order follows the newest run
    results = sorted(latest.values(), key=lambda r: r["bench"] != "models_quality")
    print(format_table(results), flush=True)
    for env in dict.fromkeys(r["env"] for r in results if r["bench"] == "models_quality"):
        rows = [r for r in results if r["bench"] == "models_quality" and r["env"] == env]
        if pairs and rows[0].get("predictions_dir"):
            print(f"{env}\n" + format_comparisons(paired_comparisons(Path(rows[0]["predictions_dir"]), pairs,
                                                                       rows[0]["seeds"])), flush=True)
        if residuals and rows[0].get("predictions_dir"):
            found = residual_rows(Path(rows[0]["predictions_dir"]), residuals, rows[0]["seeds"])
            print(f"{env}\n" + (format_residuals(found) if found else "  no saved content features or predictions "
                                 "for the residual check (run --references first)"), flush=True)
    plot(results, figure)
    return results


def run(spark: SparkSession, config: Config, *, source: ConfigSource = ConfigSource(),
        envs: Sequence[str] | None = None, tuned: bool = False, trials: int | None = None,
        tune_variants: bool = False, tuning_dir: Path | None = None, sweep: Sequence[CatalogueSetting] | None = None,
        models: Sequence[str] | None = None, no_ablations: bool = False, no_controls: bool = False,
        only_variants: Sequence[str] | None = None, pairs: Sequence[Sequence[str]] = (), seeds: int = SEEDS,
        epochs: int = EPOCHS,
        lengths: Sequence[int] = LENGTHS, dataset_set: Sequence[str] = (), rebuild: bool = False,
        summarize_only: bool = False, rates_only: bool = False, references_only: bool = False,
        residuals: Sequence[str] = ()) -> list[dict]:
    """Every variant of `models` (all by default, with the +sid controls unless `no_controls` and the ablations
    unless `no_ablations`) on each
    dataset env of `envs` for `seeds` seeds of at most `epochs` epochs, `tuned` first (`trials` per
    model, or the parameters saved in `tuning_dir`; with `tune_variants` every variant its own study, its
    options fixed), over each catalogue setting of `sweep`; then
    latency at each T_max of `lengths`. `summarize_only`: no runs, the newest results' table. `rates_only`:
    no training, each variant's feed and step rates (`training_rates`) and their ratio. `references_only`: no
    training, the content-feature references (`content_references`) fitted and saved; a run of every model
    (no `models`, no `only_variants`) fits them too."""
    from r2led_model.tracking.runs import tracked_run

    out = Path(config.benchmark.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    chosen = variants(models, not no_ablations, not no_controls, only_variants)
    seed_list = list(range(seeds))
    extra = [f"training.epochs={epochs}", *dataset_set]
    device = config.training.device
    sink = out / "models.jsonl"
    if summarize_only:
        return summarize(sink, out / "models.png", pairs=[tuple(p) for p in pairs], residuals=residuals)
    results: list[dict] = []
    spec_for_latency = None
    for env in dataset_envs(source, envs, DEFAULT_ENVS):
        settings = sweep or [None]
        tuned_params: dict[str, TunedParams] = {}
        label = dataset_label(source, env)
        own = dataset_config(source, env, out / "models" / label, [*extra, f"training.device={device}"])
        for position, setting in enumerate(settings):
            if setting is not None and own.source.kind != "synthetic":
                continue  # the sweep's knobs belong to the synthetic catalogue
            if setting == CatalogueSetting(own.synthetic.catalogue.category_level,
                                           own.synthetic.catalogue.mislabel_share):
                setting_folder = label  # the env's own catalogue: its own tables
            else:
                setting_folder = label if setting is None else f"{label}-{setting.folder}"
            name = label if setting is None else f"{label} {setting.label}"
            folder = out / "models" / setting_folder
            dataset = dataset_config(source, env, folder, [*extra, f"training.device={device}",
                                                   *(setting.overrides() if setting else [])])
            data = build_tables(spark, dataset, rebuild)
            truth = load_oracle_truth(spark, dataset)
            segments = segments_of_test_rows(spark, dataset)
            save_segments(folder, segments)
            if references_only or (models is None and only_variants is None and not rates_only):
                for reference in run_references(spark, dataset, folder, seed_list):
                    results.append({"bench": "models_quality", "env": name, "source": dataset.source.kind,
                                    "variant": reference.reference.variant, "model": "reference_lr",
                                    "device": "cpu", "train_rows": data.rows["train"],
                                    "test_rows": data.rows["test"], "epochs": 0, "tuned": None,
                                    "tuning_trials": 0, "reference": True, "predictions_dir": str(folder),
                                    **reference_summary(reference, seed_list, data.rows["train"], truth)})
                    emit(results[-1], sink)
            if references_only:
                continue
            spec_for_latency = spec_for_latency or data.spec
            feeds: dict[tuple[str, ...], FeedPass] = {}  # this dataset's feed passes, by columns read
            # The ablations run on the first setting only: the sweep is about where R2LED wins.
            for variant in (chosen if position == 0 else [v for v in chosen if v not in (*ABLATIONS, *CONTROLS)]):
                if dict(variant.overrides).get("search") == "offline" and CATEGORY_ROUTE not in data.spec.routes:
                    log.info("%s: skipped, retrieval.routes of %s has no %r route", variant.label, name,
                             CATEGORY_ROUTE)
                    continue
                # Tuned once per env, on its first setting: every model (or variant) the same budget on the same
                # data. A variant tuned on its own searches with its options fixed, in a folder of its own.
                study = study_of(variant, tune_variants=tune_variants)
                if tuned and study not in tuned_params:
                    if study == variant.model:
                        tuned_params[study] = tuned_for(spark, dataset, data, variant.model, trials,
                                                        folder / "tuning", reuse=tuning_dir)
                    else:
                        tuned_params[study] = tuned_for(spark, variant_config(dataset, variant, None), data,
                                                        variant.model, trials,
                                                        folder / "tuning" / "variants" / file_safe(study))
                params = tuned_params.get(study) if tuned else None
                variant_dataset = variant_config(dataset, variant, params)
                if rates_only:
                    rates = training_rates(variant_job(variant_dataset, data, variant, seed_list[0]), feeds)
                    results.append({"bench": "models_rates", "env": name, "variant": variant.label,
                                    "model": variant.model, "device": device, **rates,
                                    "feed_over_step": round(rates["feed_samples_per_s"]
                                                            / rates["step_samples_per_s"], 2)})
                    emit(results[-1], sink)
                    continue
                summary = quality(variant_dataset, data, variant, seed_list, truth, predictions=folder,
                                  segments=segments)
                summary.update(training_rates(variant_job(variant_dataset, data, variant, seed_list[0]), feeds))
                results.append({"bench": "models_quality", "env": name, "source": dataset.source.kind,
                                "variant": variant.label, "model": variant.model, "device": device,
                                "train_rows": data.rows["train"], "test_rows": data.rows["test"],
                                "epochs": dataset.training.epochs, "tuned": params.params if params else None,
                                "tuning_trials": params.trials if params else 0,
                                "tuning_valid_auc": round(params.best_valid_auc, 5) if params else None,
                                "tuned_as": study if params else None, "predictions_dir": str(folder),
                                "init_seeds": [init_seed(variant.label, seed) for seed in seed_list], **summary})
                emit(results[-1], sink)
                for label, frozen_summary in summary.get("counterfactuals", {}).items():
                    # Same weights, a part frozen at its mean: a row of its own, paired with R2LED like any other.
                    results.append({**results[-1], "variant": label, "counterfactual": True, **frozen_summary})
                    results[-1].pop("counterfactuals", None)
                    results[-1].pop("diagnostics", None)
                    emit(results[-1], sink)
    if rates_only:
        print(format_rates(results), flush=True)
        return results
    if references_only:
        print(format_table(results), flush=True)
        return results
    if spec_for_latency is None:
        spec_for_latency = catalogue_spec(config)
    if lengths:
        for variant in (v for v in chosen if v not in CONTROLS):  # a control's latency is its baseline's
            for length in lengths:
                ms = latency_ms_per_1000(spec_for_latency, config, variant, length, device)
                results.append({"bench": "models_latency", "variant": variant.label, "t_max": length,
                                "ms_per_1000": round(ms, 3), "samples_per_s": round(1e6 / ms), "device": device,
                                "threads": torch.get_num_threads(), "cores": os.cpu_count()})
                emit(results[-1], sink)
    table = format_table(results)
    print(table, flush=True)
    plot(results, out / "models.png")
    with tracked_run(config, run_name="benchmark-models", tags={"stage": "benchmark"}) as tracked:
        tracked.log_params({"envs": list(envs or []), "seeds": seed_list, "device": device,
                            "variants": [v.label for v in chosen]})
        for r in results:
            if r["bench"] == "models_quality":
                tracked.log_metrics({metric_name(r["env"], r["variant"], name): r[field] for name, field in (
                    ("test_auc", "auc"), ("test_gauc", "gauc"), ("test_logloss", "logloss"),
                    ("feed_samples_per_s", "feed_samples_per_s"), ("step_samples_per_s", "step_samples_per_s"))
                    if field in r})
            else:
                tracked.log_metrics({metric_name("latency", r["variant"], f"t{r['t_max']}_ms_per_1000"):
                                     r["ms_per_1000"]})
        tracked.log_text(table, "models_table.txt")
        tracked.log_artifact(out / "models.png")
    return results


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--envs", nargs="*", default=None,
                        help=f"dataset envs for the quality part, each with --config over it (default: "
                             f"{' '.join(DEFAULT_ENVS)}; with --config: --env, i.e. base unless named; none: latency only)")
    parser.add_argument("--tuned", action="store_true",
                        help="tune every model first (r2led tune, the same --trials budget each), then run the seeds")
    parser.add_argument("--trials", type=int, default=None, help="trials per model with --tuned (default: tuning.trials)")
    parser.add_argument("--tune-variants", action="store_true",
                        help="with --tuned: every variant gets its own study (the same budget) with its options "
                             "fixed, instead of its model's parameters; the variants' validation AUCs then say "
                             "which configuration should be the default")
    parser.add_argument("--tuning-dir", type=Path, default=None,
                        help="with --tuned: take every model's saved parameters from this folder instead of tuning "
                             "(e.g. a sweep run beside the one that tuned on the env's own catalogue)")
    parser.add_argument("--sweep", nargs="*", type=CatalogueSetting.parse, default=None, metavar="LEVEL:SHARE",
                        help="catalogue settings for synthetic envs: category taxonomy level (1 top, 2 mid, 3 leaf) "
                             "and mislabel share, e.g. 3:0 2:0.1 1:0.1")
    parser.add_argument("--models", nargs="*", default=None, help=f"subset of {', '.join(MODELS)} (default: all)")
    parser.add_argument("--no-ablations", action="store_true", help="skip the R2LED ablation variants")
    parser.add_argument("--variants", dest="only_variants", nargs="+", default=None, metavar="LABEL",
                        choices=[v.label for v in EVERY_VARIANT],
                        help="run only these variants, by their table label (e.g. 'r2led gate=warmth'); "
                             "overrides --models, --no-ablations and --no-controls")
    parser.add_argument("--no-controls", action="store_true",
                        help="skip the fair controls (every baseline +sid, SIM-hard on a SID prefix)")
    parser.add_argument("--seeds", type=int, default=SEEDS, help="seeds per variant (0..n-1)")
    parser.add_argument("--epochs", type=int, default=EPOCHS,
                        help="maximum epochs per run (early stopping still applies)")
    parser.add_argument("--lengths", type=int, nargs="*", default=list(LENGTHS),
                        help="T_max values for the latency part")
    parser.add_argument("--dataset-set", action="append", default=[], metavar="KEY=VALUE",
                        help="a config override applied to every dataset env (repeatable)")
    parser.add_argument("--rebuild", action="store_true", help="rebuild the benchmark's tables even if present")
    parser.add_argument("--pair", dest="pairs", nargs=2, action="append", default=[],
                        metavar=("LABEL", "REFERENCE"),
                        help="with --summarize: also print LABEL's AUC minus REFERENCE's with its paired CI "
                             "(repeatable), e.g. --pair 'r2led fusion=target_aware' 'r2led fusion=concat'")
    parser.add_argument("--rates", dest="rates_only", action="store_true",
                        help="no training: each variant's feed and training-step rows/s on the env's data")
    parser.add_argument("--references", dest="references_only", action="store_true",
                        help="no training: fit the content-feature regressions (planted topics where the world has "
                             "them, SID prefixes always) on each env and save their test predictions like a "
                             "variant's ('lr sid+te', ...), with the test rows' content features for --residual")
    parser.add_argument("--residual", dest="residuals", action="append", default=[], metavar="LABEL",
                        help="with --summarize: what the item's target encoding, the user's click rate and the "
                             "whole-history SID-prefix counts add when stacked on LABEL's logit, cross-fitted by "
                             "user, with paired CIs (repeatable)")
    parser.add_argument("--summarize", dest="summarize_only", action="store_true",
                        help="no runs: print the table and plot of the newest results in models.jsonl")


def main(argv: Sequence[str] | None = None) -> int:
    return spark_job_main(argv, "benchmark models", "Every model on the same data and seeds: quality and latency.", run,
                          _add_arguments, keywords=flags_and_source)


if __name__ == "__main__":
    sys.exit(main())
