"""One trial: build the model from the drawn params, train on the training part, score on validation.

Two tasks: ranking (``NAME@K`` of the evaluator on the split's validation cases) and CTR (``auc``: a
pointwise model trained with ``fit_labelled`` on the labelled tables of :mod:`ctxrec.data.ctr`, scored
by validation AUC). Trials see the training part and validation only. The test part (ranking cases or
CTR table) stays inside a :class:`SealedEvalSet` that raises on any use, so a change that let a trial
peek at it fails the trial instead of quietly tuning on test; the best configuration is evaluated on
test once, after the study, by the caller.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ctxrec.errors import ConfigError, CtxrecError

if TYPE_CHECKING:
    import optuna
    import pandas as pd

    from ctxrec.data.dataset import Dataset
    from ctxrec.data.splits import EvalSet
    from ctxrec.models.base import Recommender
    from ctxrec.tuning.spaces import SearchSpace

AUC = "auc"
"""The CTR objective: validation AUC of a model trained on labelled tables (``fit_labelled``)."""
CTR_SPLIT = "ctr"
"""The split of an AUC study: :func:`ctxrec.data.ctr.ctr_split` (not a ``ctxrec train`` split)."""


class SealedTestCasesError(CtxrecError, RuntimeError):
    """Something read the test cases while a study was running."""


class SealedEvalSet:
    """Stands in for the test part during a study (the ranking :class:`EvalSet`, or the CTR test table):
    every attribute access (and ``len``) raises :class:`SealedTestCasesError`. ``attempts`` counts them."""

    def __init__(self, cases: EvalSet | pd.DataFrame) -> None:
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


@dataclass
class CtrTrialData:
    """What CTR trials may use: the training positives and the labelled train / validation tables (test sealed)."""

    dataset: str
    data: Dataset
    train: pd.DataFrame
    valid: pd.DataFrame
    test: SealedEvalSet
    split: str
    """What the split is, in words (:meth:`CtrSplit.describe`)."""


def load_trial_data(dataset: str, data_dir: str | None, split: str, exclude_seen: bool | None = None,
                    mapping: str | None = None) -> TrialData | CtrTrialData:
    """Load and split a built-in dataset, or your own data through ``mapping``, for a study (the rule
    for seen items as in ``ctxrec train``). ``split="ctr"``: the CTR protocol's labelled tables."""
    from ctxrec.data.splits import make_split
    from ctxrec.experiment import load_data

    data = load_data(dataset=None if mapping else dataset, mapping=mapping, data_dir=data_dir)
    if split == CTR_SPLIT:
        from ctxrec.data.ctr import ctr_split

        ctr = ctr_split(data)
        return CtrTrialData(dataset=dataset, data=ctr.data, train=ctr.train, valid=ctr.valid,
                            test=SealedEvalSet(ctr.test), split=ctr.describe())
    sp = make_split(data, split)
    if not len(sp.valid):
        raise ConfigError(f"dataset {dataset!r} with split {split!r} has no validation cases to tune on")
    keep_seen = data.schema.repeat_consumption if exclude_seen is None else not exclude_seen
    return TrialData(dataset=dataset, train=sp.train, valid=sp.valid, test=SealedEvalSet(sp.test),
                     exclude_seen=not keep_seen)


def default_metric(model: str) -> str:
    """The objective when none is given: validation AUC for the pointwise (CTR) model, NDCG@10 otherwise."""
    return AUC if model == "pointwise" else "ndcg@10"


def check_metric(metric: str, model: str) -> None:
    """``auc`` needs a model kind that trains on labelled tables; any other metric must be ``NAME@K``."""
    if metric != AUC:
        parse_metric(metric)
        return
    from ctxrec.models import get_model_class

    if not hasattr(get_model_class(model), "fit_labelled"):
        raise ConfigError(f"objective metric 'auc' needs a model kind that trains on labelled CTR tables "
                          f"(fit_labelled: pointwise, fm); {model!r} does not. Tune {model!r} on a ranking "
                          "metric instead (--metric ndcg@10)")


def parse_metric(metric: str) -> tuple[str, int]:
    """``"ndcg@10"`` -> ``("ndcg", 10)``; the name must be one of the evaluator's ranking metrics."""
    from ctxrec.evaluation.metrics import RANKING_METRICS

    name, _, k = metric.partition("@")
    if name not in RANKING_METRICS or not k.isdigit() or int(k) < 1:
        raise ConfigError(f"objective metric {metric!r} must be 'auc' (pointwise models) or look like NAME@K "
                          f"with NAME one of {sorted(RANKING_METRICS)}, e.g. ndcg@10")
    return name, int(k)


def trial_model_config(space: SearchSpace, values: dict[str, Any], metric: str = "ndcg@10") -> dict[str, Any]:
    """The model config of a trial; progress bars off unless the space sets them (one line per trial).
    An AUC study early-stops on validation AUC: ``train.valid_metric = "auc"`` is the task's, not the user's."""
    from ctxrec.models import get_model_class

    cfg = space.model_config(values)
    fields = getattr(get_model_class(space.model).config_class, "__dataclass_fields__", {})
    if "train" in fields:
        cfg.setdefault("train", {}).setdefault("progress", False)
    if metric == AUC:
        return ctr_model_config(cfg)
    return cfg


