"""The ``ctxrec`` command line: data info/init, config show, train, evaluate, recommend, export, quickstart,
serve, retrain.

Every command is a thin wrapper over the library; heavy imports happen inside the commands so
``ctxrec --help`` is instant. Commands that read data take a built-in dataset name or ``--mapping FILE``
(a column mapping of your own files); run folders record the mapping and the checksums of the files read,
so ``evaluate`` and ``retrain`` find the same data again (:func:`ctxrec.experiment.run_data`).
"""

import dataclasses
import difflib
import errno
import json
import shlex
from pathlib import Path
from typing import Annotated, Any

import typer

from ctxrec import cli_serve
from ctxrec.cli_base import (
    DataDir,
    Mapping,
    _dataset_from,
    _fail,
    _run_config,
    _run_data,
    _warn,
    app,
    config_app,
    data_app,
)
from ctxrec.experiment import ExperimentConfig
from ctxrec.models import MODELS

_EXPERIMENT_KEYS = ", ".join(f.name for f in dataclasses.fields(ExperimentConfig))


@data_app.command("info")
def data_info(
    name: Annotated[str | None, typer.Argument(help="Built-in dataset name, e.g. ml-1m (or use --mapping).")] = None,
    mapping: Mapping = None,
    split: Annotated[str, typer.Option(help="Split whose test targets are checked: leave-one-out, temporal or random.")] = "leave-one-out",
    data_dir: DataDir = None,
) -> None:
    """Print users/items/events, the context schema, text fields, the event order and how many test targets
    are items no other user has."""
    from ctxrec.data.splits import make_split, target_support
    from ctxrec.errors import CtxrecError

    try:
        data = _dataset_from(name, mapping, data_dir)
    except CtxrecError as exc:
        _fail(str(exc))
    summary = data.summary()
    summary.pop("context_fields")
    width = max(len(k) for k in summary)
    notes = summary.pop("notes")
    for k, v in summary.items():
        shown = f"{v:,}" if isinstance(v, int) else (", ".join(map(str, v)) or "-") if isinstance(v, list) else v
        typer.echo(f"{k:<{width}}  {shown}")
    typer.echo("notes:" + ("" if notes else " none"))
    for note in notes if isinstance(notes, list) else []:  # one per line: each is a sentence, some long
        typer.echo(f"  - {note}")
    typer.echo(f"{'repeats':<{width}}  " + ("users take items again (repeat_consumption): seen items are recommended and "
                                           "evaluated" if data.schema.repeat_consumption else
                                           "no: items a user has are left out of their recommendations and evaluation"))
    typer.echo("context schema:" + ("" if data.schema.context else " none (no context fields)"))
    for line in _context_lines(data):
        typer.echo(f"  {line}")
    typer.echo(f"{'order':<{width}}  {_order_used(data)}")
    try:
        support = target_support(make_split(data, split))
    except CtxrecError as exc:
        _warn(f"{split} cannot split this data: {exc}")
        return
    typer.echo(f"{'targets':<{width}}  {support.share:.1%} of the {support.cases:,} {split} test targets are items "
               "no other training user has")
    if support.warning:
        _warn(support.warning)


def _context_lines(data: Any) -> list[str]:
    """One line per context field: kind, number of values (a few examples) or range, share missing."""
    frame = data.interactions
    out = []
    width = max((len(c.name) for c in data.schema.context), default=0)
    for c in data.schema.context:
        col = frame[c.name]
        if c.kind == "numeric":
            missing = col.isna()
            known = col[~missing]
            what = f"range {known.min():g} .. {known.max():g}" if len(known) else "no values"
        else:
            missing = col == "<unk>"
            values = col[~missing].value_counts()
            shown = ", ".join(map(str, values.index[:5])) + (", ..." if len(values) > 5 else "")
            what = f"{len(values):,} value{'' if len(values) == 1 else 's'} ({shown or 'none'})"
        out.append(f"{c.name:<{width}}  {c.kind:<11}  {what}; {missing.mean():.0%} missing")
    return out


def _order_used(data: Any) -> str:
    """How leave-one-out orders each user's events: by time, or by the file."""
    times = data.interactions["timestamp"]
    by_file = data.schema.order == "file"
    if times.isna().all():
        return "file (no timestamps; order = \"file\")" if by_file else "none: no timestamps, and the mapping does not say order = \"file\""
    if times.isna().any():
        n = int(times.isna().sum())
        return (f"file ({n:,} events have no timestamp; order = \"file\")" if by_file
                else f"none: {n:,} events have no timestamp, and the mapping does not say order = \"file\"")
    return "time (timestamps; equal ones in file order)" if by_file else "time (timestamps)"


