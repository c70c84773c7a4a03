"""The ``ctxrec`` command line: data info, train, evaluate, recommend, export, quickstart, serve, retrain.

Every command is a thin wrapper over the library; heavy imports happen inside the commands so
``ctxrec --help`` is instant.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ctxrec.experiment import ExperimentConfig
from ctxrec.models import MODELS

app = typer.Typer(help="ctxrec: context-aware recommendation with pretrained language models.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)
data_app = typer.Typer(help="Inspect datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")

DataDir = Annotated[Optional[str], typer.Option("--data-dir", help="Data directory (default: $CTXREC_DATA).")]


def _fail(msg: str) -> None:
    typer.secho(f"error: {msg}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=2)


_EXPERIMENT_KEYS = ", ".join(f.name for f in dataclasses.fields(ExperimentConfig))


@data_app.command("info")
def data_info(name: Annotated[str, typer.Argument(help="Built-in dataset name, e.g. ml-1m.")], data_dir: DataDir = None) -> None:
    """Print users/items/events, context fields and text fields of a dataset."""
    from ctxrec.data.datasets import load_dataset
    from ctxrec.errors import CtxrecError

    try:
        summary = load_dataset(name, data_dir).summary()
    except CtxrecError as exc:
        _fail(str(exc))
        return
    width = max(len(k) for k in summary)
    for k, v in summary.items():
        if isinstance(v, int):
            v = f"{v:,}"
        elif isinstance(v, list):
            v = ", ".join(map(str, v)) or "-"
        typer.echo(f"{k:<{width}}  {v}")


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
        return
    for line in guess.lines:
        typer.echo(line)
    out.write_text(guess.toml)
    typer.echo(f"wrote {out}: check the guesses, edit it, then run `ctxrec data info --mapping {out}`")


@app.command()
def train(
    config: Annotated[Optional[Path], typer.Argument(help=f"Experiment file (TOML or JSON) with the keys {_EXPERIMENT_KEYS}; "
                                                    "the options below override it.")] = None,
    dataset: Annotated[Optional[str], typer.Option(help="Built-in dataset name (overrides the config).")] = None,
    model: Annotated[Optional[str], typer.Option(help=f"Model kind: {', '.join(MODELS)}.")] = None,
    split: Annotated[Optional[str], typer.Option(help="leave-one-out or temporal.")] = None,
    set_: Annotated[list[str], typer.Option("--set", help="Model config override key=value, dotted for nested keys "
                                            "(e.g. train.lr=0.001; repeatable). Unknown keys fail before any data "
                                            "is read.")] = [],  # noqa: B006
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Run folder (default runs/<dataset>-<model>).")] = None,
    data_dir: DataDir = None,
    nproc: Annotated[int, typer.Option("--nproc", help="Data-parallel processes on this machine (torchrun + DDP; "
                                       "gloo on CPU, NCCL on GPU). See docs/distributed.md.")] = 1,
) -> None:
    """Train a model and write a run folder: config, model, metrics.json, report.png, TensorBoard logs."""
    import os

    from ctxrec.errors import CtxrecError
    from ctxrec.experiment import experiment_config, run_experiment
    from ctxrec.reports import print_metrics
    from ctxrec.training import distributed

    try:
        cfg = experiment_config(config, dataset=dataset, model=model, split=split, data_dir=data_dir, overrides=set_)
        run_dir = out or Path("runs") / f"{cfg.dataset}-{cfg.model}"
        parts = ["ctxrec", "train"] + ([str(config)] if config else [])
        for flag, val in (("--dataset", dataset), ("--model", model), ("--split", split), ("--data-dir", data_dir)):
            if val is not None:
                parts += [flag, val]
        parts += [x for kv in set_ for x in ("--set", kv)] + ["-o", str(run_dir)]
        if nproc < 1:
            _fail(f"--nproc must be >= 1, got {nproc}")
        if nproc > 1 and not distributed.in_torchrun():
            launched = parts[:2] + ["--nproc", str(nproc)] + parts[2:]
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
        return
    if not result:  # a non-zero rank: rank 0 reports
        return
    print_metrics({cfg.model: result["metrics"]})
    typer.echo(f"run folder: {run_dir}")


@app.command()
def tune(
    dataset: Annotated[str, typer.Option(help="Built-in dataset name, e.g. ml-100k.")],
    model: Annotated[str, typer.Option(help="Model kind with a search space: sasrec, fusion, pointwise, ease.")],
    trials: Annotated[int, typer.Option(help="Trials in the study in all (a rerun resumes up to this many).")],
    timeout: Annotated[str | None, typer.Option(help="Start no trial after this long, e.g. 2h, 90m, 1h30m.")] = None,
    jobs: Annotated[int, typer.Option(help="Worker processes on this machine (they share the CPU cores).")] = 1,
    storage: Annotated[str | None, typer.Option(help="Study storage: an SQLAlchemy URL; a postgresql:// URL lets "
                                                   "several machines share one study (default: SQLite file in the run folder).")] = None,
    study: Annotated[str | None, typer.Option(help="Study name (default <dataset>-<model>).")] = None,
    space: Annotated[Path | None, typer.Option(help="TOML file editing the model's search space (see ctxrec.tuning.spaces).")] = None,
    set_: Annotated[list[str], typer.Option("--set", help="Model config key=value fixed in every trial (repeatable).")] = [],  # noqa: B006
    split: Annotated[str, typer.Option(help="leave-one-out or temporal.")] = "leave-one-out",
    seed: Annotated[int, typer.Option(help="Sampler seed (give each machine sharing a study its own).")] = 0,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Run folder; files go to <out>/tune/ (default runs/<dataset>-<model>).")] = None,
    data_dir: DataDir = None,
) -> None:
    """Tune a model's hyperparameters on validation NDCG@10 (Optuna: TPE, median pruning).

    Writes <out>/tune/: trials.csv, best_config.json (for `ctxrec train`), history.png, importance.png,
    best/ (the best config retrained and evaluated once on test) and summary.json.
    """
    import sys

    from ctxrec.config import apply_overrides
    from ctxrec.errors import CtxrecError
    from ctxrec.tuning import TuneConfig, parse_duration
    from ctxrec.tuning import tune as run_tune
    from ctxrec.tuning.spaces import flatten_overrides

    try:
        cfg = TuneConfig(dataset=dataset, model=model, trials=trials, out=str(out or Path("runs") / f"{dataset}-{model}"),
                         data_dir=data_dir, split=split, timeout_s=parse_duration(timeout) if timeout else None,
                         jobs=jobs, storage=storage, study=study, seed=seed, space_file=str(space) if space else None,
                         overrides=flatten_overrides(apply_overrides({}, set_)),
                         command=" ".join(shlex.quote(a) for a in ["ctxrec", *sys.argv[1:]]))
        summary = run_tune(cfg, echo=typer.echo)
    except CtxrecError as exc:
        _fail(str(exc))
        return
    except KeyboardInterrupt:
        typer.echo(f"\ninterrupted; rerun the same command to resume the study ({study or f'{dataset}-{model}'})", err=True)
        raise typer.Exit(code=130) from None
    from ctxrec.reports import print_metrics

    print_metrics({f"{model} (tuned, trial {summary['best_trial']})": summary["test_metrics"]})


@app.command()
def evaluate(
    run: Annotated[Path, typer.Argument(help="Run folder written by `ctxrec train` (or a model folder).")],
    dataset: Annotated[Optional[str], typer.Option(help="Dataset (default: the run's).")] = None,
    split: Annotated[Optional[str], typer.Option(help="Split (default: the run's).")] = None,
    include_seen: Annotated[bool | None, typer.Option(
        "--include-seen/--exclude-seen",
        help="Rank already-seen items too (default: the dataset's own, kept on repeat-use data such as frappe).")] = None,
    data_dir: DataDir = None,
) -> None:
    """Evaluate a saved model on the test cases of a split, with full ranking."""
    from ctxrec.data.datasets import load_dataset
    from ctxrec.data.splits import make_split
    from ctxrec.errors import CtxrecError
    from ctxrec.evaluation.evaluator import EvalConfig, Evaluator
    from ctxrec.models import load_model
    from ctxrec.reports import print_metrics

    try:
        run_cfg = json.loads((run / "config.json").read_text()) if (run / "model").exists() else {}
        name = dataset or run_cfg.get("dataset")
        if not name:
            _fail(f"{str(run)!r} does not record its dataset; pass --dataset")
        m = load_model(run)
        data = load_dataset(name, data_dir or run_cfg.get("data_dir"))
        sp = make_split(data, split or run_cfg.get("split", "leave-one-out"))
        keep_seen = data.schema.repeat_consumption if include_seen is None else include_seen
        res = Evaluator(EvalConfig(exclude_seen=not keep_seen)).evaluate(m, sp.test)
    except (CtxrecError, FileNotFoundError) as exc:
        _fail(str(exc))
        return
    print_metrics({m.kind: res})


@app.command()
def recommend(
    run: Annotated[Path, typer.Argument(help="Run or model folder.")],
    user: Annotated[Optional[str], typer.Option(help="Known user id.")] = None,
    history: Annotated[Optional[str], typer.Option(help="Comma-separated item ids, oldest first (new user).")] = None,
    context: Annotated[list[str], typer.Option("--context", "-c", help="Request context key=value (repeatable).")] = [],  # noqa: B006
    k: Annotated[int, typer.Option("-k", "--k", help="How many items.")] = 10,
    explain: Annotated[bool, typer.Option(help="Show what drove each recommendation.")] = False,
    explain_plot: Annotated[Optional[Path], typer.Option("--explain-plot", help="Save bar charts of the explanation "
                                                         "(view weights, context fields, past events) to this PNG.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Recommend for a user id or a given history, with request context."""
    from ctxrec.config import parse_kv
    from ctxrec.errors import CtxrecError
    from ctxrec.models import load_model
    from ctxrec.queries import RecQuery

    if user is None and history is None and not context:
        _fail("give --user, --history or at least one --context key=value")
    try:
        m = load_model(run)
        q = RecQuery(user_id=user, history=history.split(",") if history else None,
                     context=parse_kv(context, what="context", example="device=mobile", strings=True))
        recs = m.recommend([q], k=k, explain=explain or explain_plot is not None)[0]
    except (CtxrecError, FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
        return
    titles = _titles(m, recs.item_ids)
    if as_json:
        typer.echo(json.dumps({"items": recs.item_ids, "scores": [float(s) for s in recs.scores],
                               "titles": titles, "explanation": recs.explanation}))
        return
    for rank, (item, score, title) in enumerate(zip(recs.item_ids, recs.scores, titles, strict=True), 1):
        typer.echo(f"{rank:>3}. {item:<12} {score:8.4f}  {title}")
    if (explain or explain_plot is not None) and not recs.explanation:
        typer.echo(f"({m.kind} models give no per-recommendation explanation)")
    elif explain or explain_plot is not None:
        from ctxrec.models.attribution import format_explanation, plot_explanation

        if explain:
            typer.echo(format_explanation(recs.explanation, getattr(m, "item_titles", None)))
        if explain_plot is not None:
            typer.echo(f"explanation plot: {plot_explanation(recs.explanation, explain_plot, titles=getattr(m, 'item_titles', None))}")


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
    """Export a trained model (and its text encoder) to ONNX for the ONNX Runtime backend; see docs/deploy.md."""
    from ctxrec.errors import CtxrecError

    if format_ != "onnx":
        _fail(f"unknown export format {format_!r}; supported: onnx")
    try:
        from ctxrec.deploy.export import ExportConfig, export_model

        cfg = ExportConfig(quantize=quantize, prune=prune, text_encoder=text_encoder)  # type: ignore[arg-type]
        info = export_model(model, out, cfg, log=typer.echo)
    except (CtxrecError, FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
        return
    sizes = ", ".join(f"{k} {v / 2**20:.2f} MB" for k, v in info["files"].items())
    typer.echo(f"export folder: {out} ({sizes})")


@app.command()
def quickstart(
    data_dir: DataDir = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Where run folders go.")] = Path("runs/quickstart"),
    budget_seconds: Annotated[float, typer.Option(help="Training time budget for the neural model.")] = 300.0,
) -> None:
    """Train the baselines and the best ctxrec model on ml-100k, print metrics and example recommendations.

    With no data directory and no network, runs on a seeded synthetic dataset instead (and says so).
    """
    from ctxrec.quickstart import run_quickstart

    run_quickstart(data_dir=data_dir, out=out, budget_seconds=budget_seconds, echo=typer.echo)


@app.command()
def serve(
    model: Annotated[Path, typer.Option("--model", help="Run folder (or model folder) to serve.")],
    store: Annotated[str, typer.Option(help="Event store: SQLite file path or postgresql:// URL.")] = "ctxrec-events.sqlite",
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    keys: Annotated[Optional[Path], typer.Option(help="API keys file (hashed keys with scopes).")] = None,
    no_auth: Annotated[bool, typer.Option("--no-auth", help="Serve without API keys (local development only).")] = False,
    new_key: Annotated[Optional[str], typer.Option(help="Create a key with this name in --keys, print it, exit.")] = None,
    scopes: Annotated[str, typer.Option(help="Scopes of --new-key: read, write, admin (comma-separated).")] = "read",
    items: Annotated[Optional[Path], typer.Option(help="Item attributes (CSV/TSV/JSONL/Parquet with item_id) for filters.")] = None,
    index: Annotated[str, typer.Option(help="exact, or hnsw (faiss) for dot-product models.")] = "exact",
    hnsw_ef_search: Annotated[int, typer.Option(help="HNSW efSearch (recall vs speed).")] = 256,
    cors: Annotated[list[str], typer.Option("--cors", help="Allowed CORS origin (repeatable; off by default).")] = [],  # noqa: B006
    model_root: Annotated[list[str], typer.Option("--model-root", help="Folder POST /v1/admin/model may load from (repeatable).")] = [],  # noqa: B006
    max_k: Annotated[int, typer.Option(help="Largest k a request may ask for.")] = 100,
    synchronous: Annotated[str, typer.Option(help="SQLite synchronous mode: FULL (survives power loss) or NORMAL.")] = "FULL",
    threads: Annotated[int, typer.Option(help="torch threads of the model thread.")] = 1,
    user_cache: Annotated[int, typer.Option(help="Users whose state is cached (context-blind models; 0 = off).")] = 100_000,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "warning",
    store_deadline: Annotated[float, typer.Option(help="Seconds a store call may take before the request gets 503 "
                                                       "(and /healthz fails while one runs longer).")] = 2.0,
    workers: Annotated[int, typer.Option(help="Processes serving on this port over the same store (PostgreSQL "
                                              "recommended; see 'Several replicas' in docs/serving.md).")] = 1,
) -> None:
    """Serve a model over HTTP (FastAPI + uvicorn; OpenAPI docs at /docs). See docs/serving.md."""
    if new_key is not None:
        from ctxrec.serving.security import add_key_to_file

        if keys is None:
            _fail("--new-key needs --keys FILE (where the key's hash is stored)")
        try:
            key = add_key_to_file(keys, new_key, [s.strip() for s in scopes.split(",") if s.strip()])
        except ValueError as exc:
            _fail(str(exc))
            return
        typer.echo(key)
        return
    if keys is None and not no_auth:
        _fail("give --keys FILE (create keys with --new-key NAME --scopes read,write --keys FILE) or --no-auth")
    if index not in ("exact", "hnsw") or synchronous not in ("FULL", "NORMAL"):
        _fail(f"--index must be exact or hnsw (got {index!r}); --synchronous FULL or NORMAL (got {synchronous!r})")
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import uvicorn

    from ctxrec.serving import ServingSettings, create_app

    settings = ServingSettings(model=str(model), store=store, keys_file=str(keys) if keys else None,
                               items_file=str(items) if items else None, index=index, hnsw_ef_search=hnsw_ef_search,  # type: ignore[arg-type]
                               cors_origins=tuple(cors), allowed_model_roots=tuple(model_root), max_k=max_k,
                               sqlite_synchronous=synchronous, torch_threads=threads, user_cache=user_cache,  # type: ignore[arg-type]
                               store_deadline=store_deadline)
    if workers < 1:
        _fail(f"--workers must be >= 1, got {workers}")
    if workers > 1:  # each process builds its own app from the settings (uvicorn's factory import string)
        from ctxrec.serving.settings import SETTINGS_ENV, settings_to_env

        if not model.exists():
            _fail(f"--model {str(model)!r} does not exist")
        os.environ[SETTINGS_ENV] = settings_to_env(settings)
        typer.echo(f"serving {model} on http://{host}:{port} with {workers} processes (docs: /docs)", err=True)
        uvicorn.run("ctxrec.serving.app:create_app_from_env", factory=True, workers=workers, host=host, port=port,
                    log_level=log_level, access_log=False, timeout_graceful_shutdown=5)
        return
    try:
        application = create_app(settings)
    except (FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
        return
    typer.echo(f"serving {model} on http://{host}:{port} (docs: /docs)", err=True)
    # SIGTERM: stop accepting, let requests in flight finish (each store call ends within its deadline), exit in < 10 s
    uvicorn.run(application, host=host, port=port, log_level=log_level, access_log=False, timeout_graceful_shutdown=5)


@app.command()
def retrain(
    model: Annotated[Path, typer.Option("--model", help="Run folder being served.")],
    store: Annotated[str, typer.Option(help="Event store the service writes (path or postgresql:// URL).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="New run folder (the next model version).")],
    epochs: Annotated[int, typer.Option(help="Extra epochs from the current weights.")] = 3,
    tolerance: Annotated[float, typer.Option(help="Promote if new NDCG@10 >= current - tolerance.")] = 0.0,
    promote: Annotated[Optional[str], typer.Option(help="Service URL: switch it to the new version if promoted.")] = None,
    api_key: Annotated[Optional[str], typer.Option(envvar="CTXREC_API_KEY", help="Admin key for --promote.")] = None,
    data_dir: DataDir = None,
) -> None:
    """Fold stored events into a new model version (warm start), evaluate on held-out new events, promote."""
    from ctxrec.errors import CtxrecError
    from ctxrec.serving.lifecycle import retrain as do_retrain

    try:
        report = do_retrain(model, store, out, epochs=epochs, data_dir=data_dir, tolerance=tolerance)
    except (CtxrecError, FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
        return
    typer.echo(json.dumps(report, indent=2))
    if promote and report["promoted"]:
        import httpx

        r = httpx.post(f"{promote.rstrip('/')}/v1/admin/model", json={"run_dir": str(out.resolve())},
                       headers={"X-API-Key": api_key} if api_key else {}, timeout=600)
        if r.status_code != 200:
            _fail(f"promotion failed ({r.status_code}): {r.text}")
        typer.echo(f"service now serves {r.json()['version']}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
