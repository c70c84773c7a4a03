"""One trial: build the model from the drawn params, train on the training part, score on validation.

Trials see the split's training part and validation cases only. The test cases stay inside a
:class:`SealedEvalSet` that raises on any use, so a change that let a trial peek at them fails the
trial instead of quietly tuning on test; the best configuration is evaluated on test once, after the
study, by the caller.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ctxrec.errors import ConfigError, CtxrecError

if TYPE_CHECKING:
    import optuna

    from ctxrec.data.dataset import Dataset
    from ctxrec.data.splits import EvalSet
    from ctxrec.tuning.spaces import SearchSpace


class SealedTestCasesError(CtxrecError, RuntimeError):
    """Something read the test cases while a study was running."""


class SealedEvalSet:
    """Stands in for the test :class:`EvalSet` during a study: every attribute access (and ``len``)
    raises :class:`SealedTestCasesError`. ``attempts`` counts them."""

    def __init__(self, cases: EvalSet) -> None:
        object.__setattr__(self, "_cases", cases)
        object.__setattr__(self, "attempts", 0)

    def __getattr__(self, name: str) -> Any:  # only called for names not set in __init__
        object.__setattr__(self, "attempts", self.attempts + 1)
        raise SealedTestCasesError(f"the test cases were read ({name!r}) during a tuning study; trials may use "
                                 "the training part and the validation cases only")

    def __len__(self) -> int:
        return int(self.__getattr__("__len__"))


@dataclass
class TrialData:
    """What trials may use: the training part and validation cases (test sealed)."""

    dataset: str
    train: Dataset
    valid: EvalSet
    test: SealedEvalSet
    exclude_seen: bool


def load_trial_data(dataset: str, data_dir: str | None, split: str, exclude_seen: bool | None = None,
                    mapping: str | None = None) -> TrialData:
    """Load and split a built-in dataset, or your own data through ``mapping``, for a study (the rule
    for seen items as in ``ctxrec train``)."""
    from ctxrec.data.splits import make_split
    from ctxrec.experiment import load_data

    data = load_data(dataset=None if mapping else dataset, mapping=mapping, data_dir=data_dir)
    sp = make_split(data, split)
    if not len(sp.valid):
        raise ConfigError(f"dataset {dataset!r} with split {split!r} has no validation cases to tune on")
    keep_seen = data.schema.repeat_consumption if exclude_seen is None else not exclude_seen
    return TrialData(dataset=dataset, train=sp.train, valid=sp.valid, test=SealedEvalSet(sp.test),
                     exclude_seen=not keep_seen)


def parse_metric(metric: str) -> tuple[str, int]:
    """``"ndcg@10"`` -> ``("ndcg", 10)``; the name must be one of the evaluator's ranking metrics."""
    from ctxrec.evaluation.metrics import RANKING_METRICS

    name, _, k = metric.partition("@")
    if name not in RANKING_METRICS or not k.isdigit() or int(k) < 1:
        raise ConfigError(f"objective metric {metric!r} must look like NAME@K with NAME one of "
                          f"{sorted(RANKING_METRICS)}, e.g. ndcg@10")
    return name, int(k)


def trial_model_config(space: SearchSpace, values: dict[str, Any]) -> dict[str, Any]:
    """The model config of a trial; progress bars off unless the space sets them (one line per trial)."""
    from ctxrec.models import get_model_class

    cfg = space.model_config(values)
    fields = getattr(get_model_class(space.model).config_class, "__dataclass_fields__", {})
    if "train" in fields:
        cfg.setdefault("train", {}).setdefault("progress", False)
    return cfg


def run_trial(trial: optuna.Trial, space: SearchSpace, data: TrialData, metric: str = "ndcg@10") -> float:
    """Train one drawn configuration and return its validation ``metric``.

    Each epoch's validation score goes to the study's pruner through ``epoch_reporter``; a trial the
    pruner stops raises ``optuna.TrialPruned`` out of the training loop."""
    import optuna

    from ctxrec.evaluation.evaluator import EvalConfig, Evaluator
    from ctxrec.models import build_model
    from ctxrec.training.loop import epoch_reporter

    name, k = parse_metric(metric)
    values = space.suggest(trial)
    model = build_model(space.model, trial_model_config(space, values))

    train_cfg = getattr(model.config, "train", None)
    last_epoch = train_cfg.max_epochs - 1 if train_cfg is not None else None

    def report(epoch: int, score: float) -> None:
        trial.report(score, epoch)
        trial.set_user_attr("epochs_run", epoch + 1)
        if epoch != last_epoch and trial.should_prune():  # after the last epoch, finishing costs nothing
            raise optuna.TrialPruned(f"pruned after epoch {epoch} (validation {score:.4f})")

    t0 = time.perf_counter()
    with epoch_reporter(report):
        model.fit(data.train, valid=data.valid)
    trial.set_user_attr("fit_seconds", round(time.perf_counter() - t0, 2))
    for key in ("best_epoch", "epochs_run", "stopped_by"):
        if key in model.fit_info:
            trial.set_user_attr(key, model.fit_info[key])
    evaluator = Evaluator(EvalConfig(ks=(k,), metrics=(name,), exclude_seen=data.exclude_seen))
    return float(evaluator.evaluate(model, data.valid)[f"{name}@{k}"])
