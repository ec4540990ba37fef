"""Every registry search the code makes is one Databricks Unity Catalog accepts.

UC's model-version search takes a single equality on `name` or on `run_id` (no AND, no tags, no
order_by), pages its results, and leaves tags and aliases out of them (MLflow's UC store,
`mlflow/store/_unity_catalog/registry/rest_store.py`). `UnityCatalogLikeClient` answers the search
that way and refuses anything else, so these tests fail if a search the code makes would fail on UC.
It stands in for the registry client in these grammar checks only; the other registry tests use the
real local (SQLite) registry.
"""

from __future__ import annotations

import re

import pytest
from mlflow.entities.model_registry import ModelVersion, ModelVersionTag
from mlflow.exceptions import MlflowException
from mlflow.store.entities.paged_list import PagedList

import r2led_model.tracking.mlflow_model as mlflow_model
from r2led_model.tracking.mlflow_model import model_version, registry_filter, versions_of_run

UC_FILTER = re.compile(r"\s*(name|run_id)\s*=\s*'([^']*)'\s*")
UC_MAX_RESULTS = 10_000


class UnityCatalogLikeClient:
    """`search_model_versions` and `get_model_version` as the Unity Catalog registry answers them."""

    def __init__(self, versions: list[tuple[str, str, str, dict[str, str]]]) -> None:
        self.versions = versions  # (name, version, run_id, tags)
        self.filters: list[str] = []

    def search_model_versions(self, filter_string=None, max_results=UC_MAX_RESULTS, order_by=None, page_token=None):
        if order_by:
            raise MlflowException("Argument 'order_by' is unsupported for models in the Unity Catalog.")
        match = UC_FILTER.fullmatch(filter_string or "")
        if match is None or not 0 < max_results <= UC_MAX_RESULTS:
            raise MlflowException(f"INVALID_PARAMETER_VALUE: unsupported filter {filter_string!r} "
                                  f"(max_results {max_results})")
        self.filters.append(filter_string)
        key, value = match.groups()
        hits = [v for v in self.versions if (v[0] if key == "name" else v[2]) == value]
        start = int(page_token or 0)
        end = start + max_results
        page = [ModelVersion(name, version, 0, run_id=run_id) for name, version, run_id, _ in hits[start:end]]
        return PagedList(page, str(end) if end < len(hits) else None)  # no tags, no aliases

    def get_model_version(self, name, version):
        for found_name, found_version, run_id, tags in self.versions:
            if (found_name, found_version) == (name, str(version)):
                return ModelVersion(name, found_version, 0, run_id=run_id,
                                    tags=[ModelVersionTag(k, v) for k, v in tags.items()])
        raise MlflowException(f"RESOURCE_DOES_NOT_EXIST: {name} version {version}")


@pytest.fixture
def registry(monkeypatch):
    """Seven versions of `ctr` from three runs (and one of another model), in pages of two."""
    client = UnityCatalogLikeClient([
        ("ctr", "1", "run-a", {}), ("ctr", "2", "run-b", {}), ("ctr", "3", "run-a", {}),
        ("other", "1", "run-a", {}), ("ctr", "4", "run-c", {}), ("ctr", "5", "run-b", {}),
        ("ctr", "6", "run-a", {}), ("ctr", "7", "run-c", {"architecture": "r2led", "test_auc": "0.710000"}),
    ])
    monkeypatch.setattr(mlflow_model, "MlflowClient", lambda: client)
    monkeypatch.setattr(mlflow_model, "SEARCH_PAGE_SIZE", 2)
    return client


def test_the_filter_is_one_equality_on_name_or_run_id():
    assert registry_filter("name", "main.ml.r2led_ctr") == "name = 'main.ml.r2led_ctr'"
    assert registry_filter("run_id", "abc123") == "run_id = 'abc123'"
    with pytest.raises(ValueError, match="one of name, run_id, not 'tags.stage'"):
        registry_filter("tags.stage", "train")
    with pytest.raises(ValueError, match="cannot hold a quote"):
        registry_filter("name", "it's")


def test_the_stand_in_refuses_what_unity_catalog_refuses(registry):
    for refused in ("name='ctr' and run_id='run-a'", "tags.k = 'v'", "name LIKE 'ctr%'", ""):
        with pytest.raises(MlflowException, match="INVALID_PARAMETER_VALUE"):
            registry.search_model_versions(refused)
    with pytest.raises(MlflowException, match="order_by"):
        registry.search_model_versions("name = 'ctr'", order_by=["version_number DESC"])


def test_versions_of_a_run_come_from_a_name_search_over_every_page(registry, make_config):
    config = make_config()
    assert versions_of_run(config.mlflow, "ctr", "run-a") == ["6", "3", "1"]
    assert versions_of_run(config.mlflow, "ctr", "run-c") == ["7", "4"]
    assert versions_of_run(config.mlflow, "ctr", "run-z") == []
    assert set(registry.filters) == {"name = 'ctr'"}
    assert len(registry.filters) == 3 * 4  # 7 versions in pages of 2, for each of the three calls


def test_the_newest_version_is_read_again_for_the_tags_a_search_leaves_out(registry, make_config):
    config = make_config()
    newest = model_version(config.mlflow, "ctr")
    assert (newest.version, newest.run_id) == ("7", "run-c")
    assert newest.tags == {"architecture": "r2led", "test_auc": "0.710000"}
    assert model_version(config.mlflow, "missing") is None
    assert set(registry.filters) == {"name = 'ctr'", "name = 'missing'"}
