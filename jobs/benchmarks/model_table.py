"""What `r2led benchmark models` prints and plots: the quality table with its paired differences, segments,
tuned parameters and diagnostics, the latency table, and the rates table."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

from jobs.benchmarks.paired_evaluation import format_delta, format_segments, load_segments, overall, paired_rows
from r2led_model.worlds.oracle import lift_share


def paired_for(rows: Sequence[dict]) -> list[dict]:
    """The paired comparisons (with R2LED, overall and per segment) of one dataset's quality rows, from the
    predictions its runs saved; [] for rows saved before predictions were kept."""
    folder = rows[0].get("predictions_dir")
    if not folder:
        return []
    return paired_rows(Path(folder), [r["variant"] for r in rows], rows[0]["seeds"],
                       segments=load_segments(Path(folder)))


def format_rates(results: Sequence[dict]) -> str:
    """The `--rates` table: per env and variant, the feed's and the step's rows/s and the feed's headroom."""
    header = f"{'env':<12} {'variant':<28} {'feed rows/s':>12} {'step rows/s':>12} {'feed÷step':>10}"
    lines = [header, "-" * len(header)]
    for r in (r for r in results if r["bench"] == "models_rates"):
        lines.append(f"{r['env']:<12} {r['variant']:<28} {r['feed_samples_per_s']:>12,.0f} "
                     f"{r['step_samples_per_s']:>12,.0f} {r['feed_over_step']:>10.2f}")
    return "\n".join(lines)


def format_table(results: Sequence[dict]) -> str:
    lines = []
    for env in dict.fromkeys(r["env"] for r in results if r["bench"] == "models_quality"):
        rows = [r for r in results if r["bench"] == "models_quality" and r["env"] == env]
        paired = paired_for(rows)
        deltas = overall(paired)
        lines.append(f"{env} ({rows[0]['train_rows']:,} train / {rows[0]['test_rows']:,} test rows, "
                     f"seeds {rows[0]['seeds']}, device {rows[0]['device']})")
        oracle = all("oracle_auc" in r for r in rows)
        if oracle:
            lines.append(f"  oracle on the same test rows: AUC {rows[0]['oracle_auc']:.4f}  GAUC "
                         f"{rows[0]['oracle_gauc']:.4f}  LogLoss {rows[0]['oracle_logloss']:.4f}")
            if "oracle_relation_auc" in rows[0]:
                lines.append(f"  partial oracles (AUC): interest relation alone {rows[0]['oracle_relation_auc']:.4f}, "
                             f"+ item quality {rows[0]['oracle_relation_quality_auc']:.4f} (the rest is the user's "
                             "own click propensity)")
            if "oracle_relation_clicks_quality_auc" in rows[0]:
                learnable = rows[0]["oracle_relation_clicks_quality_auc"]
                lines.append(f"  learnable ceiling: relation + each item's quality as its training clicks reveal it "
                             f"{learnable:.4f} (lift {lift_share(learnable, rows[0]['oracle_auc']):.3f})")
        validated = any("valid_auc" in r for r in rows)
        lines.append(f"  {'model':<22} {'AUC':>15} {'GAUC':>15} {'LogLoss':>15}"
                     + (f" {'valid':>6}" if validated else "")
                     + (f" {'lift':>6}" if oracle else "")
                     + f" {'best ep':>8} {'train s':>8} {'train/s':>8} {'feed/s':>8} {'step/s':>8}"
                     + (f"  {'Δ AUC vs r2led [95% CI]':<28}" if deltas else ""))
        for r in rows:
            lines.append(f"  {r['variant']:<22} {r['auc']:.4f}±{r['auc_std']:.4f} {r['gauc']:.4f}±{r['gauc_std']:.4f} "
                         f"{r['logloss']:.4f}±{r['logloss_std']:.4f}"
                         + ((f" {r['valid_auc']:.4f}" if "valid_auc" in r else f" {'-':>6}") if validated else "")
                         + (f" {r['lift_share']:>6.3f}" if oracle else "")
                         + f" {_best_epochs(r)} {r['train_s']:>8.1f} {r['train_samples_per_s']:>8,.0f}"
                         + f" {_rate(r, 'feed_samples_per_s')} {_rate(r, 'step_samples_per_s')}"
                         + (f"  {format_delta(deltas.get(r['variant'])):<28}" if deltas else ""))
        if validated:
            lines.append("  valid: the best evaluation's AUC on the whole validation split, mean over seeds (what "
                         "picks a default; AUC, GAUC and LogLoss are the test split's)")
        if oracle:
            lines.append("  lift = (AUC - 0.5) / (oracle AUC - 0.5), mean over seeds")
        lines.append("  best ep: the epoch early stopping kept, per seed (1 = the first; at most the run's max epochs)")
        tuned = {r.get("tuned_as") or r["model"]: r for r in rows if r.get("tuned") and not r.get("counterfactual")}
        if tuned:
            lines.append(f"  tuned parameters ({rows[0].get('tuning_trials', '?')} trials each; a variant without "
                         "a study of its own uses its model's), with the study's best validation AUC:")
            for study, r in tuned.items():
                values = ", ".join(f"{k.split('.', 1)[-1]}={_short(v)}" for k, v in sorted(r["tuned"].items()))
                best = f"{r['tuning_valid_auc']:.4f}  " if r.get("tuning_valid_auc") else ""
                lines.append(f"    {study:<10} {best}{values}")
        if deltas:
            lines.append("  Δ AUC: mean over seeds minus r2led's, paired on the same test rows; 95% CI from the user "
                         "bootstrap (every seed of both on each resample)")
            segment_table = format_segments(paired)
            if segment_table:
                lines.append(segment_table)
        lines.append("  train/s: whole training run; feed/s: one epoch of its feed alone; step/s: its forward, "
                     "backward and Adam step alone on batches in memory (rows/s)")
        diagnosed = [r for r in rows if r.get("diagnostics")]
        if diagnosed:
            lines.append(f"  R2LED diagnostics (seed {rows[0]['seeds'][0]}, test rows): gate ID weight mean [p10, p90]; "
                         "fusion weight per route (non-empty share)")
            for r in diagnosed:
                d = r["diagnostics"]
                gate = d.get("gate_id_weight")
                gate_text = f"{gate['mean']:.3f} [{gate['p10']:.3f}, {gate['p90']:.3f}]" if gate else "-"
                weights = "  ".join(f"{k} {v:.3f} ({d['route_nonempty'][k]:.2f})" for k, v in d["route_weight"].items())
                lines.append(f"  {r['variant']:<28} gate {gate_text:<22} {weights}")
            segmented = [r for r in diagnosed if r["diagnostics"].get("by_segment")]
            if segmented:
                lines.append("  the same by segment: gate ID weight mean; route weights (in route order); entropy")
                for r in segmented:
                    for family, values in r["diagnostics"]["by_segment"].items():
                        cells = []
                        for value, d in values.items():
                            gate = d.get("gate_id_weight")
                            cells.append(f"{value}: " + (f"g {gate['mean']:.2f} " if gate else "")
                                         + "/".join(f"{v:.2f}" for v in d["route_weight"].values())
                                         + f" H {d['route_entropy']:.2f}")
                        lines.append(f"    {r['variant']:<28} {family:<9} " + "; ".join(cells))
    latency = [r for r in results if r["bench"] == "models_latency"]
    if latency:
        lengths = sorted({r["t_max"] for r in latency})
        lines.append("inference ms per 1,000 samples (random inputs, " + latency[0]["device"] + ")")
        lines.append(f"  {'model':<22} " + " ".join(f"{'T=' + str(t):>10}" for t in lengths))
        for label in dict.fromkeys(r["variant"] for r in latency):
            cells = {r["t_max"]: r["ms_per_1000"] for r in latency if r["variant"] == label}
            lines.append(f"  {label:<22} " + " ".join(f"{cells[t]:>10.2f}" for t in lengths))
        for t in lengths:
            cells = {r["variant"]: r["ms_per_1000"] for r in latency if r["t_max"] == t}
            if "r2led" in cells and "din_long" in cells:
                lines.append(f"  din_long / r2led at T={t}: {cells['din_long'] / cells['r2led']:.2f}x")
    return "\n".join(lines)


