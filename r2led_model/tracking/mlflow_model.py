"""The MLflow side of a trained model: a pyfunc flavour, logging with signature and pinned
requirements, and the registry calls promotion and scoring need (aliases, version tags).

Together with `runs.py` (and `pyfunc_model.py`, the model's code file) this is the only place that
imports mlflow. A model is logged as code (MLflow "models from code"): `python_model=` is the path of
`pyfunc_model.py`, so the model folder holds no pickle; the weights are the `bundle` artifact
(`bundle.pt`, read with `torch.load(weights_only=True)`) and the `r2led_model` package ships as code,
so a registered model loads anywhere with the pinned requirements and no install of this project.
`load_bundle` (promotion, scoring) reads the `bundle` artifact directly and runs no model code.
"""

from __future__ import annotations

import logging
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import mlflow
import mlflow.pyfunc
import numpy as np
import pandas as pd
import torch
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.models import Model, infer_signature
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from r2led_model.config import MlflowConfig
from r2led_model.models.inputs import INPUT_LAYOUT
from r2led_model.serving.catalog import CATALOG_ARTIFACT, ServingCatalog
from r2led_model.serving.requests import RawRequests, RequestError
from r2led_model.serving.scorer import score_requests
from r2led_model.tracking.bundle import LOOKUP_KEY, DataVersions, ModelBundle, frame_arrays, predict_arrays
from r2led_model.tracking.runs import configure

log = logging.getLogger(__name__)

PACKAGE_DIR = Path(__file__).resolve().parents[1]  # r2led_model: it travels whole as the model's code
# The models-from-code file `log_ctr_model` logs as `python_model`: it calls `set_model(CtrPyfuncModel())`.
PYFUNC_CODE = Path(__file__).resolve().parent / "pyfunc_model.py"
BUNDLE_ARTIFACT = "bundle"


def package_folder(package_dir: Path, scratch: Path) -> Path:
    """The package as a real folder MLflow can copy: `package_dir` itself, or, when the package is
    imported from a zip (the wheel on spark-submit's --py-files: `.../r2led-0.1.0.whl/r2led_model`),
    its files extracted under `scratch`."""
    if package_dir.is_dir():
        return package_dir
    archive = next((p for p in package_dir.parents if p.is_file() and zipfile.is_zipfile(p)), None)
    if archive is None:
        raise FileNotFoundError(f"{package_dir} is neither a folder nor inside a zip archive")
    inside = package_dir.relative_to(archive).as_posix() + "/"
    with zipfile.ZipFile(archive) as zipped:
        members = [m for m in zipped.namelist() if m.startswith(inside) and not m.endswith("/")]
        zipped.extractall(scratch, members)
    return scratch / inside.rstrip("/")


class CtrPyfuncModel(mlflow.pyfunc.PythonModel):
    """The registered CTR model. Its input contract depends on what it was logged with:

    * with a serving catalogue (every model `train` registers): raw-id requests, one per row
      (`serving.requests`: item_id, request_ts, history_item_ids, history_ts); output one row per
      request (`serving.scorer.OUTPUT_COLUMNS`: score first, then how the request was treated). A
      malformed request raises an MlflowException with INVALID_PARAMETER_VALUE: HTTP 400 when served;
    * without one (versions registered before it): a dict of int64 arrays named like the
      training_examples columns the model reads (or a DataFrame of them); output the click
      probabilities (N,).

    `predict`'s `model_input: pd.DataFrame` hint is one MLflow reads as "validate nothing, infer no
    signature": the logged signature describes the input, and its enforcement hands `predict` what it
    describes (a DataFrame of the raw-id columns, or the dict of int64 arrays); the class itself also
    takes a DataFrame for the array contract.

    It stays here under this name: versions logged before models-from-code hold a cloudpickle of an
    instance, which refers to `r2led_model.tracking.mlflow_model.CtrPyfuncModel`; `mlflow.pyfunc.load_model`
    still loads them (MLflow unpickles, as MLFLOW_ALLOW_PICKLE_DESERIALIZATION allows by default), with
    the class from the `r2led_model` shipped in their folder, or the one already imported.
    """

    def load_context(self, context) -> None:
        self.bundle = ModelBundle.from_bytes(Path(context.artifacts[BUNDLE_ARTIFACT]).read_bytes())
        self.task = self.bundle.build()
        catalog = context.artifacts.get(CATALOG_ARTIFACT)
        self.catalog = ServingCatalog.from_bytes(Path(catalog).read_bytes()) if catalog else None

    def predict(self, context, model_input: pd.DataFrame,
                params: dict[str, Any] | None = None) -> np.ndarray | pd.DataFrame:
        if self.catalog is not None:
            return self.score_raw(model_input)
        if isinstance(model_input, pd.DataFrame):
            model_input = frame_arrays(model_input, self.bundle.input_columns)
        return predict_arrays(self.task, {c: model_input[c] for c in self.bundle.input_columns})

    def score_raw(self, model_input: pd.DataFrame | Mapping[str, Any]) -> pd.DataFrame:
        """Raw-id requests → OUTPUT_COLUMNS; a malformed request → MlflowException (HTTP 400)."""
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(dict(model_input))
        try:
            requests = RawRequests.from_frame(frame)
        except RequestError as exc:
            raise MlflowException(str(exc), error_code=INVALID_PARAMETER_VALUE) from exc
        return self.score_requests(requests)

    def score_requests(self, requests: RawRequests) -> pd.DataFrame:
        """Checked requests → OUTPUT_COLUMNS (what `score_raw` runs once the frame is read)."""
        return score_requests(self.task, self.catalog, requests, self.bundle.input_columns)


