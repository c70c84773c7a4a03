"""Hyperparameter tuning on Optuna (``ctxrec tune``): search spaces, the trial objective, the study.

    spaces.py     typed search space per model kind, editable from a TOML file
    objective.py  one trial: train on the training part, score on validation (test sealed)
    study.py      TPE + median pruning, worker processes, shared RDB storage, resume
    report.py     trials.csv, best_config.json, plots
    run.py        tune() = study + files + one test evaluation of the best config
"""

from ctxrec.tuning.run import finish, retrain_seed, tune
from ctxrec.tuning.spaces import DEFAULT_SPACES, Param, SearchSpace, load_space
from ctxrec.tuning.study import TuneConfig, parse_duration, run_study

__all__ = ["DEFAULT_SPACES", "Param", "SearchSpace", "TuneConfig", "finish", "load_space", "parse_duration",
           "retrain_seed", "run_study", "tune"]