@data_app.command("init")
def data_init(
    files: Annotated[list[Path], typer.Argument(help="The event log first, then any items/users files.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Mapping file to write.")] = Path("mapping.toml"),
    force: Annotated[bool, typer.Option("--force", help="Overwrite --out if it exists.")] = False,
) -> None:
    """Write a commented column mapping by inspecting the files; prints each guess and why."""
    from ctxrec.data.infer import infer_mapping
    from ctxrec.errors import CtxrecError

    if out.exists() and not force:
        _fail(f"{str(out)!r} exists; pass --force to overwrite it or --out to write elsewhere")
    try:
        guess = infer_mapping(files, mapping_path=out)
    except CtxrecError as exc:
        _fail(str(exc))
    for line in guess.lines:
        typer.echo(line)
    out.write_text(guess.toml)
    typer.echo(f"wrote {out}: check the guesses, edit it, then run `ctxrec data info --mapping {out}`")


@config_app.command("show")
def config_show(model: Annotated[str, typer.Argument(help=f"Model kind: {', '.join(MODELS)}.")]) -> None:
    """Print every config field of a model kind (nested ones dotted, as --set takes them): type, default, doc."""
    from ctxrec.config import describe_config
    from ctxrec.errors import CtxrecError
    from ctxrec.models import get_model_class

    try:
        cls = get_model_class(model).config_class
    except CtxrecError as exc:
        _fail(str(exc))
    rows = describe_config(cls)
    w_name, w_type = (max(len(r[i]) for r in rows) for i in (0, 1))
    w_default = min(max(len(r[2]) for r in rows), 24)
    typer.echo(f"{model} ({cls.__name__}); set with --set FIELD=VALUE or [model_config] in an experiment file")
    for name, type_, default, doc in rows:
        typer.echo(f"  {name:<{w_name}}  {type_:<{w_type}}  {default:<{w_default}}  {doc}".rstrip())


@app.command()
def train(
    config: Annotated[Path | None, typer.Argument(help=f"Experiment file (TOML or JSON) with the keys {_EXPERIMENT_KEYS}; "
                                                    "the options below override it.")] = None,
    dataset: Annotated[str | None, typer.Option(help="Built-in dataset name (overrides the config).")] = None,
    mapping: Mapping = None,
    model: Annotated[str | None, typer.Option(help=f"Model kind: {', '.join(MODELS)}; its config fields: "
                                                 "`ctxrec config show KIND`.")] = None,
    split: Annotated[str | None, typer.Option(help="leave-one-out, temporal or random.")] = None,
    set_: Annotated[list[str], typer.Option("--set", help="Model config override key=value, dotted for nested keys "
                                            "(e.g. train.lr=0.001; repeatable). Unknown keys fail before any data "
                                            "is read.")] = [],  # noqa: B006
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Run folder (default runs/<dataset>-<model>).")] = None,
    data_dir: DataDir = None,
    nproc: Annotated[int, typer.Option("--nproc", help="Data-parallel processes on this machine (torchrun + DDP; "
                                       "gloo on CPU, NCCL on GPU). See docs/distributed.md.")] = 1,
) -> None:
    """Train a model and write a run folder: config, model, metrics.json, report.png, TensorBoard logs."""
    import os

    from ctxrec.errors import CtxrecError
    from ctxrec.experiment import experiment_config, run_experiment
    from ctxrec.reports import auto_decisions, print_metrics
    from ctxrec.training import distributed

    try:
        cfg = experiment_config(config, dataset=dataset, model=model, split=split, data_dir=data_dir, overrides=set_,
                                mapping=mapping)
        run_dir = out or Path("runs") / f"{cfg.dataset}-{cfg.model}"
        parts = ["ctxrec", "train"] + ([str(config)] if config else [])
        for flag, val in (("--dataset", dataset), ("--mapping", str(mapping) if mapping else None), ("--model", model),
                          ("--split", split), ("--data-dir", data_dir)):
            if val is not None:
                parts += [flag, val]
        parts += [x for kv in set_ for x in ("--set", kv)] + ["-o", str(run_dir)]
        if nproc < 1:
            _fail(f"--nproc must be >= 1, got {nproc}")
        if nproc > 1 and not distributed.in_torchrun():
            launched = [*parts[:2], "--nproc", str(nproc), *parts[2:]]
            from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

            try:  # rank 0 prints the metrics and the run folder
                distributed.launch(nproc, parts[1:], command=" ".join(shlex.quote(p) for p in launched))
            except ChildFailedError as exc:
                rank, failure = exc.get_first_failure()
                _fail(f"training process of rank {rank} failed with exit code {failure.exitcode} (its error is printed above)")
            return
        distributed.setup()  # joins the process group under torchrun; no-op otherwise
        try:
            command = os.environ.get("CTXREC_LAUNCH_COMMAND") or " ".join(shlex.quote(p) for p in parts)
            result = run_experiment(cfg, run_dir, command=command)
        finally:
            distributed.teardown()
    except CtxrecError as exc:
        _fail(str(exc))
    if not result:  # a non-zero rank: rank 0 reports
        return
    print_metrics({cfg.model: result["metrics"]})
    decided = auto_decisions(result.get("fit_info"))
    if decided:
        typer.echo(decided)
    typer.echo(f"run folder: {run_dir}")


