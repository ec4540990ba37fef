"""What a dated run tells its operator: one report per stage it ran or skipped, the summary table made
when the run ends (failed or not; the command's `main` prints it), and the same summary as an MLflow run."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from r2led_model.config import Config

log = logging.getLogger(__name__)


@dataclass
class StageReport:
    stage: str
    status: str  # ran, skipped, failed
    rows_in: int | None = None
    rows_out: int | None = None
    seconds: float = 0.0
    table_versions: dict[str, int | None] = field(default_factory=dict)
    detail: dict[str, object] = field(default_factory=dict)
    day: str = ""  # the date the stage ran for (a run catching up on missed days runs several)


def report_run(config: Config, day: str, reports: list[StageReport], *, backfill: bool = False) -> str:
    """Log the run's summary to MLflow (which never fails the run) and return its table."""
    log_summary(config, day, reports, backfill=backfill)
    return summary_table(day, reports, backfill=backfill)


def summary_table(day: str, reports: list[StageReport], *, backfill: bool = False) -> str:
    def num(value: int | None) -> str:
        return "" if value is None else f"{value:,}"

    days = list(dict.fromkeys(r.day for r in reports)) or [day]
    header = f"# r2led pipeline --date {day}" + (" --backfill" if backfill else "")
    if len(days) > 1:
        header += f" (days processed: {', '.join(days)})"
    lines = [header]
    for current in days:
        if len(days) > 1:
            lines.append(f"## {current}" + ("" if current == day else " (missed: data stages)"))
        lines.append(f"{'stage':<19} {'status':<8} {'rows in':>10} {'rows out':>10} {'seconds':>8}  "
                     "delta versions / note")
        for r in reports:
            if r.day != current and len(days) > 1:
                continue
            versions = ", ".join(f"{t}@{v}" for t, v in r.table_versions.items())
            note = note_of(r)
            lines.append(f"{r.stage:<19} {r.status:<8} {num(r.rows_in):>10} {num(r.rows_out):>10} "
                         f"{r.seconds:>8.1f}  {'; '.join(x for x in (versions, note) if x)}")
    return "\n".join(lines)


def note_of(report: StageReport) -> str:
    """The one fact per stage an operator looks for first."""
    d = report.detail
    if "error" in d:
        return str(d["error"])[:120]
    if d.get("skipped_day"):
        return "day skipped by the operator (--skip-day): nothing ingested"
    if report.stage == "ingest" and d.get("empty_day"):
        return "empty day: no input for the date, nothing ingested (ingest.empty_day: allow)"
    if report.stage == "ingest" and "accepted" in d:
        counts = f"read = {d['accepted']:,} accepted + {d['rejected']:,} rejected" + (
            f" + {d['deferred']:,} deferred" if d.get("deferred") else "")
        return f"{counts}; catch-up: every day up to the date" if d.get("catch_up") else counts
    if report.stage == "ingest" and d.get("catch_up"):
        return "catch-up: every day up to the date"
    if report.stage == "train" and d.get("action") == "not trained":
        return f"not trained: no examples in split(s) {', '.join(d['empty_splits'])} (quiet days); the champion stays"
    if report.stage == "promote" and d.get("action") == "no challenger":
        return "no challenger tonight"
    if "action" in d:
        return f"{d['action']} {d.get('codebook_version') or d.get('collab_version')}"
    if report.stage == "train" and "model_version" in d:
        return f"version {d['model_version']}, test AUC {float(d.get('test_auc', float('nan'))):.4f}"
    if report.stage == "promote" and "challenger" in d:
        verdict = "PROMOTED" if d["promoted"] else "not promoted"
        return f"version {d['challenger']} {verdict} (champion before: {d['champion_before']}): {d['reason'][:80]}"
    if report.stage == "score" and "model_version" in d:
        return f"scored with version {d['model_version']}"
    if d.get("full_rebuild"):
        return "full rebuild"
    return ""


def log_summary(config: Config, day: str, reports: list[StageReport], *, backfill: bool = False) -> None:
    """The summary as an MLflow run (params, per-stage metrics, summary.json); never fails the pipeline."""
    from r2led_model.tracking.runs import tracked_run

    try:
        name = f"pipeline-{day}" + ("-backfill" if backfill else "")
        with tracked_run(config, run_name=name, tags={"stage": "pipeline", "pipeline_date": day}) as run:
            run.log_params({"run_date": day, "stages": ",".join(r.stage for r in reports),
                            "statuses": ",".join(f"{r.stage}={r.status}" for r in reports)[:500]})
            metrics = {}
            for r in reports:
                key = r.stage.replace("-", "_") if r.day in ("", day) else f"{r.day}.{r.stage.replace('-', '_')}"
                metrics[f"{key}.seconds"] = r.seconds
                if r.rows_in is not None:
                    metrics[f"{key}.rows_in"] = r.rows_in
                if r.rows_out is not None:
                    metrics[f"{key}.rows_out"] = r.rows_out
            run.log_metrics(metrics)
            run.log_dict({"run_date": day, "stages": [r.__dict__ for r in reports]}, "summary.json")
            run.log_text(summary_table(day, reports, backfill=backfill), "summary.txt")
    except Exception:
        log.exception("could not log the pipeline summary to MLflow")
