"""The one adapter around MLflow: experiments per dataset, runs, params, metrics and artifacts.

Local runs use a SQLite backend and artifacts under the workspace; every experiment is created
with an explicit artifact location so nothing lands in ./mlruns.
"""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path
from typing import Any, Iterator, Mapping

from r2led_model.config import Config, MlflowConfig

log = logging.getLogger(__name__)


def _uri(text: str) -> str:
    """sqlite:///relative/path → sqlite:////absolute/path, so runs from any folder share one store."""
    prefix = "sqlite:///"
    if text.startswith(prefix) and not text.startswith(prefix + "/"):
        path = Path(text[len(prefix):]).resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        return prefix + str(path)
    return text


def experiment_name(config: Config) -> str:
    return f"{config.mlflow.experiment_prefix}/{config.source.kind}"


def configure(config: MlflowConfig) -> None:
    import mlflow

    mlflow.set_tracking_uri(_uri(config.tracking_uri))
    mlflow.set_registry_uri(_uri(config.registry_uri or config.tracking_uri))


def ensure_experiment(config: MlflowConfig, name: str) -> str:
    import mlflow

    configure(config)
    existing = mlflow.get_experiment_by_name(name)
    if existing is not None:
        return existing.experiment_id
    location = config.artifact_root
    if not location:  # the tracking server's default store (Databricks manages its own)
        return mlflow.create_experiment(name)
    if "://" not in location:
        Path(location).mkdir(parents=True, exist_ok=True)
        location = Path(location).resolve().as_uri()
    return mlflow.create_experiment(name, artifact_location=location)


class Run:
    """A thin handle on the active run: what jobs log, without importing mlflow themselves."""

    def __init__(self, run_id: str):
        self.run_id = run_id

    def log_params(self, params: Mapping[str, Any]) -> None:
        import mlflow

        mlflow.log_params({k: (json.dumps(v) if isinstance(v, (list, dict, tuple)) else v) for k, v in params.items()})

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        import mlflow

        mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)

    def log_dict(self, data: Mapping[str, Any], artifact_file: str) -> None:
        import mlflow

        mlflow.log_dict(dict(data), artifact_file)

    def log_text(self, text: str, artifact_file: str) -> None:
        import mlflow

        mlflow.log_text(text, artifact_file)

    def log_figure(self, figure: Any, artifact_file: str) -> None:
        """Log a matplotlib figure, then close it: pyplot keeps every open figure alive otherwise."""
        import matplotlib.pyplot as plt
        import mlflow

        try:
            mlflow.log_figure(figure, artifact_file)
        finally:
            plt.close(figure)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        import mlflow

        mlflow.log_artifact(str(path), artifact_path)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        import mlflow

        mlflow.set_tags(dict(tags))


@contextlib.contextmanager
def tracked_run(config: Config, run_name: str, tags: Mapping[str, str] | None = None) -> Iterator[Run]:
    """An MLflow run in the dataset's experiment, with the resolved config logged as config.yaml (secrets redacted)."""
    import mlflow

    experiment_id = ensure_experiment(config.mlflow, experiment_name(config))
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=dict(tags or {})) as active:
        run = Run(active.info.run_id)
        run.log_text(config.to_redacted_yaml(), "config.yaml")  # secrets as ***: whoever reads the run sees it
        log.info("mlflow run %s (%s) in %s", active.info.run_id, run_name, experiment_name(config))
        yield run


@contextlib.contextmanager
def nested_run(run_name: str, tags: Mapping[str, str] | None = None) -> Iterator[Run]:
    """A child of the active run (e.g. one tuning trial inside its study's run)."""
    import mlflow

    parent = mlflow.active_run()
    if parent is None:
        raise RuntimeError("nested_run needs an active parent run (tracked_run)")
    # The parent's experiment, not the process's default one, which MLflow would pick otherwise.
    with mlflow.start_run(run_name=run_name, nested=True, experiment_id=parent.info.experiment_id,
                          tags=dict(tags or {})) as active:
        yield Run(active.info.run_id)


def child_runs(config: MlflowConfig, parent_run_id: str) -> list[tuple[str, dict[str, str], dict[str, float]]]:
    """(run_id, params, metrics) of a run's nested runs, oldest first."""
    import mlflow

    configure(config)
    parent = mlflow.get_run(parent_run_id)
    found = mlflow.search_runs(experiment_ids=[parent.info.experiment_id], output_format="list",
                               filter_string=f"tags.`mlflow.parentRunId` = '{parent_run_id}'",
                               order_by=["attributes.start_time ASC"])
    return [(r.info.run_id, dict(r.data.params), dict(r.data.metrics)) for r in found]


def run_data(config: MlflowConfig, run_id: str) -> tuple[dict, dict, list[str]]:
    """(params, metrics, artifact paths) of a finished run, for reports and tests."""
    from mlflow.tracking import MlflowClient

    configure(config)
    client = MlflowClient()
    run = client.get_run(run_id)

    def walk(path: str | None = None) -> list[str]:
        found = []
        for item in client.list_artifacts(run_id, path):
            found.extend(walk(item.path) if item.is_dir else [item.path])
        return found

    return dict(run.data.params), dict(run.data.metrics), walk()


def find_runs(config: Config, tags: Mapping[str, str]) -> list[tuple[str, dict[str, float]]]:
    """(run_id, metrics) of runs in the dataset's experiment carrying all of `tags`, newest first, whatever
    their status (a run cut off after registering its model still produced that model)."""
    import mlflow

    experiment = ensure_experiment(config.mlflow, experiment_name(config))
    query = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
    found = mlflow.search_runs(experiment_ids=[experiment], filter_string=query, output_format="list",
                               order_by=["attributes.start_time DESC"])
    return [(r.info.run_id, dict(r.data.metrics)) for r in found]