@app.command()
def tune(
    model: Annotated[str, typer.Option(help="Model kind with a search space: sasrec, fusion, pointwise, ease.")],
    trials: Annotated[int, typer.Option(help="Trials in the study in all (a rerun resumes up to this many).")],
    dataset: Annotated[str | None, typer.Option(help="Built-in dataset name, e.g. ml-100k (or --mapping).")] = None,
    mapping: Mapping = None,
    timeout: Annotated[str | None, typer.Option(help="Start no trial after this long, e.g. 2h, 90m, 1h30m.")] = None,
    jobs: Annotated[int, typer.Option(help="Worker processes on this machine (they share the CPU cores).")] = 1,
    storage: Annotated[str | None, typer.Option(help="Study storage: an SQLAlchemy URL; a postgresql:// URL lets "
                                                   "several machines share one study (default: SQLite file in the run folder).")] = None,
    study: Annotated[str | None, typer.Option(help="Study name (default <dataset>-<model>).")] = None,
    space: Annotated[Path | None, typer.Option(help="TOML file editing the model's search space (see ctxrec.tuning.spaces).")] = None,
    set_: Annotated[list[str], typer.Option("--set", help="Model config key=value fixed in every trial (repeatable).")] = [],  # noqa: B006
    split: Annotated[str, typer.Option(help="leave-one-out, temporal or random; auto: leave-one-out, or the CTR "
                                            "split (ctxrec.data.ctr) for --metric auc.")] = "auto",
    metric: Annotated[str, typer.Option(help="Validation objective: auc (CTR, labelled tables) or NAME@K; "
                                             "auto: auc for pointwise, ndcg@10 otherwise.")] = "auto",
    seed: Annotated[int, typer.Option(help="Sampler seed (give each machine sharing a study its own).")] = 0,
    confirm: Annotated[int, typer.Option(help="Then train the K best trials with --confirm-seeds more seeds each and "
                                              "keep the best mean validation score (0: the single best trial).")] = 0,
    confirm_seeds: Annotated[int, typer.Option(help="Extra seeds per confirmed trial.")] = 2,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Run folder; files go to <out>/tune/ (default runs/<dataset>-<model>).")] = None,
    data_dir: DataDir = None,
) -> None:
    """Tune a model's hyperparameters on validation NDCG@10, or AUC for pointwise (Optuna: TPE, median pruning).

    Writes <out>/tune/: trials.csv, best_config.json (for `ctxrec train`), history.png, importance.png,
    best/ (the best config retrained and evaluated once on test) and summary.json.
    """
    import sys

    from ctxrec.config import apply_overrides, flatten
    from ctxrec.errors import CtxrecError
    from ctxrec.tuning import TuneConfig, parse_duration
    from ctxrec.tuning import tune as run_tune

    if (dataset is None) == (mapping is None):
        _fail("give --dataset NAME or --mapping FILE (a column mapping of your data; `ctxrec data init` writes one)")
    label = dataset or Path(str(mapping)).stem
    try:
        cfg = TuneConfig(dataset=label, model=model, trials=trials, out=str(out or Path("runs") / f"{label}-{model}"),
                         data_dir=data_dir, mapping=str(mapping) if mapping else None, split=split, metric=metric, timeout_s=parse_duration(timeout) if timeout else None,
                         jobs=jobs, storage=storage, study=study, seed=seed, confirm=confirm, confirm_seeds=confirm_seeds,
                         space_file=str(space) if space else None,
                         overrides=flatten(apply_overrides({}, set_)),
                         command=" ".join(shlex.quote(a) for a in ["ctxrec", *sys.argv[1:]]))
        summary = run_tune(cfg, echo=typer.echo)
    except CtxrecError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        typer.echo(f"\ninterrupted; rerun the same command to resume the study ({study or f'{label}-{model}'})", err=True)
        raise typer.Exit(code=130) from None
    from ctxrec.reports import print_metrics

    print_metrics({f"{model} (tuned, trial {summary['best_trial']})": summary["test_metrics"]})


