"""A tuning study on Optuna: seeded TPE sampling, median pruning on each epoch's validation score,
``jobs`` worker processes on this machine, and any number of machines sharing one RDB storage.

The study lives in the storage (an SQLite file under the run folder by default, or a PostgreSQL URL
that several machines pass), so an interrupted study resumes when the same command runs again, and
``--trials N`` is the study's total: a rerun tops it up to N. Counted towards N are trials that
finished (complete or pruned), are running, or failed with an error; trials stopped by Ctrl-C or
left behind by a killed process (failed by Optuna's heartbeat check) are not, so they are redone.
This machine's workers take a file lock around "count, then start a trial", so they never start more
than N; machines that share a study each have their own lock and may overshoot N by one trial each.
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
import re
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ctxrec.errors import ConfigError, CtxrecError
from ctxrec.tuning.objective import AUC, CTR_SPLIT, check_metric, default_metric, load_trial_data, run_trial
from ctxrec.tuning.spaces import SearchSpace, load_space

if TYPE_CHECKING:
    import optuna

    from ctxrec.tuning.objective import CtrTrialData, TrialData

Echo = Callable[[str], None]
MAX_FAILS_IN_A_ROW = 3
"""A worker stops after this many consecutive failed trials (a broken setup, not a bad corner of the space)."""


@dataclass(frozen=True, kw_only=True)
class TuneConfig:
    """One ``ctxrec tune`` invocation."""

    dataset: str
    """A built-in dataset; with ``mapping``, a label for the mapped data."""
    model: str
    trials: int
    """The study's total number of trials (a resumed study runs the missing ones)."""
    out: str
    """Run folder; the study's files go to ``<out>/tune/``."""
    data_dir: str | None = None
    mapping: str | None = None
    """A column mapping file of your own data, read instead of a built-in dataset."""
    split: str = "auto"
    """A ranking split (``auto`` = ``leave-one-out``); an AUC study always uses the CTR split (``ctr``, see
    :mod:`ctxrec.data.ctr`), so ``auto`` there."""
    metric: str = "auto"
    """Validation metric maximised: ``NAME@K`` of the ranking evaluator, or ``auc`` (the CTR task: a pointwise
    model trained on labelled tables). ``auto`` = ``auc`` for the pointwise model, ``ndcg@10`` otherwise."""
    timeout_s: float | None = None
    """No trial starts after this many seconds (a running one finishes)."""
    jobs: int = 1
    storage: str | None = None
    """SQLAlchemy URL of the study's storage; default ``sqlite:///<out>/tune/study.sqlite3``."""
    study: str | None = None
    """Study name; default ``<dataset>-<model>``."""
    seed: int = 0
    """TPE seed; worker i of this machine uses ``seed + i``. Give each machine sharing a study its own."""
    space_file: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    """Dotted model-config keys fixed for every trial (``--set``); a searched key given here is not searched."""
    startup_trials: int | None = None
    """Random trials before TPE takes over; default ``min(10, max(1, trials // 4))``."""
    confirm: int = 0
    """After the study, train the ``confirm`` best trials again with ``confirm_seeds`` more seeds each and
    take the best mean validation score: the single best score of many trials is partly its seed's luck."""
    confirm_seeds: int = 2
    prune: bool = True
    prune_after_trials: int = 3
    """Pruning starts once this many trials have finished."""
    prune_after_epochs: int = 1
    """A trial is never pruned before this many epochs (the first one is noisy)."""
    command: str | None = None

    def __post_init__(self) -> None:
        if self.trials < 1:
            raise ConfigError(f"--trials must be >= 1, got {self.trials}")
        if self.jobs < 1:
            raise ConfigError(f"--jobs must be >= 1, got {self.jobs}")
        if self.confirm < 0 or self.confirm_seeds < 1:
            raise ConfigError(f"--confirm must be >= 0 and --confirm-seeds >= 1, got {self.confirm} and {self.confirm_seeds}")
        if self.confirm:
            from ctxrec.models import get_model_class

            if "train" not in getattr(get_model_class(self.model).config_class, "__dataclass_fields__", {}):
                raise ConfigError(f"--confirm re-trains the best trials with other seeds, and {self.model!r} has no "
                                  "training seed (it is deterministic); drop --confirm")
        if self.timeout_s is not None and self.timeout_s <= 0:
            raise ConfigError(f"--timeout must be positive, got {self.timeout_s} s")
        if self.mapping is None:  # a wrong name fails here, before the study's storage is created
            from ctxrec.data.datasets import DATASETS

            if self.dataset not in DATASETS:
                raise ConfigError(f"unknown dataset {self.dataset!r}; built-in datasets: {sorted(DATASETS)} "
                                  "(or tune your own data with --mapping FILE)")
        # Resolve "auto" once, so the stored study setup, the files and resumes see the concrete values.
        metric = default_metric(self.model) if self.metric == "auto" else self.metric
        check_metric(metric, self.model)
        if metric == AUC and self.split not in ("auto", CTR_SPLIT):
            raise ConfigError(f"--split {self.split} does not apply to an AUC study: it uses the CTR split (every "
                              "event a positive, same-context negatives, random 7:2:1); drop --split, or tune on "
                              "a ranking metric (--metric ndcg@10)")
        if metric != AUC and self.split == CTR_SPLIT:
            raise ConfigError(f"split {CTR_SPLIT!r} is the CTR protocol of --metric auc; with {metric!r} give a ranking "
                              "split (leave-one-out, temporal, random)")
        split = (CTR_SPLIT if metric == AUC else "leave-one-out") if self.split == "auto" else self.split
        object.__setattr__(self, "metric", metric)  # frozen: the one place these are set
        object.__setattr__(self, "split", split)

    @property
    def tune_dir(self) -> Path:
        return Path(self.out) / "tune"

    @property
    def study_name(self) -> str:
        return self.study or f"{self.dataset}-{self.model}"

    @property
    def storage_url(self) -> str:
        if self.storage is None:
            return f"sqlite:///{(self.tune_dir / 'study.sqlite3').resolve()}"
        if self.storage.startswith(("postgresql://", "postgres://")):  # psycopg 3 is the installed driver
            return "postgresql+psycopg://" + self.storage.split("://", 1)[1]
        return self.storage