def _short(value: object) -> str:
    """A tuned value as the table prints it: floats to 3 significant digits."""
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _best_epochs(row: Mapping) -> str:
    """The kept epoch of each seed, 1-based ("2/3/2"); rows saved before it was recorded show '-'."""
    epochs = row.get("best_epochs")
    return f"{'/'.join(str(e + 1) for e in epochs):>8}" if epochs else f"{'-':>8}"


def _rate(row: Mapping, key: str) -> str:
    """A rows/s cell; rows saved before the rate was measured show '-'."""
    return f"{row[key]:>8,.0f}" if key in row else f"{'-':>8}"


def plot(results: Sequence[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    quality_rows = [r for r in results if r["bench"] == "models_quality"]
    envs = list(dict.fromkeys(r["env"] for r in quality_rows))
    figure, axes = plt.subplots(1, len(envs) + 1, figsize=(6 * (len(envs) + 1), 4.5))
    axes = list(axes) if len(envs) else [axes]
    for axis, env in zip(axes, envs):
        rows = [r for r in quality_rows if r["env"] == env]
        axis.barh([r["variant"] for r in rows], [r["auc"] for r in rows], xerr=[r["auc_std"] for r in rows])
        low = min(r["auc"] - r["auc_std"] for r in rows)
        axis.set(xlim=(max(0.0, low - 0.02), min(1.0, max(r["auc"] + r["auc_std"] for r in rows) + 0.01)),
                 title=f"test AUC, {env}", xlabel="AUC (mean ± std over seeds)")
        axis.invert_yaxis()
    latency = [r for r in results if r["bench"] == "models_latency"]
    for label in dict.fromkeys(r["variant"] for r in latency):
        points = sorted((r["t_max"], r["ms_per_1000"]) for r in latency if r["variant"] == label)
        axes[-1].plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label)
    axes[-1].set(xlabel="T_max", ylabel="ms per 1,000 samples", title="inference latency", yscale="log")
    if latency:
        axes[-1].legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
