"""Reading what earlier 0.1 releases wrote: this module and nowhere else in the model package.

Removed in REMOVED_IN. Until then a model bundle, a checkpoint or tuned parameters written before a
change keep loading and scoring as they did; from then on re-train (or re-tune) what was written by
an older release. What each reader accepts:

* config keys: the flat model keys of the first releases (`model.gate`, `model.retrieve_k`, ...) are
  refused in a config with their new home (`moved_model_key_message`); a bundle's stored model dict and
  tuned parameters written with them are read with each key moved to its model's section
  (`sectioned_model_values`, `sectioned_tuned_params`);
* model state dicts: no per-item bias (it was 0), per-route attention weights before they were stacked,
  no item lookups (input layout 1): `missing_item_bias`, `stacked_route_keys`, `missing_item_lookups`,
  each called from its module's `_load_from_state_dict`;
* checkpoints that stored numpy's RNG state as an array: `LEGACY_CHECKPOINT_GLOBALS`;
* module paths of the flat 0.1 layout (`r2led_model.trainer`, ...): imported from their sub-package
  with a DeprecationWarning (`install_moved_modules`, `moved_attribute`). A registered model is not
  affected: it carries the package it was logged with as its code.

It imports nothing of the package at module level, so the config can read it.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from types import ModuleType
from typing import Any

import numpy as np

REMOVED_IN = "0.2.0"

# Flat model keys of earlier releases → (the option's name in a model's section, the models whose section
# holds it).
LEGACY_MODEL_KEYS: dict[str, tuple[str, tuple[str, ...]]] = {
    "gate": ("gate", ("r2led",)),
    "sid_fusion": ("sid_fusion", ("r2led",)),
    "route_fusion": ("route_fusion", ("r2led",)),
    "route_occupancy": ("route_occupancy", ("r2led",)),
    "routes": ("routes", ("r2led",)),
    "retrieve_k": ("retrieve_k", ("sim_hard", "sim_soft", "eta", "twin")),
    "eta_hash_bits": ("hash_bits", ("eta",)),
    "sdim_hashes": ("hashes", ("sdim",)),
    "sdim_hash_bits": ("hash_bits", ("sdim",)),
    "seed_hash": ("seed_hash", ("eta", "sdim")),
}
# Options added after the first bundles were written, with the value those bundles were built with
# (flat keys: every bundle written before them stored a flat model dict).
LEGACY_MODEL_OPTIONS = {"sid_fusion": "sum", "route_occupancy": False}
# Options added to a model's section after bundles stored sections, with the value the bundles written before
# them were built with (a default that changed since would otherwise build another network for their weights).
ADDED_SECTION_OPTIONS = {("r2led", "occupancy_counts"): "candidates"}
# What a checkpoint written before RNG states were stored as plain values holds besides tensors: numpy's
# MT19937 state, a uint32 ndarray. Allowlisted (those types only) so `weights_only=True` reads them too.
LEGACY_CHECKPOINT_GLOBALS = [np.core.multiarray._reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]


def legacy_model_key(flat: str, model: str) -> str | None:
    """The key `<model>.<option>` under `model.` that the earlier flat `model.<flat>` became for `model`, or
    None when `flat` is no such key or `model` never read it."""
    option, models = LEGACY_MODEL_KEYS.get(flat, ("", ()))
    return f"{model}.{option}" if model in models else None


def moved_model_key_message(flat: str, path: str) -> str:
    """The error for a config that still names the flat key `flat` (under `path`): where it went."""
    option, models = LEGACY_MODEL_KEYS[flat]
    homes = [f"model.{m}.{option}" for m in models]
    where = homes[0] if len(homes) == 1 else f"the section of each model that reads it ({', '.join(homes)})"
    return f"{path}.{flat} moved to {where}"


def sectioned_model_values(stored: Mapping[str, Any]) -> dict[str, Any]:
    """A bundle's stored model dict in today's layout. Earlier releases stored it flat (`gate`,
    `retrieve_k`, `eta_hash_bits`, ... beside `name`): those keys move into the section of the bundle's
    own model; the ones it never read (another model's options) are dropped, so its sections are those
    of the model that was built. Options added to a section since (`ADDED_SECTION_OPTIONS`) get the value
    the bundle was built with."""
    if not any(key in LEGACY_MODEL_KEYS for key in stored):
        return _with_added_options(dict(stored))
    flat = {**LEGACY_MODEL_OPTIONS, **stored}
    name = flat["name"]
    values: dict[str, Any] = {k: v for k, v in flat.items() if k not in LEGACY_MODEL_KEYS}
    for key, value in flat.items():
        moved = legacy_model_key(key, name)
        if moved is not None:
            section, option = moved.split(".")
            values.setdefault(section, {})[option] = value
    return _with_added_options(values)


def _with_added_options(values: dict[str, Any]) -> dict[str, Any]:
    """`values` with each `ADDED_SECTION_OPTIONS` option its section lacks set to the value it was built with."""
    for (section, option), built_with in ADDED_SECTION_OPTIONS.items():
        if isinstance(values.get(section), Mapping) and option not in values[section]:
            values[section] = {**values[section], option: built_with}
    return values


def sectioned_tuned_params(model: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """Tuned `params` of `model` with keys of the flat model layout (`model.retrieve_k`) moved to the model's
    section (`model.sim_hard.retrieve_k`); a key `model` never read is left for the config to refuse."""
    out = {}
    for key, value in params.items():
        section, _, option = key.partition(".")
        moved = legacy_model_key(option, model) if section == "model" else None
        out[f"model.{moved}" if moved else key] = value
    return out


def missing_item_bias(state_dict: MutableMapping[str, Any], prefix: str, zeros: Callable[[], Any]) -> None:
    """A model's state dict saved before the per-item bias existed: the bias it was trained without is 0."""
    key = f"{prefix}item_bias.weight"
    if key not in state_dict and any(k.startswith(f"{prefix}head.") for k in state_dict):
        state_dict[key] = zeros()


def stacked_route_keys(state_dict: MutableMapping[str, Any], prefix: str, routes: Sequence[str],
                       stack: Callable[[Sequence[str], Mapping[str, Any]], Mapping[str, Any]],
                       error_msgs: list[str]) -> None:
    """Per-route attention keys (`<prefix><route>.<param>`) of a state dict saved before the routes were
    stacked, replaced by `stack`'s stacked ones, in route order; a missing route is an error message."""
    old = {key[len(prefix):]: state_dict[key] for key in list(state_dict)
           if key.startswith(prefix) and key[len(prefix):].split(".", 1)[0] in routes}
    if not old:
        return
    try:
        stacked = stack(routes, old)
    except KeyError as error:
        error_msgs.append(f"{prefix}: per-route attention weights lack {error.args[0]!r} (an old state "
                          f"dict must hold every route of {list(routes)})")
        return
    for key in old:
        del state_dict[prefix + key]
    state_dict.update({prefix + name: value for name, value in stacked.items()})


def missing_item_lookups(state_dict: MutableMapping[str, Any], prefix: str, empty: Mapping[str, Any]) -> None:
    """A state dict saved before the item lookups existed (input layout 1): they load as `empty`, and
    narrow batches are refused until they are set from `item_index`."""
    for name, value in empty.items():
        state_dict.setdefault(prefix + name, value)


# The flat layout's module paths → their sub-package homes. `r2led_model.tracking` and
# `r2led_model.retrieval` became packages of the same name: their old names are `moved_attribute`s.
LEGACY_MODULE_PATHS: dict[str, str] = {
    "r2led_model.synthetic": "r2led_model.worlds.synthetic",
    "r2led_model.impressions": "r2led_model.worlds.impressions",
    "r2led_model.oracle": "r2led_model.worlds.oracle",
    "r2led_model.reference_lr": "r2led_model.worlds.reference_lr",
    "r2led_model.sample_kernel": "r2led_model.sequences.sample_kernel",
    "r2led_model.features": "r2led_model.sequences.features",
    "r2led_model.text_encoder": "r2led_model.sids.text_encoder",
    "r2led_model.rqvae": "r2led_model.sids.rqvae",
    "r2led_model.codebook": "r2led_model.sids.codebook",
    "r2led_model.codebook_store": "r2led_model.sids.codebook_store",
    "r2led_model.sid_report": "r2led_model.sids.sid_report",
    "r2led_model.naive_retrieval": "r2led_model.retrieval.naive",
    "r2led_model.simhash": "r2led_model.retrieval.simhash",
    "r2led_model.item_feature_lookup": "r2led_model.retrieval.item_feature_lookup",
    "r2led_model.route_names": "r2led_model.retrieval.route_names",
    "r2led_model.trainer": "r2led_model.training.trainer",
    "r2led_model.feed": "r2led_model.training.feed",
    "r2led_model.arrow_feed": "r2led_model.training.arrow_feed",
    "r2led_model.optim": "r2led_model.training.optim",
    "r2led_model.tuning": "r2led_model.training.tuning",
    "r2led_model.item_index_lookup": "r2led_model.training.item_index_lookup",
    "r2led_model.metrics": "r2led_model.evaluation.metrics",
    "r2led_model.paired_bootstrap": "r2led_model.evaluation.paired_bootstrap",
    "r2led_model.segments": "r2led_model.evaluation.segments",
    "r2led_model.plots": "r2led_model.evaluation.plots",
    "r2led_model.counterfactuals": "r2led_model.evaluation.counterfactuals",
    "r2led_model.diagnostics": "r2led_model.evaluation.diagnostics",
    "r2led_model.mlflow_model": "r2led_model.tracking.mlflow_model",
    "r2led_model.pyfunc_model": "r2led_model.tracking.pyfunc_model",
    "r2led_model.bundle": "r2led_model.tracking.bundle",
}
LEGACY_PACKAGE_MODULES = {"r2led_model.tracking": "r2led_model.tracking.runs",
                          "r2led_model.retrieval": "r2led_model.retrieval.multi_route"}


def _moved_warning(old: str, new: str) -> None:
    warnings.warn(f"{old} moved to {new}; the old path is removed in {REMOVED_IN}", DeprecationWarning,
                  stacklevel=3)


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports an old module path as the module at its new home (the same module object)."""

    def find_spec(self, fullname: str, path: object = None, target: object = None):
        return importlib.util.spec_from_loader(fullname, self) if fullname in LEGACY_MODULE_PATHS else None

    def create_module(self, spec) -> ModuleType:
        new = LEGACY_MODULE_PATHS[spec.name]
        _moved_warning(spec.name, new)
        return importlib.import_module(new)

    def exec_module(self, module: ModuleType) -> None:
        """The module at its new home is already executed."""


def install_moved_modules() -> None:
    if not any(isinstance(finder, _MovedModules) for finder in sys.meta_path):
        sys.meta_path.insert(0, _MovedModules())  # before any finder that might still see an old file


def moved_attribute(package: str, name: str) -> Any:
    """A name the flat module `package` had, from its new module (a package's `__getattr__`)."""
    new = LEGACY_PACKAGE_MODULES[package]
    module = importlib.import_module(new)
    if name.startswith("__") or not hasattr(module, name):
        raise AttributeError(f"module {package!r} has no attribute {name!r}")
    _moved_warning(f"{package}.{name}", f"{new}.{name}")
    return getattr(module, name)