def pip_requirements() -> list[str]:
    """Exact versions of what the pyfunc imports (a `+cpu` local tag dropped, so any build matches)."""
    import yaml

    return [f"torch=={torch.__version__.split('+')[0]}", f"numpy=={np.__version__}", f"pandas=={pd.__version__}",
            f"mlflow=={mlflow.__version__}", f"pyyaml=={yaml.__version__}"]


@dataclass(frozen=True)
class RegisteredVersion:
    name: str
    version: str
    run_id: str
    tags: dict[str, str]
    model_id: str | None = None  # the MLflow 3 LoggedModel `log_ctr_model` logged (None when only looked up)


def log_ctr_model(bundle: ModelBundle, input_example: Mapping[str, np.ndarray], registered_name: str,
                  tags: Mapping[str, str], metrics: Mapping[str, float] | None = None,
                  catalog: ServingCatalog | None = None) -> RegisteredVersion:
    """Log the model in the active run (as code: no pickle), register it under `registered_name`, tag
    the new version, and log `metrics` (the test numbers) to the run and to the MLflow 3 logged model
    behind the version.

    With a serving `catalog` the model takes raw-id requests (its signature and input example are
    those of `serving.requests`; `input_example` is not used); without one, `input_example`'s arrays."""
    task = bundle.build()
    if catalog is not None:
        problems = catalog_incompatibilities(bundle, catalog)
        if problems:
            raise ValueError(f"the serving catalogue does not fit the model: {'; '.join(problems)}")
        example = example_requests(catalog)
        output = score_requests(task, catalog, RawRequests.from_frame(example), bundle.input_columns)
    else:
        example = {c: np.asarray(input_example[c], dtype=np.int64) for c in bundle.input_columns}
        output = predict_arrays(task, example)
    signature = infer_signature(example, output)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bundle.pt"
        path.write_bytes(bundle.to_bytes())
        artifacts = {BUNDLE_ARTIFACT: str(path)}
        if catalog is not None:
            catalog_path = Path(folder) / f"{CATALOG_ARTIFACT}.npz"
            catalog_path.write_bytes(catalog.to_bytes())
            artifacts[CATALOG_ARTIFACT] = str(catalog_path)
        package = package_folder(PACKAGE_DIR, Path(folder) / "code")
        info = mlflow.pyfunc.log_model(
            name="model", python_model=str(package / PYFUNC_CODE.relative_to(PACKAGE_DIR)), artifacts=artifacts,
            code_paths=[str(package)], signature=signature, input_example=example,
            pip_requirements=pip_requirements(), registered_model_name=registered_name)
    if metrics:
        mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, model_id=info.model_id)
    client = MlflowClient()
    version = str(info.registered_model_version)
    for key, value in tags.items():
        client.set_model_version_tag(registered_name, version, key, str(value))
    run_id = mlflow.active_run().info.run_id
    log.info("registered %s version %s (run %s)", registered_name, version, run_id)
    return RegisteredVersion(registered_name, version, run_id, dict(tags), info.model_id)


def catalog_incompatibilities(bundle: ModelBundle, catalog: ServingCatalog) -> list[str]:
    """Why `catalog` cannot serve `bundle` (empty: it can): other feature versions, a model without item
    lookups (input layout 1), indices beyond the model's lookups, or other windows and routes."""
    problems = bundle.versions.compatible_with(DataVersions(catalog.codebook_version, catalog.collab_version))
    if bundle.input_layout != INPUT_LAYOUT:
        problems.append("the model holds no item lookups (input layout 1)")
    else:
        rows = len(bundle.state_dict[f"{LOOKUP_KEY}.category"])
        if len(catalog.index.item_idx) and int(catalog.index.item_idx.max()) >= rows:
            problems.append(f"the catalogue indexes items up to {int(catalog.index.item_idx.max())}, the model's "
                            f"lookups {rows - 1}")
    settings, spec = catalog.settings, bundle.spec
    for name, mine, theirs in (("routes", tuple(spec.routes), settings.plan.route_names),
                               ("route_k", tuple(spec.route_k), tuple(r.k for r in settings.plan.routes)),
                               ("short_window", spec.short_window, settings.short_window),
                               ("long_history", spec.long_history, settings.long_history),
                               ("recency_buckets", spec.recency_buckets, settings.recency_buckets)):
        if mine != theirs:
            problems.append(f"{name}: model {mine}, catalogue {theirs}")
    return problems