def ctr_model_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """``cfg`` with ``train.valid_metric = "auc"`` (what the CTR task early-stops and is pruned on)."""
    train = dict(cfg.get("train", {}))
    given = train.get("valid_metric", AUC)
    if given != AUC:
        raise ConfigError(f"train.valid_metric = {given!r} in an AUC study: the CTR task selects epochs on "
                          "validation AUC itself; drop train.valid_metric from --set / the space file")
    return {**cfg, "train": {**train, "valid_metric": AUC}}


def fit_ctr(model: Recommender, data: Dataset, train: pd.DataFrame, valid: pd.DataFrame,
            run_dir: str | None = None) -> None:
    """Train a pointwise model on the CTR tables (early stopping on validation AUC)."""
    fit_labelled = getattr(model, "fit_labelled", None)
    if fit_labelled is None:
        raise ConfigError(f"model kind {model.kind!r} cannot train on labelled CTR tables (no fit_labelled); "
                          "tune it on a ranking metric (--metric ndcg@10)")
    fit_labelled(data, train, valid, run_dir=run_dir)


EPOCH_LINE_EVERY_S = 60.0
"""A running trial says how it stands (epoch, validation score) at most this often: a study of long trials
(tens of minutes each on a CPU) is not silent between its per-trial lines, and one of short trials is not flooded."""


def run_trial(trial: optuna.Trial, space: SearchSpace, data: TrialData | CtrTrialData, metric: str = "ndcg@10",
              echo: Callable[[str], None] | None = None) -> float:
    """Train one drawn configuration and return its validation ``metric``.

    Each epoch's validation score goes to the study's pruner through ``epoch_reporter``; a trial the
    pruner stops raises ``optuna.TrialPruned`` out of the training loop. ``echo`` gets an epoch line at
    most every :data:`EPOCH_LINE_EVERY_S` seconds."""
    import optuna

    from ctxrec.models import build_model
    from ctxrec.training.loop import epoch_reporter

    if (metric == AUC) != isinstance(data, CtrTrialData):
        raise ConfigError(f"objective metric {metric!r} does not fit the trial data (a "
                          f"{'CTR' if isinstance(data, CtrTrialData) else 'ranking'} split); load it with "
                          f"split {CTR_SPLIT!r} for 'auc' and a ranking split otherwise")
    values = space.suggest(trial)
    model = build_model(space.model, trial_model_config(space, values, metric))

    train_cfg = getattr(model.config, "train", None)
    last_epoch = train_cfg.max_epochs - 1 if train_cfg is not None else None

    said = [time.monotonic()]  # when the last epoch line went out (the trial's start: none for a quick first epoch)
    best = [-math.inf]

    def report(epoch: int, score: float) -> None:
        trial.report(score, epoch)
        trial.set_user_attr("epochs_run", epoch + 1)
        best[0] = max(best[0], score)
        if echo is not None and time.monotonic() - said[0] >= EPOCH_LINE_EVERY_S:
            said[0] = time.monotonic()
            echo(f"  trial {trial.number} epoch {epoch}: validation {metric} {score:.4f} (its best {best[0]:.4f})")
        if epoch != last_epoch and trial.should_prune():  # after the last epoch, finishing costs nothing
            raise optuna.TrialPruned(f"pruned after epoch {epoch} (validation {score:.4f})")

    t0 = time.perf_counter()
    with epoch_reporter(report):
        score = fit_and_score(model, data, metric)
    if model.fit_info.get("stopped_by") == "interrupted":
        # The training loop ends on Ctrl-C with its best weights (right for `ctxrec train`); a trial cut
        # short must not count as complete with a truncated score: the study stops and redoes it.
        raise KeyboardInterrupt
    trial.set_user_attr("fit_seconds", round(time.perf_counter() - t0, 2))
    for key in ("best_epoch", "epochs_run", "stopped_by"):
        if key in model.fit_info:
            trial.set_user_attr(key, model.fit_info[key])
    return score


def fit_and_score(model: Recommender, data: TrialData | CtrTrialData, metric: str) -> float:
    """Train ``model`` on the trial data and return its validation ``metric`` (AUC: of the epoch kept)."""
    if isinstance(data, CtrTrialData):
        fit_ctr(model, data.data, data.train, data.valid)
        return float(model.fit_info["best_valid"])
    model.fit(data.train, valid=data.valid)
    from ctxrec.evaluation.evaluator import EvalConfig, Evaluator

    name, k = parse_metric(metric)
    evaluator = Evaluator(EvalConfig(ks=(k,), metrics=(name,), exclude_seen=data.exclude_seen))
    return float(evaluator.evaluate(model, data.valid)[f"{name}@{k}"])


def seeded_score(space: SearchSpace, params: dict[str, Any], data: TrialData | CtrTrialData, metric: str,
                 seed: int) -> float:
    """Validation ``metric`` of ``params`` trained with ``train.seed = seed`` (no pruning)."""
    from ctxrec.models import build_model

    cfg = trial_model_config(space, params, metric)
    cfg.setdefault("train", {})["seed"] = seed
    return fit_and_score(build_model(space.model, cfg), data, metric)
