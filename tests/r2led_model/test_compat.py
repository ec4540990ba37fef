"""The one door for what earlier releases wrote (`r2led_model/compat.py`): a stated removal version, and no
other module of the model package defining a reader of an older format."""

from __future__ import annotations

import ast
import importlib.metadata

import pytest
import torch
from packaging.version import Version

from r2led_model import compat
from tests.helpers import REPO


def test_the_shims_are_removed_in_a_release_after_this_one():
    assert Version(compat.REMOVED_IN) > Version(importlib.metadata.version("r2led"))


def test_no_other_model_module_defines_a_legacy_table_or_reader():
    defined = {}
    for path in (REPO / "r2led_model").rglob("*.py"):
        if path.name == "compat.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([t.id for t in node.targets if isinstance(t, ast.Name)] if isinstance(node, ast.Assign)
                     else [node.name] if isinstance(node, (ast.FunctionDef, ast.ClassDef)) else [])
            for name in names:
                if "legacy" in name.lower():
                    defined.setdefault(str(path.relative_to(REPO)), []).append(name)
    assert defined == {}, f"readers of older formats belong in r2led_model/compat.py: {defined}"


def test_flat_keys_move_to_their_models_section_and_a_sectioned_dict_is_left_alone():
    stored = {"name": "sim_hard", "embedding_dim": 8, "retrieve_k": 30, "gate": "sum", "sdim_hashes": 4}
    assert compat.sectioned_model_values(stored) == {
        "name": "sim_hard", "embedding_dim": 8, "sim_hard": {"retrieve_k": 30}}  # r2led's and sdim's dropped
    current = {"name": "r2led", "r2led": {"gate": "warmth", "occupancy_counts": "history"}}
    assert compat.sectioned_model_values(current) == current
    # A section saved before an option existed gets the value it was built with.
    before = {"name": "r2led", "r2led": {"gate": "warmth"}}
    assert compat.sectioned_model_values(before) == {"name": "r2led", "r2led": {"gate": "warmth",
                                                                               "occupancy_counts": "candidates"}}
    assert compat.sectioned_tuned_params("eta", {"model.retrieve_k": 20, "model.eta_hash_bits": 8,
                                                 "training.learning_rate": 0.01}) == {
        "model.eta.retrieve_k": 20, "model.eta.hash_bits": 8, "training.learning_rate": 0.01}
    assert compat.moved_model_key_message("retrieve_k", "model") == (
        "model.retrieve_k moved to the section of each model that reads it (model.sim_hard.retrieve_k, "
        "model.sim_soft.retrieve_k, model.eta.retrieve_k, model.twin.retrieve_k)")


def test_state_dict_readers_fill_what_an_older_model_lacked():
    state = {"m.head.0.weight": torch.ones(2)}
    compat.missing_item_bias(state, "m.", lambda: torch.zeros(3, 1))
    assert torch.equal(state["m.item_bias.weight"], torch.zeros(3, 1))
    without_head = {"m.other": torch.ones(1)}
    compat.missing_item_bias(without_head, "m.", lambda: torch.zeros(3, 1))
    assert "m.item_bias.weight" not in without_head  # not a model's state dict: left alone

    per_route = {"a.sid1.w": torch.tensor([1.0]), "a.collab.w": torch.tensor([2.0]), "a.shared": torch.tensor([0.0])}
    stack = lambda routes, old: {"w": torch.stack([old[f"{r}.w"] for r in routes])}  # noqa: E731
    errors: list[str] = []
    compat.stacked_route_keys(per_route, "a.", ("sid1", "collab"), stack, errors)
    assert errors == [] and set(per_route) == {"a.w", "a.shared"}
    assert per_route["a.w"].tolist() == [[1.0], [2.0]]
    missing = {"a.sid1.w": torch.tensor([1.0])}
    compat.stacked_route_keys(missing, "a.", ("sid1", "collab"), stack, errors)
    assert len(errors) == 1 and "collab.w" in errors[0] and "a.sid1.w" in missing


def test_the_flat_layouts_module_paths_import_their_new_homes_with_a_warning():
    import importlib
    import sys
    import warnings

    from r2led_model.training import trainer

    sys.modules.pop("r2led_model.trainer", None)
    with pytest.warns(DeprecationWarning, match="r2led_model.trainer moved to r2led_model.training.trainer; "
                                                 f"the old path is removed in {compat.REMOVED_IN}"):
        old = importlib.import_module("r2led_model.trainer")
    assert old is trainer
    with pytest.warns(DeprecationWarning, match="r2led_model.tracking.tracked_run moved"):
        from r2led_model.tracking import tracked_run
    from r2led_model.tracking.runs import tracked_run as current
    assert tracked_run is current
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ImportError):
            from r2led_model.retrieval import no_such_name  # noqa: F401
    for old_path, new_path in compat.LEGACY_MODULE_PATHS.items():
        assert importlib.util.find_spec(new_path) is not None, old_path
