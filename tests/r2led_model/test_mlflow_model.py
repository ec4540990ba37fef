"""The registered model: logged as code with no pickle, loadable from its folder alone in a process
without this project, and `load_bundle` reads the weights of new and older (pickled) versions alike."""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
import tempfile
import warnings
import zipfile
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
import yaml
from mlflow import MlflowClient

from r2led_model.config import ModelConfig
from r2led_model.models import FeatureSpec, build_model
from r2led_model.models.inputs import random_batch
from r2led_model.tracking.bundle import DataVersions, ModelBundle, predict_arrays
from r2led_model.tracking.mlflow_model import (BUNDLE_ARTIFACT, PACKAGE_DIR, CtrPyfuncModel, load_bundle, log_ctr_model,
                                               package_folder, pip_requirements)
from r2led_model.tracking.runs import tracked_run

SPEC = FeatureSpec(num_items=50, num_categories=5, sid_levels=2, sid_vocab=8, routes=("sid1", "collab"),
                   route_k=(3, 2), short_window=3, long_history=6, recency_buckets=4)
MODEL = ModelConfig(embedding_dim=8, mlp_dims=(16,))

# Run in a fresh interpreter with `-S`: site-packages is put on sys.path by hand, so the .pth files (the
# editable install of this project among them) are not processed and `r2led_model` is not importable
# until MLflow adds the model's own code folder.
LOAD_ALONE = """
import importlib.util, json, sys, warnings
sys.path.append(sys.argv[1])
assert importlib.util.find_spec("r2led_model") is None, "the project is importable before the load"
import mlflow.pyfunc, numpy as np
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    model = mlflow.pyfunc.load_model(sys.argv[2])
    inputs = dict(np.load(sys.argv[3]))
    np.save(sys.argv[4], model.predict(inputs))
import r2led_model
print(json.dumps({"r2led_model": r2led_model.__file__, "warnings": [str(w.message) for w in caught]}))
"""


def site_without_the_project(root: Path) -> Path:
    """A folder of links to every entry of this interpreter's site-packages but the project's own (an
    editable install's .pth files are skipped by `-S` anyway; a wheel install puts the packages there)."""
    site = Path(sysconfig.get_paths()["purelib"])
    root.mkdir()
    own = {"r2led_model", "jobs"}
    for entry in site.iterdir():
        if entry.name in own or (entry.name.startswith("r2led-") and entry.name.endswith(".dist-info")):
            continue
        (root / entry.name).symlink_to(entry)
    return root


def type_hint_warnings(messages) -> list[str]:
    """MLflow's warnings about the pyfunc's `predict` type hints (missing, or unusable for validation)."""
    return [m for m in map(str, messages) if "type hint" in m.lower()]


def make_bundle(seed: int = 0) -> ModelBundle:
    torch.manual_seed(seed)
    model = build_model(MODEL.name, spec=SPEC, config=MODEL)
    return ModelBundle(MODEL, SPEC, DataVersions("cb-test", "cv-test"), model.state_dict())


def inputs_for(bundle: ModelBundle, rows: int = 16) -> dict[str, np.ndarray]:
    batch = random_batch(SPEC, rows, torch.Generator().manual_seed(7))
    return {c: batch[c].numpy() for c in bundle.input_columns}


