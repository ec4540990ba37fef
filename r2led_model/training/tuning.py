"""Equal tuning for every model: declared search spaces and the one adapter around Optuna.

Every model searches the same shared space (learning rate, item learning rate, weight decay, dropout,
embedding dim); models that retrieve inside the network also search their `model.<name>.retrieve_k`. R2LED's k is
fixed by the Spark retrieval stage (the candidates are precomputed), so it has no model-side k to
search. A study is TPE (seeded) with median pruning on the per-epoch validation AUC, and every model gets the
same number of trials and epochs per trial.

The best parameters are saved as JSON (`TunedParams`): dotted config keys, so `r2led train --tuned`
and `r2led benchmark models --tuned` apply them like `--set` overrides. A file saved when the model
options were flat (`model.retrieve_k`) loads with them moved to the model's section.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from r2led_model.compat import sectioned_tuned_params
from r2led_model.config import ModelConfig

if TYPE_CHECKING:
    from r2led_model.config import Config

SHARED_SPACE_NOTE = "learning_rate, item_learning_rate, weight_decay, dropout, embedding_dim"


@dataclass(frozen=True)
class SearchParam:
    """One dimension of a search space, named by its dotted config key."""

    key: str
    kind: Literal["log_float", "float", "int", "choice"]
    low: float = 0.0
    high: float = 0.0
    step: int = 1
    choices: tuple[Any, ...] = ()


SHARED_SPACE = (
    SearchParam("training.learning_rate", "log_float", 1e-4, 1e-2),
    # The ID table and per-item bias (r2led_model.training.optim): from the base rate's range up to 10x its top.
    SearchParam("training.item_learning_rate", "log_float", 1e-4, 1e-1),
    SearchParam("training.weight_decay", "log_float", 1e-8, 1e-3),
    SearchParam("model.dropout", "float", 0.0, 0.5),
    # Even sizes only: attention heads (2) must divide the embedding dim.
    SearchParam("model.embedding_dim", "choice", choices=(8, 16, 32)),
)
# Models whose long-term part keeps the top `retrieve_k` of the history inside the network: those whose
# section has the option.
RETRIEVING_MODELS = tuple(name for name, section in ModelConfig().sections().items() if hasattr(section, "retrieve_k"))


def retrieve_k_param(model: str) -> SearchParam:
    return SearchParam(f"model.{model}.retrieve_k", "int", 10, 50, step=10)


def search_space(model: str) -> tuple[SearchParam, ...]:
    """The declared search space of a model (the shared space, plus its retrieve_k where it has one)."""
    return SHARED_SPACE + ((retrieve_k_param(model),) if model in RETRIEVING_MODELS else ())


def suggest(trial: Any, space: tuple[SearchParam, ...]) -> dict[str, Any]:
    """One point of `space` from an Optuna trial: {dotted key: value}."""
    values: dict[str, Any] = {}
    for param in space:
        if param.kind == "log_float":
            values[param.key] = trial.suggest_float(param.key, param.low, param.high, log=True)
        elif param.kind == "float":
            values[param.key] = trial.suggest_float(param.key, param.low, param.high)
        elif param.kind == "int":
            values[param.key] = trial.suggest_int(param.key, int(param.low), int(param.high), step=param.step)
        else:
            values[param.key] = trial.suggest_categorical(param.key, list(param.choices))
    return values


def make_study(*, seed: int, startup_trials: int, warmup_epochs: int) -> Any:
    """A maximising study: TPE seeded with `seed`, median pruning after `startup_trials` full trials,
    never before epoch `warmup_epochs`."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup_trials),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=startup_trials, n_warmup_steps=warmup_epochs))


def pruned() -> Exception:
    """The exception that tells Optuna a trial was pruned."""
    import optuna

    return optuna.TrialPruned()


@dataclass(frozen=True)
class TunedParams:
    """A study's outcome: the best parameters (dotted config keys) and how they were found."""

    model: str
    params: dict[str, Any]
    best_valid_auc: float
    trials: int
    completed: int
    pruned: int
    epochs_per_trial: int
    seed: int
    study_run_id: str = ""
    data: dict[str, Any] = field(default_factory=dict)  # env, rows, training_examples version

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(self.__dict__, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        temporary.replace(path)  # atomic: a reader sees the old file or the new one, never half
        return path

    @classmethod
    def load(cls, path: str | Path) -> "TunedParams":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no tuned parameters at {path}; run `r2led tune --model <name>` first")
        saved = json.loads(path.read_text(encoding="utf-8"))
        return cls(**{**saved, "params": sectioned_tuned_params(saved["model"], saved["params"])})


def tuned_path(folder: str | Path, model: str) -> Path:
    return Path(folder) / f"{model}.json"



def tuned_config(config: "Config", *, folder: str | Path | None = None) -> tuple["Config", TunedParams]:
    """`config` with the saved best parameters of `config.model.name` applied (config.tuning.output_dir
    unless `folder`); raises FileNotFoundError naming the file when the model was never tuned."""
    from r2led_model.config import with_values

    tuned = TunedParams.load(tuned_path(folder or config.tuning.output_dir, config.model.name))
    if tuned.model != config.model.name:
        raise ValueError(f"tuned parameters are for {tuned.model!r}, not {config.model.name!r}")
    return with_values(config, tuned.params), tuned