@app.command()
def evaluate(
    run: Annotated[Path, typer.Argument(help="Run folder written by `ctxrec train` (or a model folder).")],
    dataset: Annotated[str | None, typer.Option(help="Built-in dataset (default: the run's).")] = None,
    mapping: Annotated[Path | None, typer.Option("--mapping", help="Column mapping of the data to evaluate on "
                                                    "(default: the run's, checked against the files' recorded SHA-256).")] = None,
    split: Annotated[str | None, typer.Option(help="Split (default: the run's).")] = None,
    include_seen: Annotated[bool | None, typer.Option(
        "--include-seen/--exclude-seen",
        help="Rank already-seen items too (default: the dataset's own, kept on repeat-use data such as frappe).")] = None,
    data_dir: DataDir = None,
) -> None:
    """Evaluate a saved model on the test cases of a split, with full ranking."""
    from ctxrec.data.splits import make_split
    from ctxrec.errors import CtxrecError
    from ctxrec.evaluation.evaluator import EvalConfig, Evaluator
    from ctxrec.models import load_model
    from ctxrec.reports import print_metrics

    try:
        m = load_model(run)
        run_cfg = _run_config(run)
        data = _run_data(run, dataset, mapping, data_dir or run_cfg.get("data_dir"))
        sp = make_split(data, split or run_cfg.get("split", "leave-one-out"))
        keep_seen = data.schema.repeat_consumption if include_seen is None else include_seen
        res = Evaluator(EvalConfig(exclude_seen=not keep_seen)).evaluate(m, sp.test)
    except (CtxrecError, FileNotFoundError) as exc:
        _fail(str(exc))
    print_metrics({m.kind: res})


@app.command()
def ensemble(
    runs: Annotated[list[Path], typer.Argument(help="Run folders of one fusion experiment trained with different "
                                               "train.seed values (e.g. side by side: `ctxrec train ... --set "
                                               "train.seed=S -o runs/S`); they may also differ in how they were "
                                               "trained (loss, n_negatives, train.*), not in the network.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder to write the ensemble to.")],
) -> None:
    """Average fusion runs trained apart into one seed ensemble, evaluated on their test cases.

    The same model as `ctxrec train --model ensemble`, whose members train one after the other; here they
    trained in parallel processes or on several machines, and may have been trained two ways (a full and a
    sampled softmax). `ctxrec evaluate` and `ctxrec serve` read the folder written."""
    from ctxrec.errors import CtxrecError
    from ctxrec.experiment import combine_runs
    from ctxrec.reports import print_metrics

    if len(runs) < 2:
        _fail(f"give at least two run folders to average, got {len(runs)}")
    try:
        result = combine_runs(runs, out, command=" ".join(shlex.quote(str(a)) for a in ["ctxrec", "ensemble", *runs, "-o", out]))
    except (CtxrecError, FileNotFoundError) as exc:
        _fail(str(exc))
    print_metrics({f"ensemble of {len(runs)}": result["metrics"],
                   **{f"member seed {m['seed']}": m["metrics"] for m in result["members"] if m["metrics"]}})
    typer.echo(f"run folder: {out}")


