"""Worker processes sharing one study: an SQLite file on one machine, PostgreSQL for many machines."""

from __future__ import annotations

from pathlib import Path

import optuna
from sqlalchemy.pool import NullPool

from ctxrec.tuning import TuneConfig, run_study


def _shared_study(tmp_path: Path, storage: str | None) -> optuna.Study:
    # EASE: a trial takes a fraction of a second, so the test measures the sharing, not training.
    cfg = TuneConfig(dataset="synthetic", model="ease", trials=4, jobs=2, out=str(tmp_path), storage=storage)
    return run_study(cfg, echo=lambda s: None)


def _check(study: optuna.Study) -> None:
    trials = study.get_trials()
    assert sorted(t.number for t in trials) == [0, 1, 2, 3]  # the total adds up, no number twice
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials), [t.user_attrs for t in trials]
    workers = {t.user_attrs["worker"].rsplit("/", 1)[1] for t in trials}
    assert workers <= {"0", "1"} and len(workers) >= 1


def test_two_worker_processes_share_one_sqlite_study(tmp_path: Path) -> None:
    study = _shared_study(tmp_path, None)
    _check(study)
    assert (tmp_path / "tune" / "study.sqlite3").exists()


def test_two_worker_processes_share_one_postgresql_study(tmp_path: Path, pg_cluster) -> None:
    url = pg_cluster.fresh_database()
    assert url.startswith("postgresql://")  # the plain form users type; psycopg 3 is used as the driver
    _check(_shared_study(tmp_path, url))
    storage = optuna.storages.RDBStorage(url.replace("postgresql://", "postgresql+psycopg://"),
                                         engine_kwargs={"poolclass": NullPool})
    again = optuna.load_study(study_name="synthetic-ease", storage=storage)
    assert len(again.trials) == 4