def task_space(cfg: TuneConfig) -> tuple[SearchSpace, list[str]]:
    """The study's search space (an AUC study's is adapted to labelled training, see ``load_space``)."""
    return load_space(cfg.model, cfg.space_file, cfg.overrides, labelled=cfg.metric == AUC)


def parse_duration(text: str) -> float:
    """``"2h"``, ``"90m"``, ``"1h30m"``, ``"45s"`` or plain seconds -> seconds."""
    t = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", t):
        return float(t)
    m = re.fullmatch(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?", t)
    if not t or m is None:
        raise ConfigError(f"duration {text!r} must look like 2h, 90m, 1h30m, 45s or a number of seconds")
    h, mins, s = (float(x) if x else 0.0 for x in m.groups())
    return h * 3600 + mins * 60 + s


def safe_url(url: str) -> str:
    """The storage URL with any password hidden (for printing and files)."""
    import sqlalchemy

    return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)


def study_setup(cfg: TuneConfig, space: SearchSpace) -> dict[str, Any]:
    """What a study was created for; a resume with a different setup is refused."""
    return {"dataset": cfg.dataset, "model": cfg.model, "split": cfg.split, "metric": cfg.metric,
            "params": [dataclasses.asdict(p) | {"choices": list(p.choices)} for p in space.params],
            "fixed": space.fixed}