@app.command()
def recommend(
    run: Annotated[Path, typer.Argument(help="Run or model folder.")],
    user: Annotated[str | None, typer.Option(help="Known user id.")] = None,
    history: Annotated[str | None, typer.Option(help="Comma-separated item ids, oldest first (new user).")] = None,
    context: Annotated[list[str], typer.Option("--context", "-c", help="Request context key=value (repeatable).")] = [],  # noqa: B006
    k: Annotated[int, typer.Option("-k", "--k", help="How many items.")] = 10,
    explain: Annotated[bool, typer.Option(help="Show what drove each recommendation.")] = False,
    explain_plot: Annotated[Path | None, typer.Option("--explain-plot", help="Save bar charts of the explanation "
                                                         "(view weights, context fields, past events) to this PNG.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    mapping: Annotated[Path | None, typer.Option("--mapping", help="Show item titles from this column mapping's "
                                                    "items file (its title_field) instead of the model folder's.")] = None,
    when: Annotated[str, typer.Option("--time", help="Request time for a model with time features: 'now' (as the "
                                      "service does), an ISO date-time (UTC unless it names a zone), unix seconds, "
                                      "or 'none' (scored as unknown).")] = "now",
) -> None:
    """Recommend for a user id or a given history, with request context (checked against the model's context
    fields: unknown keys are errors, values never seen in training and ignored context are warnings)."""
    from ctxrec.config import parse_kv
    from ctxrec.errors import CtxrecError
    from ctxrec.models import load_model
    from ctxrec.queries import RecQuery

    if user is None and history is None and not context:
        _fail("give --user, --history or at least one --context key=value")
    timestamp = _request_time(when)
    try:
        m = load_model(run)
        given = parse_kv(context, what="context", example="device=mobile", strings=True)
        checked = m.check_context(given)
        q = RecQuery(user_id=user, history=history.split(",") if history else None, context=checked.context,
                     timestamp=timestamp)
        recs = m.recommend([q], k=k, explain=explain or explain_plot is not None)[0]
        if mapping is not None:
            items = _dataset_from(None, mapping, None).items
            if "title" not in items.columns:
                _fail(f"mapping {str(mapping)!r} has no items file with a title_field or text_fields: no titles to show")
            m.item_titles = items["title"].dropna().astype(str).to_dict()
    except (CtxrecError, FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
    if given and not checked.used:
        _warn(f"{m.kind} models ignore request context; {', '.join(given)} was not used")
    elif checked.unused_fields:
        _warn(f"this {m.kind} model does not use the context field(s) {', '.join(checked.unused_fields)}; ignored")
    for key, value in checked.unknown_values.items():
        values = [str(v) for v in m.context_schema()[key]["values"] or []]
        close = [v for v in values if v.lower() == value.lower()] or difflib.get_close_matches(value, values, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        shown = ", ".join(values[:20]) + (", ..." if len(values) > 20 else "")
        _warn(f"{key}={value!r} was never seen in training; scored as unknown{hint}; known values: {shown}")
    if unknown_user := (user is not None and history is None and m.user_vocab is not None and m.user_vocab.get(user) < 0):
        _warn(f"user {user!r} is not in the model's training data and no --history was given: recommended as a new user")
    titles = _titles(m, recs.item_ids)
    if as_json:
        typer.echo(json.dumps({"items": recs.item_ids, "scores": [float(s) for s in recs.scores],
                               "titles": titles, "explanation": recs.explanation, "context_used": checked.used,
                               "context_unknown_values": checked.unknown_values, "known_user": not unknown_user,
                               "request_time": timestamp}))
        return
    for rank, (item, score, title) in enumerate(zip(recs.item_ids, recs.scores, titles, strict=True), 1):
        typer.echo(f"{rank:>3}. {item:<12} {score:8.4f}  {title}")
    if (explain or explain_plot is not None) and not recs.explanation:
        typer.echo(f"({m.kind} models give no per-recommendation explanation)")
    elif recs.explanation is not None:
        from ctxrec.models.attribution import format_explanation, plot_explanation

        if explain:
            typer.echo(format_explanation(recs.explanation, getattr(m, "item_titles", None)))
        if explain_plot is not None:
            typer.echo(f"explanation plot: {plot_explanation(recs.explanation, explain_plot, titles=getattr(m, 'item_titles', None))}")


def _request_time(text: str) -> float | None:
    """``--time``: "now", "none", unix seconds or an ISO date-time (UTC unless it names a zone)."""
    import math
    import time
    from datetime import UTC, datetime

    from ctxrec.serving.schemas import MAX_TIMESTAMP, MIN_TIMESTAMP

    word = text.strip().lower()
    if word == "now":
        return time.time()
    if word == "none":
        return None
    try:
        seconds = float(word)
    except ValueError:
        try:
            dt = datetime.fromisoformat(text.strip())
        except ValueError:
            _fail(f"--time {text!r} is not 'now', 'none', unix seconds or an ISO date-time such as 2026-12-06T18:30")
        seconds = (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()
    if not (math.isfinite(seconds) and MIN_TIMESTAMP <= seconds <= MAX_TIMESTAMP):
        _fail(f"--time {text!r} is outside the plausible range of unix seconds [{MIN_TIMESTAMP:.0f}, {MAX_TIMESTAMP:.0f}]")
    return seconds


def _titles(model: Any, item_ids: list[str]) -> list[str]:
    """Titles from the model folder's item table when one was saved, else empty strings."""
    table = getattr(model, "item_titles", None)
    if not table:
        return ["" for _ in item_ids]
    return [table.get(i, "") for i in item_ids]


@app.command("export")
def export_cmd(
    model: Annotated[Path, typer.Option("--model", help="Run or model folder of a sasrec or fusion model.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Export folder to write.")],
    format_: Annotated[str, typer.Option("--format", help="Export format: onnx.")] = "onnx",
    quantize: Annotated[str, typer.Option(help="none; int8 (int8 tables + dynamically quantized weight MatMuls); int8-static (int8 tables + every MatMul statically quantized, calibrated on stored histories).")] = "none",
    prune: Annotated[float, typer.Option(help="Fraction of weights zeroed by global magnitude pruning first.")] = 0.0,
    text_encoder: Annotated[bool, typer.Option(help="Also export the model's text encoder (text-aware models).")] = True,
) -> None:
    """Export a trained model (and its text encoder) to ONNX for the ONNX Runtime backend; see docs/deploy.md.

    It reads no dataset (int8-static calibrates on the histories stored in the model), so it takes no mapping."""
    from ctxrec.errors import CtxrecError
    from ctxrec.experiment import staged_folder

    if format_ != "onnx":
        _fail(f"unknown export format {format_!r}; supported: onnx")
    try:
        from ctxrec.deploy.export import ExportConfig, export_model

        cfg = ExportConfig(quantize=quantize, prune=prune, text_encoder=text_encoder)  # type: ignore[arg-type]  # CLI strings; ExportConfig checks the Literal values
        with staged_folder(out) as stage:  # a failed export leaves no half-written folder
            info = export_model(model, stage, cfg, log=typer.echo)
    except (CtxrecError, FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
    sizes = ", ".join(f"{k} {v / 2**20:.2f} MB" for k, v in info["files"].items())
    typer.echo(f"export folder: {out} ({sizes})")


@app.command()
def quickstart(
    data_dir: DataDir = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Where run folders go.")] = Path("runs/quickstart"),
    budget_seconds: Annotated[float, typer.Option(help="Training time budget of each neural model (SASRec, fusion).")] = 300.0,
) -> None:
    """Train the baselines and the best ctxrec model on ml-100k, print metrics and example recommendations.

    With no data directory and no network, runs on a seeded synthetic dataset instead (and says so).
    """
    from ctxrec.quickstart import run_quickstart

    run_quickstart(data_dir=data_dir, out=out, budget_seconds=budget_seconds, echo=typer.echo)


app.command()(cli_serve.serve)
app.command()(cli_serve.retrain)


_DISK_ERRORS = {errno.ENOSPC: "free disk space there (or write elsewhere with -o / $CTXREC_CACHE)",
                 errno.EDQUOT: "the disk quota is used up: free space there or write elsewhere",
                 errno.EROFS: "the filesystem is read-only: write elsewhere (-o)",
                 errno.EACCES: "no permission for that path: fix its permissions or use another location (-o)"}


def main() -> None:
    """The ``ctxrec`` command. A file operation that fails for a reason outside the program (a full disk, no
    permission) ends in one line naming the file and the fix, not a traceback; a training run keeps its
    checkpoints then (``train.resume=true`` continues it, see docs/getting-started.md)."""
    try:
        app()
    except OSError as exc:
        if exc.errno not in _DISK_ERRORS:
            raise
        typer.secho(f"error: {exc}; {_DISK_ERRORS[exc.errno]}", fg=typer.colors.RED, err=True)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
