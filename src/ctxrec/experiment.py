"""One experiment = dataset + split + model + evaluation, written to a run folder.

The one front door behind ``ctxrec train`` and ``benchmarks/run.py``: both build the experiment with
:func:`experiment_config` (validated in full, model config included, before any data is read) and run
it with :func:`run_experiment`, so both produce the same artefacts:

    run_dir/config.json     the resolved ExperimentConfig
    run_dir/data.json       with a column mapping: the files read and their SHA-256 (see :func:`run_data`)
    run_dir/mapping.toml    with a column mapping: a copy of it (``.json`` for a JSON mapping)
    run_dir/model/          the saved model (config.json, model.safetensors, vocab/)
    run_dir/metrics.json    {"dataset", "model", "split", "metrics", "command", "seconds", "machine", ...}
    run_dir/history.json    per-epoch loss and validation metrics (neural models)
    run_dir/report.png      training curve (neural models)
    run_dir/tensorboard/    TensorBoard logs

The run folder is written under a hidden staging name next to it and renamed at the end, so a run that
fails leaves no half-written folder (and an earlier run at the same place intact).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import platform
import resource
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ctxrec.config import apply_overrides, flatten, from_dict, load_file, to_dict
from ctxrec.errors import ConfigError, DataError

if TYPE_CHECKING:
    from ctxrec.data.dataset import Dataset
    from ctxrec.training.distributed import DistContext

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class ExperimentConfig:
    """What to train and how to evaluate it."""

    dataset: str = "ml-100k"
    """A built-in dataset; with ``mapping``, the name of the mapped dataset (a label only)."""
    data_dir: str | None = None
    """Defaults to $CTXREC_DATA."""
    mapping: str | None = None
    """A column mapping file (TOML/JSON) of your own data, read instead of a built-in dataset. In an
    experiment file, a relative path is relative to that file."""
    split: str = "leave-one-out"
    model: str = "sasrec"
    """A registered model kind (``ctxrec.models.MODELS``)."""
    model_config: dict[str, Any] = field(default_factory=dict)
    """Validated against the model's typed config by :func:`check_experiment` (unknown keys are errors)."""
    ks: tuple[int, ...] = (5, 10, 20)
    exclude_seen: bool | None = None
    """Drop already-seen items from the ranking; None = the dataset's default (kept where users return to
    items: ``DatasetSchema.repeat_consumption``)."""


def code_version() -> dict[str, Any]:
    """The code a result came from: the package version, and the git commit (with ``dirty`` when tracked
    files differ from it) when ctxrec runs from a checkout; a reused seed keeps the commit it was trained at."""
    import subprocess

    from ctxrec import __version__

    out: dict[str, Any] = {"ctxrec": __version__, "commit": None, "dirty": None}
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return out
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        status = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):  # no git on this machine: the version alone
        return out
    return {**out, "commit": commit, "dirty": bool(status.strip())}


def machine_description() -> dict[str, Any]:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = None
    with contextlib.suppress(ValueError, OSError):  # not every platform reports its memory
        mem_gib = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": mem_gib,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch": torch.__version__,
        "cpu_kernels": torch.backends.cpu.get_cpu_capability(),  # AVX2 / AVX512 round differently
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
    }