def example_requests(catalog: ServingCatalog, rows: int = 2) -> pd.DataFrame:
    """A small raw-id input example for the signature: a history of the catalogue's first items, an hour
    apart, and each of them as the candidate an hour after the last."""
    ids = catalog.index.item_ids[:3].astype(np.int64)
    if not len(ids):
        raise ValueError("the serving catalogue indexes no items")
    times = np.arange(1, len(ids) + 1, dtype=np.int64) * 3600
    return pd.DataFrame({"item_id": np.resize(ids, rows), "request_ts": np.full(rows, times[-1] + 3600),
                         "history_item_ids": [ids.tolist()] * rows, "history_ts": [times.tolist()] * rows})


# Registry searches use the one filter form the Databricks Unity Catalog registry accepts: a single
# equality on `name` or on `run_id`; no AND, no tags, no LIKE, and no order_by (MLflow's UC store
# refuses it). Every other registry accepts that form too; anything finer is filtered here, in Python.
REGISTRY_FILTER_KEYS = ("name", "run_id")
# Versions per search page (Databricks caps a page at 10,000).
SEARCH_PAGE_SIZE = 1000


def registry_filter(key: str, value: str) -> str:
    """`key = 'value'`: the one model-version search filter every registry accepts (REGISTRY_FILTER_KEYS)."""
    if key not in REGISTRY_FILTER_KEYS:
        raise ValueError(f"a registry search filters on one of {', '.join(REGISTRY_FILTER_KEYS)}, not {key!r}")
    if "'" in value:
        raise ValueError(f"{key} {value!r}: a registry search filter cannot hold a quote")
    return f"{key} = '{value}'"


def _versions_named(client: MlflowClient, name: str) -> list[ModelVersion]:
    """Every version of `name`, page after page. A search result may lack tags and aliases (Unity
    Catalog leaves them out): read a version with `get_model_version` for those."""
    found: list[ModelVersion] = []
    token = None
    while True:
        page = client.search_model_versions(registry_filter("name", name), max_results=SEARCH_PAGE_SIZE,
                                            page_token=token)
        found.extend(page)
        token = page.token
        if not token:
            return found


def versions_of_run(config: MlflowConfig, name: str, run_id: str) -> list[str]:
    """Versions of `name` registered from `run_id`, newest first."""
    configure(config)
    found = [v for v in _versions_named(MlflowClient(), name) if v.run_id == run_id]
    return [str(v.version) for v in sorted(found, key=lambda v: -int(v.version))]


def model_version(config: MlflowConfig, name: str, *, version: str | None = None,
                  alias: str | None = None) -> RegisteredVersion | None:
    """A registered version by number or alias (None when the alias is unset); latest when neither is given."""
    configure(config)
    client = MlflowClient()
    try:
        if alias is not None:
            found = client.get_model_version_by_alias(name, alias)
        elif version is not None:
            found = client.get_model_version(name, version)
        else:
            versions = _versions_named(client, name)
            if not versions:
                return None
            found = client.get_model_version(name, max(versions, key=lambda v: int(v.version)).version)
    except mlflow.exceptions.MlflowException as exc:
        if alias is not None and ("alias" in str(exc).lower() or "not found" in str(exc).lower()
                                  or "RESOURCE_DOES_NOT_EXIST" in str(exc)):
            return None
        raise
    return RegisteredVersion(name, str(found.version), found.run_id, dict(found.tags))


def set_alias(config: MlflowConfig, name: str, alias: str, version: str) -> None:
    configure(config)
    MlflowClient().set_registered_model_alias(name, alias, version)


def tag_version(config: MlflowConfig, name: str, version: str, tags: Mapping[str, str]) -> None:
    configure(config)
    client = MlflowClient()
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, str(value))


def load_bundle(config: MlflowConfig, uri: str) -> ModelBundle:
    """The bundle behind a `models:/NAME@alias` or `models:/NAME/version` URI.

    Read from the model's `bundle` artifact, not through `mlflow.pyfunc.load_model`: no model code runs
    and nothing is unpickled, and versions logged before models-from-code (a pickled pyfunc, the same
    artifact) load the same way.
    """
    configure(config)
    pyfunc = Model.load(uri).flavors[mlflow.pyfunc.FLAVOR_NAME]
    relative = pyfunc["artifacts"][BUNDLE_ARTIFACT]["path"]  # artifacts/bundle.pt
    with tempfile.TemporaryDirectory() as folder:
        local = mlflow.artifacts.download_artifacts(artifact_uri=f"{uri.rstrip('/')}/{relative}", dst_path=folder)
        return ModelBundle.from_bytes(Path(local).read_bytes())