def log_pickled_version(bundle: ModelBundle, name: str, example: dict[str, np.ndarray]) -> str:
    """A version logged the way versions were before models-from-code: a cloudpickled instance."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bundle.pt"
        path.write_bytes(bundle.to_bytes())
        info = mlflow.pyfunc.log_model(
            name="model", python_model=CtrPyfuncModel(), artifacts={BUNDLE_ARTIFACT: str(path)},
            code_paths=[str(PACKAGE_DIR)], input_example=example, pip_requirements=pip_requirements(),
            registered_model_name=name)
    return str(info.registered_model_version)


def test_a_logged_model_holds_no_pickle_and_predicts_from_its_folder_alone(make_config, tmp_path):
    config = make_config()
    bundle = make_bundle()
    inputs = inputs_for(bundle)
    test = {"test_auc": 0.71, "test_gauc": 0.64, "test_logloss": 0.52, "test_n": 300.0}
    with tracked_run(config, "log"), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        registered = log_ctr_model(bundle, {c: v[:4] for c, v in inputs.items()}, "ctr", tags={"k": "v"},
                                   metrics=test)
    assert type_hint_warnings(w.message for w in caught) == []
    # The test metrics sit on the logged model (the version's model) and, once each, on the run.
    assert registered.model_id == mlflow.models.get_model_info(f"models:/ctr/{registered.version}").model_id
    assert {m.key: m.value for m in mlflow.get_logged_model(registered.model_id).metrics} == test
    assert {k: v for k, v in MlflowClient().get_run(registered.run_id).data.metrics.items()} == test
    assert [len(MlflowClient().get_metric_history(registered.run_id, k)) for k in test] == [1, 1, 1, 1]
    uri = f"models:/ctr/{registered.version}"
    folder = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(tmp_path / "model")))

    # Models from code: the MLmodel names the code file and a code loader, no pickled python_model.
    assert [p.name for p in folder.rglob("*.pkl")] == []
    pyfunc = yaml.safe_load((folder / "MLmodel").read_text())["flavors"]["python_function"]
    assert pyfunc["loader_module"] == "mlflow.pyfunc.loaders.code_model"
    assert Path(pyfunc["model_code_path"]).name == "pyfunc_model.py" and (folder / "pyfunc_model.py").is_file()
    assert "python_model" not in pyfunc  # the key of python_model.pkl (cloudpickle_version is written anyway)
    assert pyfunc["artifacts"][BUNDLE_ARTIFACT]["path"] == "artifacts/bundle.pt"
    assert (folder / pyfunc["code"] / "r2led_model" / "tracking" / "bundle.py").is_file()
    assert MlflowClient().get_model_version("ctr", registered.version).tags["k"] == "v"

    # A fresh process, elsewhere, with only the folder: it imports the shipped r2led_model and predicts
    # exactly what the bundle predicts in this process.
    np.savez(tmp_path / "inputs.npz", **inputs)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = subprocess.run(
        [sys.executable, "-S", "-c", LOAD_ALONE, str(site_without_the_project(tmp_path / "site")), str(folder),
         str(tmp_path / "inputs.npz"), str(tmp_path / "probs.npy")],
        cwd=elsewhere, env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "HOME": str(tmp_path)},
        capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    shipped = Path(report["r2led_model"])
    assert shipped.is_relative_to(folder)
    # The load defined the pyfunc class afresh (from the shipped package), and MLflow found its `predict`
    # type hints: no warning that they are missing or unusable.
    assert type_hint_warnings(report["warnings"]) == []
    expected = predict_arrays(bundle.build(), inputs)
    np.testing.assert_allclose(np.load(tmp_path / "probs.npy"), expected, rtol=0, atol=1e-7)
    assert len(expected) == 16 and np.ptp(expected) > 0  # real, varying probabilities


def test_load_bundle_reads_new_and_pickled_versions_without_unpickling(make_config, monkeypatch):
    config = make_config()
    new, old = make_bundle(seed=1), make_bundle(seed=2)
    inputs = inputs_for(new)
    with tracked_run(config, "log"):
        new_version = log_ctr_model(new, inputs, "ctr", tags={}).version
        old_version = log_pickled_version(old, "ctr", inputs)

    # With pickle refused, both bundles still load, and so does the models-from-code pyfunc.
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")
    for bundle, version in ((new, new_version), (old, old_version)):
        loaded = load_bundle(config.mlflow, f"models:/ctr/{version}")
        assert loaded.versions == bundle.versions and loaded.model_config == bundle.model_config
        assert loaded.state_dict.keys() == bundle.state_dict.keys()
        assert all(torch.equal(loaded.state_dict[k], v) for k, v in bundle.state_dict.items())
    client = MlflowClient()
    client.set_registered_model_alias("ctr", "champion", new_version)
    assert load_bundle(config.mlflow, "models:/ctr@champion").versions == new.versions
    served = mlflow.pyfunc.load_model(f"models:/ctr/{new_version}")
    assert served.predict(inputs) == pytest.approx(predict_arrays(new.build(), inputs), abs=1e-7)
    if hasattr(mlflow.environment_variables, "MLFLOW_ALLOW_PICKLE_DESERIALIZATION"):  # MLflow releases that have it
        with pytest.raises(mlflow.exceptions.MlflowException, match="pickle"):
            mlflow.pyfunc.load_model(f"models:/ctr/{old_version}")

    # The older, pickled version still serves through pyfunc where MLflow allows pickle (its default).
    monkeypatch.delenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION")
    legacy = mlflow.pyfunc.load_model(f"models:/ctr/{old_version}")
    assert legacy.predict(inputs) == pytest.approx(predict_arrays(old.build(), inputs), abs=1e-7)


def test_a_package_imported_from_a_wheel_is_extracted_into_a_folder_mlflow_can_copy(tmp_path):
    assert package_folder(PACKAGE_DIR, tmp_path / "unused") == PACKAGE_DIR
    wheel = tmp_path / "r2led-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zipped:
        for source in sorted(PACKAGE_DIR.rglob("*.py")):
            zipped.write(source, f"r2led_model/{source.relative_to(PACKAGE_DIR).as_posix()}")
        zipped.writestr("jobs/__init__.py", "")
    folder = package_folder(wheel / "r2led_model", tmp_path / "code")
    assert folder == tmp_path / "code" / "r2led_model"
    code_file = Path("tracking") / "pyfunc_model.py"
    assert (folder / code_file).read_bytes() == (PACKAGE_DIR / code_file).read_bytes()
    assert sorted(p.relative_to(folder) for p in folder.rglob("*.py")) == sorted(
        p.relative_to(PACKAGE_DIR) for p in PACKAGE_DIR.rglob("*.py"))
    assert not (tmp_path / "code" / "jobs").exists()
    with pytest.raises(FileNotFoundError, match="neither a folder nor inside a zip"):
        package_folder(tmp_path / "nowhere" / "r2led_model", tmp_path / "code2")


def test_deleting_the_previous_champions_version_leaves_no_stale_alias(make_config):
    """Promotion's alias moves on a real registry: once the replaced champion's version is deleted,
    `previous_champion` reads as missing (the registry drops a deleted version's aliases), never as
    a version that is gone."""
    from jobs.registry.promote import CHAMPION, PREVIOUS_CHAMPION, _move_champion
    from r2led_model.tracking.mlflow_model import model_version
    from r2led_model.tracking.runs import configure

    config = make_config()
    configure(config.mlflow)  # a sqlite registry in the test's folder
    client = MlflowClient()
    client.create_registered_model("ctr")
    first, second = (client.create_model_version("ctr", f"file:///nowhere/{i}").version for i in (1, 2))
    _move_champion(config, "ctr", str(first), expected=None)
    _move_champion(config, "ctr", str(second), expected=str(first))
    assert model_version(config.mlflow, "ctr", alias=PREVIOUS_CHAMPION).version == str(first)

    client.delete_model_version("ctr", first)
    assert client.get_registered_model("ctr").aliases == {CHAMPION: int(second)}
    assert model_version(config.mlflow, "ctr", alias=PREVIOUS_CHAMPION) is None
    assert model_version(config.mlflow, "ctr", alias=CHAMPION).version == str(second)


def test_versions_of_a_run_and_the_newest_version_read_every_page_of_a_real_registry(make_config, monkeypatch):
    """The searches UC allows (by name alone, then by run in Python) across the SQLite registry's real
    page tokens (tests/r2led_model/test_registry_filters.py checks the filters against UC's rules)."""
    import r2led_model.tracking.mlflow_model as mlflow_model
    from r2led_model.tracking.mlflow_model import model_version, versions_of_run
    from r2led_model.tracking.runs import configure

    config = make_config()
    configure(config.mlflow)
    monkeypatch.setattr(mlflow_model, "SEARCH_PAGE_SIZE", 2)
    client = MlflowClient()
    client.create_registered_model("ctr")
    runs = []
    for name in ("first", "second"):
        with tracked_run(config, name) as run:
            runs.append(run.run_id)
    for i, run_id in enumerate([runs[0], runs[1], runs[0], runs[1], runs[0]]):
        client.create_model_version("ctr", f"file:///nowhere/{i}", run_id=run_id, tags={"n": str(i)})
    assert versions_of_run(config.mlflow, "ctr", runs[0]) == ["5", "3", "1"]
    assert versions_of_run(config.mlflow, "ctr", runs[1]) == ["4", "2"]
    newest = model_version(config.mlflow, "ctr")
    assert (newest.version, newest.run_id, newest.tags) == ("5", runs[0], {"n": "4"})