def peak_rss_mib() -> float:
    """Peak resident memory of this process (Linux reports KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def run_experiment(
    cfg: ExperimentConfig, run_dir: str | Path, *, command: str | None = None, data: Dataset | None = None
) -> dict[str, Any]:
    """Load, split, fit (early-stopping on validation), evaluate on test, save everything.

    ``data`` replaces loading ``cfg.dataset`` (used by the quickstart's synthetic fallback)."""
    from ctxrec.training.distributed import context

    model_cfg = check_experiment(cfg)  # every config error before any data is read or any folder written
    dist = context()  # under torchrun every rank trains; rank 0 alone evaluates and writes the run folder
    main = dist is None or dist.is_main
    out = Path(run_dir)
    stage = out.resolve().with_name(f".{out.resolve().name}.partial")
    if main:
        train_cfg = getattr(model_cfg, "train", None)
        _prepare_staging(stage, out, resume=bool(getattr(train_cfg, "resume", False)))
    try:
        result = _run(cfg, model_cfg, stage, command=command, data=data, dist=dist)
    except BaseException as exc:
        if main:
            _keep_or_clear(stage, exc)
        if isinstance(exc, OSError) and exc.errno is not None and exc.filename is None:
            # a write that names no file (Path.write_text on a full disk): name the run folder it was for
            raise OSError(exc.errno, exc.strerror, str(out)) from exc
        raise
    if main:
        _publish(stage, out)
    return result


def _run(cfg: ExperimentConfig, model_cfg: Any, out: Path, *, command: str | None, data: Dataset | None,
         dist: DistContext | None) -> dict[str, Any]:
    """The experiment itself, writing into ``out`` (the staging folder)."""
    from ctxrec.data.datasets import load_dataset
    from ctxrec.data.splits import make_split
    from ctxrec.evaluation.evaluator import EvalConfig, Evaluator
    from ctxrec.models import get_model_class
    from ctxrec.privacy import pseudonym_secret, pseudonymise_dataset

    main = dist is None or dist.is_main
    if main:
        (out / "config.json").write_text(json.dumps(to_dict(cfg), indent=2) + "\n")
    t0 = time.perf_counter()
    code = code_version()  # at the start: a commit made while the run trains is not the code it ran
    if data is None and cfg.mapping is not None:
        data = read_mapped(cfg.mapping, record_in=out if main else None)
    elif data is None:
        data = load_dataset(cfg.dataset, cfg.data_dir)
    data = pseudonymise_dataset(data, pseudonym_secret())  # $CTXREC_PSEUDONYM_SECRET: train on the ids serve uses
    split = make_split(data, cfg.split)
    model = get_model_class(cfg.model)(model_cfg)
    t_fit = time.perf_counter()
    model.fit(split.train, valid=split.valid, run_dir=out)
    fit_seconds = time.perf_counter() - t_fit
    if not main:
        return {}
    exclude_seen = cfg.exclude_seen if cfg.exclude_seen is not None else not data.schema.repeat_consumption
    evaluator = Evaluator(EvalConfig(ks=cfg.ks, exclude_seen=exclude_seen))
    metrics = evaluator.evaluate(model, split.test)
    model.save(out / "model")
    info = {k: v for k, v in model.fit_info.items() if k != "history"}
    history = model.fit_info.get("history") or []
    epoch_secs = [h["train_seconds"] for h in history if "train_seconds" in h]
    train_cfg = getattr(model.config, "train", None)
    curve_key = f"valid_{train_cfg.valid_metric}" if train_cfg is not None else None
    if history and curve_key in history[0]:  # the validation curve, compact: runs compare at equal epochs, not only at the end
        info["valid_curve"] = {"metric": curve_key, "values": [round(float(h[curve_key]), 4) for h in history if curve_key in h]}
    result = {
        "dataset": cfg.dataset,
        "model": cfg.model,
        "split": cfg.split,
        "metrics": {k: round(float(v), 6) for k, v in metrics.items()},
        "dataset_stats": {"users": data.n_users, "items": data.n_items, "events": data.n_events},
        "command": command or " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "seconds": round(time.perf_counter() - t0, 2),
        "fit_seconds": round(fit_seconds, 2),
        "seconds_per_epoch": round(sorted(epoch_secs)[len(epoch_secs) // 2], 2) if epoch_secs else None,
        "peak_rss_mib": peak_rss_mib(),
        "exclude_seen": exclude_seen,
        "model_config": to_dict(model.config),
        "fit_info": info,
        "machine": machine_description(),
        "code": code,
    }
    if dist is not None:
        result["distributed"] = {"world_size": dist.world_size, "backend": dist.backend}
    (out / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    if history:
        from ctxrec.reports import plot_training_curve

        plot_training_curve(history, out / "report.png", title=f"{cfg.model} on {cfg.dataset}")
    return result


def _keep_or_clear(stage: Path, exc: BaseException) -> None:
    """After a failed run: keep the staging folder when training got as far as a checkpoint (a disk that
    filled while the model was saved must not cost the training: ``train.resume=true`` finishes it without
    training again), else remove it, so that a failed command leaves no half-written folder."""
    last = stage / "checkpoints" / "last"
    if not (last / "meta.json").is_file():
        shutil.rmtree(stage, ignore_errors=True)
        return
    try:
        epoch = json.loads((last / "meta.json").read_text())["meta"]["epoch"]
    except (OSError, ValueError, KeyError):
        epoch = "?"
    log.warning("the run failed (%s: %s); its checkpoints up to epoch %s are kept in %s: remove the cause (free "
                "disk space, ...) and run the same command with --set train.resume=true to continue from there",
                type(exc).__name__, exc, epoch, stage)


def _prepare_staging(stage: Path, out: Path, *, resume: bool) -> None:
    """An empty staging folder, or for a resumed run the folder it continues (checkpoints, history and
    TensorBoard logs carry on): the staging folder of a run that was killed (SIGKILL, SIGTERM, the machine
    going away) before it finished, whose checkpoints are the newest, else a copy of the finished run."""
    killed = (stage / "checkpoints" / "last").is_dir()
    if resume and killed:
        log.warning("train.resume=true: continuing the run that was stopped before it finished, from %s", stage)
        return
    if killed:
        log.warning("a run stopped before it finished left checkpoints in %s; starting afresh, so they go "
                    "(train.resume=true would have continued it)", stage)
    shutil.rmtree(stage, ignore_errors=True)  # left by a run that was killed outright
    if resume and out.is_dir():
        shutil.copytree(out, stage)
    else:
        stage.mkdir(parents=True)


def _publish(stage: Path, out: Path) -> None:
    """Replace ``out`` with the finished staging folder (the earlier run, if any, goes only now)."""
    old = out.with_name(f".{out.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        os.replace(out, old)
    os.replace(stage, out)
    shutil.rmtree(old, ignore_errors=True)


@contextmanager
def staged_folder(out: str | Path) -> Iterator[Path]:
    """A folder to write ``out`` into (``ctxrec retrain``, ``ctxrec export``): renamed to ``out`` (replacing an
    earlier one) when the block ends, removed when it raises, so a failed command leaves no half-written
    folder. It has ``out``'s name, inside a hidden ``.<name>.partial`` folder, for code that names things
    after the folder it writes."""
    final = Path(out).resolve()
    holder = final.with_name(f".{final.name}.partial")
    shutil.rmtree(holder, ignore_errors=True)  # left by a command that was killed outright
    stage = holder / final.name
    stage.mkdir(parents=True)
    try:
        yield stage
        _publish(stage, final)
    finally:
        shutil.rmtree(holder, ignore_errors=True)


def check_experiment(cfg: ExperimentConfig) -> Any:
    """Everything about ``cfg`` that can be checked without data: the split name, the model kind and the
    model config (unknown keys at any depth, wrong types). Returns the model's typed config; each problem
    is a :class:`~ctxrec.errors.ConfigError` naming it."""
    from ctxrec.data.splits import SPLITS
    from ctxrec.models import get_model_class

    if cfg.split not in SPLITS:
        raise ConfigError(f"unknown split {cfg.split!r}; choose one of {sorted(SPLITS)}")
    model_cfg: Any = from_dict(get_model_class(cfg.model).config_class, cfg.model_config)
    vectors = getattr(model_cfg, "item_vectors", None)  # a file the model reads at fit time: missing = say so now
    if vectors:
        from ctxrec.models.features import item_vectors_path

        item_vectors_path(vectors)
    return model_cfg


def experiment_from_dict(d: dict[str, Any]) -> ExperimentConfig:
    """An :class:`ExperimentConfig` from a dict, checked in full by :func:`check_experiment`."""
    cfg = from_dict(ExperimentConfig, d)
    check_experiment(cfg)
    return cfg


def experiment_config(
    config_file: str | Path | None = None,
    *,
    dataset: str | None = None,
    model: str | None = None,
    split: str | None = None,
    data_dir: str | None = None,
    overrides: Sequence[str] = (),
    mapping: str | Path | None = None,
) -> ExperimentConfig:
    """The experiment a front door asks for (``ctxrec train``, ``benchmarks/run.py``): an experiment file,
    then the options that are not None, then ``key=value`` overrides of the model config; validated by
    :func:`experiment_from_dict`. ``dataset`` and ``mapping`` exclude each other; either replaces the
    file's; with a mapping, ``dataset`` becomes the mapped dataset's name."""
    from ctxrec.data.readers import load_mapping

    raw = load_file(config_file) if config_file else {}
    if "interactions" in raw:
        raise ConfigError(f"{str(config_file)!r} is a column mapping, not an experiment file: pass it as "
                          f"--mapping {config_file} (or write mapping = \"{config_file}\" in an experiment file)")
    if dataset is not None and mapping is not None:
        raise ConfigError(f"give a built-in dataset ({dataset!r}) or a mapping ({str(mapping)!r}), not both")
    if "dataset" in raw and "mapping" in raw and dataset is None and mapping is None:
        raise ConfigError(f"experiment file {str(config_file)!r} sets both dataset and mapping; keep one")
    if raw.get("mapping") is not None and config_file is not None:
        raw["mapping"] = str((Path(config_file).parent / str(raw["mapping"])).resolve())
    if dataset is not None:
        raw.pop("mapping", None)
    if mapping is not None:
        raw.pop("dataset", None)
        raw["mapping"] = str(Path(mapping).resolve())
    for key, val in (("dataset", dataset), ("model", model), ("split", split), ("data_dir", data_dir)):
        if val is not None:
            raw[key] = val
    if isinstance(raw.get("mapping"), str):
        mpath = Path(raw["mapping"])
        raw["dataset"] = load_mapping(mpath).name or mpath.stem  # checks the mapping before any data is read
    if overrides:
        mc = raw.get("model_config", {})
        if not isinstance(mc, dict):
            raise ConfigError(f"model_config must be a table, got {mc!r}")
        raw["model_config"] = apply_overrides(mc, overrides)
    return experiment_from_dict(raw)


# ------------------------------------------------------------------------------------ where the data is
DATA_RECORD = "data.json"


def load_data(*, dataset: str | None = None, mapping: str | Path | None = None,
              data_dir: str | None = None) -> Dataset:
    """A built-in dataset by name, or your own data through a column mapping file: the one data loader
    of the CLI commands that take a dataset (``data info``, ``tune``, ...)."""
    from ctxrec.data.datasets import DATASETS, load_dataset
    from ctxrec.data.readers import read_dataset

    if (dataset is None) == (mapping is None):
        raise ConfigError("give a built-in dataset name or --mapping FILE (a column mapping of your data; "
                          "`ctxrec data init FILE ...` writes one)" + (", not both" if dataset else ""))
    if mapping is not None:
        return read_dataset(mapping)
    assert dataset is not None
    if dataset not in DATASETS and Path(dataset).suffix in (".toml", ".json") and Path(dataset).is_file():
        raise ConfigError(f"{dataset!r} is a file, not a built-in dataset name: pass a mapping file as --mapping {dataset}")
    return load_dataset(dataset, data_dir)


def mapped_files(mapping_path: str | Path) -> dict[str, Path]:
    """The files a mapping file reads, by role (``interactions``, ``items``, ``users``)."""
    from ctxrec.data.readers import load_mapping

    mpath = Path(mapping_path)
    m = load_mapping(mpath)
    files = {"interactions": m.interactions, "items": m.items.path if m.items else None,
             "users": m.users.path if m.users else None}
    return {role: (mpath.parent / rel).resolve() for role, rel in files.items() if rel is not None}


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_mapped(mapping_path: str | Path, *, record_in: Path | None = None) -> Dataset:
    """Read the data of a mapping file; with ``record_in`` (a run folder), also write a copy of the mapping
    and :data:`DATA_RECORD`: the SHA-256 of every file read, so :func:`run_data` finds the same data later."""
    from ctxrec.data.readers import read_dataset

    mpath = Path(mapping_path).resolve()
    copy = f"mapping{mpath.suffix}"
    record: dict[str, Any] = {}
    if record_in is not None:  # hashed before reading: a file that changes while it is read fails the next check
        record = {"mapping": copy, "mapping_source": str(mpath), "base_dir": str(mpath.parent),
                  "files": [{"role": role, "path": str(path), "sha256": _hash_or_fail(path, role, mpath)}
                            for role, path in mapped_files(mpath).items()]}
    data = read_dataset(mpath)
    if record_in is not None:
        record["name"] = data.name
        shutil.copyfile(mpath, record_in / copy)
        (record_in / DATA_RECORD).write_text(json.dumps(record, indent=2) + "\n")
    return data


def _hash_or_fail(path: Path, role: str, mapping: Path) -> str:
    if not path.is_file():
        raise DataError(f"{role} file {str(path)!r} named by mapping {str(mapping)!r} does not exist")
    return sha256(path)


def run_data(run_dir: str | Path) -> Dataset | None:
    """The data a run folder was trained on, found again: its mapping copy (:data:`DATA_RECORD`), each file
    checked against its recorded SHA-256 (a changed or missing file is a :class:`DataError` naming it), or
    its built-in dataset. ``None`` when the folder records neither (a model folder saved from the library)."""
    from ctxrec.data.datasets import load_dataset
    from ctxrec.data.readers import load_mapping, read_dataset

    run = Path(run_dir)
    if (run / DATA_RECORD).is_file():
        record = json.loads((run / DATA_RECORD).read_text())
        for f in record["files"]:
            path = Path(f["path"])
            again = "restore it, or pass --mapping FILE to use the data as it is now"
            if not path.is_file():
                raise DataError(f"{f['role']} file {str(path)!r} that run {str(run)!r} was trained on is missing; {again}")
            now = sha256(path)
            if now != f["sha256"]:
                raise DataError(f"{f['role']} file {str(path)!r} changed since run {str(run)!r} was trained on it "
                                f"(SHA-256 {f['sha256'][:12]}... then, {now[:12]}... now); {again}")
        mapping = load_mapping(run / record["mapping"])
        return read_dataset(mapping, name=record.get("name"), base_dir=record["base_dir"])
    cfg_path = run / "config.json"
    if (run / "model").is_dir() and cfg_path.is_file():
        cfg = json.loads(cfg_path.read_text())
        if cfg.get("dataset"):
            return load_dataset(cfg["dataset"], cfg.get("data_dir"))
    return None


def copy_data_record(src_run: str | Path, dst_run: str | Path) -> None:
    """Carry a run folder's data record (mapping copy and checksums) into a run derived from it."""
    src, dst = Path(src_run), Path(dst_run)
    if (src / DATA_RECORD).is_file():
        record = json.loads((src / DATA_RECORD).read_text())
        shutil.copyfile(src / record["mapping"], dst / record["mapping"])
        shutil.copyfile(src / DATA_RECORD, dst / DATA_RECORD)


def combine_runs(runs: Sequence[str | Path], out: str | Path, *, command: str | None = None) -> dict[str, Any]:
    """A seed ensemble (kind ``ensemble``) of fusion runs trained apart from one experiment but
    ``train.seed`` (``ctxrec train --set train.seed=S`` in parallel processes or on several machines),
    written as a run folder that ``ctxrec evaluate`` and ``ctxrec serve`` read, and evaluated on the
    runs' test cases: ``metrics.json`` holds the ensemble's metrics next to each member's. The runs may also
    differ in how they were trained (another loss, another schedule), not in the network or the data."""
    from ctxrec.data.splits import make_split
    from ctxrec.evaluation.evaluator import EvalConfig, Evaluator
    from ctxrec.models import load_model
    from ctxrec.models.ensemble import EnsembleRecommender, training_only
    from ctxrec.privacy import pseudonym_secret, pseudonymise_dataset

    t0 = time.perf_counter()
    paths = [Path(r) for r in runs]
    cfgs = []
    for p in paths:
        if not (p / "config.json").is_file() or not (p / "model").is_dir():
            raise ConfigError(f"{str(p)!r} is not a run folder written by `ctxrec train` (it has no config.json and "
                              "model/); pass the --out folders of the member runs")
        cfgs.append(json.loads((p / "config.json").read_text()))
    if cfgs[0].get("model") != "fusion":
        raise ConfigError(f"run {str(paths[0])!r} trained a {cfgs[0].get('model')!r} model; an ensemble's members are fusion runs")

    def network(cfg: dict[str, Any]) -> dict[str, Any]:  # the run's config less how its model was trained
        return {k: v for k, v in flatten(cfg).items()
                if not (k.startswith("model_config.") and training_only(k.removeprefix("model_config.")))}

    base = network(cfgs[0])
    for p, c in zip(paths[1:], cfgs[1:], strict=True):
        flat = network(c)
        differ = sorted(k for k in base.keys() | flat.keys() if base.get(k) != flat.get(k))
        if differ:
            raise ConfigError(f"run {str(p)!r} is not the experiment of run {str(paths[0])!r} with another seed: they "
                              f"differ in {', '.join(differ[:5])} (members may differ only in how they were trained: "
                              "model_config.train.*, loss, n_negatives, sampled_above)")
    ens = EnsembleRecommender.from_members([load_model(p) for p in paths])
    exp = experiment_from_dict(cfgs[0])
    data = run_data(paths[0])
    if data is None:
        raise DataError(f"run {str(paths[0])!r} records no data to evaluate on (no dataset, no data record)")
    data = pseudonymise_dataset(data, pseudonym_secret())  # as the members were trained
    exclude_seen = exp.exclude_seen if exp.exclude_seen is not None else not data.schema.repeat_consumption
    metrics = Evaluator(EvalConfig(ks=exp.ks, exclude_seen=exclude_seen)).evaluate(ens, make_split(data, exp.split).test)
    members = []
    for p, member in zip(paths, ens.members, strict=True):
        m = json.loads((p / "metrics.json").read_text()) if (p / "metrics.json").is_file() else {}
        members.append({"run": str(p), "seed": member.config.train.seed, "metrics": m.get("metrics"),
                        "command": m.get("command"), "fit_seconds": m.get("fit_seconds")})
    result = {
        "dataset": exp.dataset, "model": "ensemble", "split": exp.split,
        "metrics": {k: round(float(v), 6) for k, v in metrics.items()},
        "dataset_stats": {"users": data.n_users, "items": data.n_items, "events": data.n_events},
        "command": command or " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "members": members,
        "seconds": round(time.perf_counter() - t0, 2),
        "fit_seconds": round(sum(m["fit_seconds"] or 0.0 for m in members), 2),  # the members', trained apart
        "peak_rss_mib": peak_rss_mib(), "exclude_seen": exclude_seen, "model_config": to_dict(ens.config),
        "fit_info": ens.fit_info, "machine": machine_description(), "code": code_version(),
    }
    with staged_folder(out) as stage:
        (stage / "config.json").write_text(json.dumps({**cfgs[0], "model": "ensemble", "model_config": to_dict(ens.config)},
                                                      indent=2) + "\n")
        copy_data_record(paths[0], stage)
        ens.save(stage / "model")
        (stage / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    return result