def open_study(cfg: TuneConfig, space: SearchSpace, worker: int = 0) -> optuna.Study:
    """Create the study, or load it (``load_if_exists``) after checking it was made for the same setup."""
    import optuna
    import sqlalchemy.exc
    from sqlalchemy.pool import NullPool

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if cfg.storage is None:
        cfg.tune_dir.mkdir(parents=True, exist_ok=True)
    url = cfg.storage_url
    # No connection pool: a connection per storage operation (a few per trial), none left open between trials.
    engine_kwargs: dict[str, Any] = {"poolclass": NullPool}
    if url.startswith("sqlite"):
        engine_kwargs["connect_args"] = {"timeout": 60}  # seconds to wait for another worker's write lock
    try:
        with warnings.catch_warnings():  # heartbeats are experimental in Optuna; they free a killed worker's trials
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            storage = optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, heartbeat_interval=30,
                                                 grace_period=120)
    except (sqlalchemy.exc.SQLAlchemyError, ImportError) as exc:  # a bad URL, a missing driver, no server
        raise ConfigError(f"cannot open the study storage {safe_url(url)!r}: {exc}. Give --storage as "
                          "sqlite:///path/file.sqlite3 or postgresql://user:password@host:5432/db") from None
    n_startup = cfg.startup_trials if cfg.startup_trials is not None else min(10, max(1, cfg.trials // 4))
    sampler = optuna.samplers.TPESampler(seed=cfg.seed + worker, n_startup_trials=n_startup)
    pruner: optuna.pruners.BasePruner = (
        optuna.pruners.MedianPruner(n_startup_trials=cfg.prune_after_trials, n_warmup_steps=cfg.prune_after_epochs)
        if cfg.prune else optuna.pruners.NopPruner())
    study = optuna.create_study(storage=storage, sampler=sampler, pruner=pruner, study_name=cfg.study_name,
                                direction="maximize", load_if_exists=True)
    setup = study_setup(cfg, space)
    stored = study.user_attrs.get("setup")
    if stored is None:
        study.set_user_attr("setup", setup)
        point, _ = space.default_point()
        if point:  # trial 0 runs the model's defaults: the tuned result is never below them on validation
            study.enqueue_trial(point, user_attrs={"defaults": True}, skip_if_exists=True)
    elif stored != setup:
        diff = sorted(k for k in setup if stored.get(k) != setup[k])
        raise ConfigError(f"study {cfg.study_name!r} in {safe_url(url)} was created with a different {', '.join(diff)} "
                          f"(stored: { {k: stored.get(k) for k in diff} }); resume it with the same settings, or "
                          "start a new study with --study NAME")
    return study


def counted(trials: list[optuna.trial.FrozenTrial]) -> int:
    """Trials that count towards ``--trials`` (see the module docstring)."""
    from optuna.trial import TrialState

    live = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
    return sum(t.state in live or (t.state == TrialState.FAIL and "error" in t.user_attrs) for t in trials)


@contextmanager
def _file_lock(path: Path) -> Iterator[Callable[[], None]]:
    """Hold an exclusive lock on ``path``; yields a function that releases it early (once)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        held = [True]

        def release() -> None:
            if held[0]:
                fcntl.flock(fh, fcntl.LOCK_UN)
                held[0] = False

        try:
            yield release
        finally:
            release()


def run_worker(cfg: TuneConfig, worker: int = 0, deadline: float | None = None, echo: Echo = print,
               data: TrialData | CtrTrialData | None = None) -> int:
    """Run trials until the study has ``cfg.trials`` counted trials or ``deadline`` (``time.time()``)
    passes. ``data`` replaces loading the dataset (tests). Returns how many trials this worker ran."""
    import optuna

    space, _ = task_space(cfg)
    study = open_study(cfg, space, worker)
    if data is None:
        data = load_trial_data(cfg.dataset, cfg.data_dir, cfg.split, mapping=cfg.mapping)
    tag = f"[worker {worker}] " if cfg.jobs > 1 else ""
    ran = fails_in_a_row = 0
    while deadline is None or time.time() < deadline:
        last = _run_one(study, cfg, space, data, worker, lambda line: echo(tag + line))
        if last is None:
            break
        ran += 1
        fails_in_a_row = fails_in_a_row + 1 if last.state == optuna.trial.TrialState.FAIL else 0
        echo(tag + progress_line(study, last, cfg.trials))
        if fails_in_a_row >= MAX_FAILS_IN_A_ROW:
            raise CtxrecError(f"{MAX_FAILS_IN_A_ROW} trials in a row failed; the last with {last.user_attrs.get('error')}. "
                              "Fix the setup (or the search space) and rerun the same command to resume")
    return ran


def _run_one(study: optuna.Study, cfg: TuneConfig, space: SearchSpace, data: TrialData | CtrTrialData, worker: int,
             echo: Echo | None = None) -> optuna.trial.FrozenTrial | None:
    """Run one trial, unless the study already has its ``cfg.trials`` (then None); returns the finished trial."""
    import optuna

    started: list[int] = []
    with _file_lock(cfg.tune_dir / ".trials.lock") as release:
        with warnings.catch_warnings():  # experimental in Optuna, but the documented way to free stale trials
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        if counted(study.get_trials(deepcopy=False)) >= cfg.trials:
            return None

        def objective(trial: optuna.Trial) -> float:
            release()  # the trial is RUNNING in the storage now, so other workers count it
            started.append(trial.number)
            trial.set_user_attr("worker", f"{os.uname().nodename}/{worker}")
            try:
                return run_trial(trial, space, data, cfg.metric, echo)
            except optuna.TrialPruned:
                raise
            except Exception as exc:
                trial.set_user_attr("error", f"{type(exc).__name__}: {exc}"[:2000])
                raise
            except KeyboardInterrupt:
                trial.set_user_attr("interrupted", True)
                raise

        study.optimize(objective, n_trials=1, catch=(Exception,))
    if not started:
        raise CtxrecError(f"study {cfg.study_name!r}: Optuna finished a trial without running it; see the log above")
    return next(t for t in study.get_trials(deepcopy=False) if t.number == started[0])


def progress_line(study: optuna.Study, last: optuna.trial.FrozenTrial | None, total: int) -> str:
    """``trial 7: 0.0812 (3 epochs, 12.0 s) | best 0.0901 (trial 4) | 8/40 counted, 2 pruned, 0 failed``."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    n_pruned = sum(t.state == TrialState.PRUNED for t in trials)
    n_failed = sum(t.state == TrialState.FAIL and "error" in t.user_attrs for t in trials)
    head = "no trial"
    if last is not None:
        epochs = last.user_attrs.get("epochs_run")
        secs = last.duration.total_seconds() if last.duration else 0.0
        what = {TrialState.COMPLETE: f"{last.value:.4f}" if last.value is not None else "-",
                TrialState.PRUNED: f"pruned after epoch {last.last_step} ({_last_intermediate(last)})",
                TrialState.FAIL: f"FAILED: {last.user_attrs.get('error', 'interrupted')}"}.get(last.state, last.state.name)
        head = f"trial {last.number}: {what} ({f'{epochs} epochs, ' if epochs else ''}{secs:.1f} s)"
    try:
        best = f"best {study.best_value:.4f} (trial {study.best_trial.number})"
    except ValueError:
        best = "no complete trial yet"
    return f"{head} | {best} | {counted(trials)}/{total} counted, {n_pruned} pruned, {n_failed} failed"


def _last_intermediate(t: optuna.trial.FrozenTrial) -> str:
    return f"{t.intermediate_values[t.last_step]:.4f}" if t.last_step is not None else "-"


def _worker_main(cfg: TuneConfig, worker: int, deadline: float | None) -> None:
    """Entry point of a spawned worker process: share the CPU cores, run trials."""
    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // cfg.jobs))
    with suppress(KeyboardInterrupt):  # the parent reports the interruption
        run_worker(cfg, worker, deadline)


def run_study(cfg: TuneConfig, echo: Echo = print, data: TrialData | CtrTrialData | None = None) -> optuna.Study:
    """Run the study's missing trials with ``cfg.jobs`` processes; returns the study.

    The study is created here first (so workers only load it). ``data`` (one process only) replaces
    loading the dataset."""
    space, notes = task_space(cfg)  # checked before any data is read
    for note in notes:
        echo(f"note: {note}")
    study = open_study(cfg, space)
    before = counted(study.get_trials(deepcopy=False))
    echo(f"study {cfg.study_name!r} in {safe_url(cfg.storage_url)}: {before}/{cfg.trials} trials so far; "
         f"searching {', '.join(space.names())} on validation {cfg.metric}")
    if before:
        echo("resuming: the trials already in the study count towards --trials")
    else:
        _, left = space.default_point()
        echo("the first trial runs the model's defaults" + (
            f" (sampling {', '.join(left)}: their defaults are outside the searched range)" if left else ""))
    deadline = time.time() + cfg.timeout_s if cfg.timeout_s else None
    if cfg.jobs == 1:
        run_worker(cfg, 0, deadline, echo, data)
        return study
    if data is not None:
        raise ConfigError("data= can only be passed with jobs=1 (each worker process loads the dataset itself)")
    import multiprocessing as mp

    ctx = mp.get_context("spawn")  # fresh interpreters: no forked torch threads or database connections
    procs = [ctx.Process(target=_worker_main, args=(cfg, i, deadline), name=f"ctxrec-tune-{i}") for i in range(cfg.jobs)]
    for p in procs:
        p.start()
    try:
        for p in procs:
            p.join()
    except KeyboardInterrupt:
        for p in procs:
            p.join(timeout=30)
        raise
    bad = [f"worker {i} (exit code {p.exitcode})" for i, p in enumerate(procs) if p.exitcode != 0]
    if bad:
        raise CtxrecError(f"tuning {' and '.join(bad)} failed (its error is printed above); "
                          "rerun the same command to resume the study")
    return study
