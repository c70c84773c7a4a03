"""The service commands of the ``ctxrec`` command line, ``serve`` and ``retrain`` (docs/serving.md); :mod:`ctxrec.cli`
registers them after its own commands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ctxrec.cli_base import DataDir, _dataset_from, _fail, _run_config, _run_data


def serve(
    model: Annotated[Path, typer.Option("--model", help="Run folder (or model folder) to serve.")],
    store: Annotated[str, typer.Option(help="Event store: SQLite file path or postgresql:// URL.")] = "ctxrec-events.sqlite",
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    keys: Annotated[Path | None, typer.Option(help="API keys file (hashed keys with scopes).")] = None,
    no_auth: Annotated[bool, typer.Option("--no-auth", help="Serve without API keys (local development only).")] = False,
    new_key: Annotated[str | None, typer.Option(help="Create a key with this name in --keys, print it, exit.")] = None,
    scopes: Annotated[str, typer.Option(help="Scopes of --new-key: read, write, admin (comma-separated).")] = "read",
    items: Annotated[Path | None, typer.Option(help="Item attributes (CSV/TSV/JSONL/Parquet with item_id) for filters.")] = None,
    mapping: Annotated[Path | None, typer.Option("--mapping", help="Item attributes for filters from this column "
                                                    "mapping's items file (read as `ctxrec train` reads it); instead of --items.")] = None,
    index: Annotated[str, typer.Option(help="exact, or hnsw (faiss) for dot-product models.")] = "exact",
    hnsw_ef_search: Annotated[int, typer.Option(help="HNSW efSearch (recall vs speed).")] = 256,
    cors: Annotated[list[str], typer.Option("--cors", help="Allowed CORS origin (repeatable; off by default).")] = [],  # noqa: B006
    model_root: Annotated[list[str], typer.Option("--model-root", help="Folder POST /v1/admin/model may load from (repeatable).")] = [],  # noqa: B006
    max_k: Annotated[int, typer.Option(help="Largest k a request may ask for.")] = 100,
    synchronous: Annotated[str, typer.Option(help="SQLite synchronous mode: FULL (survives power loss) or NORMAL.")] = "FULL",
    threads: Annotated[int, typer.Option(help="torch threads of the model thread.")] = 1,
    state_runtime: Annotated[str, typer.Option(help="What computes a fusion model's user states on a cache miss: onnx "
                                                    "(ONNX Runtime, checked against PyTorch at load) or torch.")] = "onnx",
    user_cache: Annotated[int, typer.Option(help="Users whose state is cached (models with a user state: sasrec, fusion; 0 = off).")] = 100_000,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "warning",
    store_deadline: Annotated[float, typer.Option(help="Seconds a store call may take before the request gets 503 "
                                                       "(and /healthz fails while one runs longer).")] = 2.0,
    workers: Annotated[int, typer.Option(help="Processes serving on this port over the same store (PostgreSQL "
                                              "recommended; see 'Several replicas' in docs/serving.md).")] = 1,
    nice: Annotated[int, typer.Option(help="Lower the CPU priority by N (0-19), workers too: for replicas taking "
                                           "POST /v1/events ('Reads under writes', docs/serving.md).")] = 0,
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
        typer.echo(key)
        return
    if keys is None and not no_auth:
        _fail("give --keys FILE (create keys with --new-key NAME --scopes read,write --keys FILE) or --no-auth")
    if index not in ("exact", "hnsw") or synchronous not in ("FULL", "NORMAL"):
        _fail(f"--index must be exact or hnsw (got {index!r}); --synchronous FULL or NORMAL (got {synchronous!r})")
    if state_runtime not in ("onnx", "torch"):
        _fail(f"--state-runtime must be onnx or torch, got {state_runtime!r}")
    if items is not None and mapping is not None:
        _fail("give item attributes with --items FILE or --mapping FILE, not both")
    import os
    import tempfile

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import uvicorn

    from ctxrec.errors import CtxrecError
    from ctxrec.serving import ServingSettings, create_app

    if workers < 1:
        _fail(f"--workers must be >= 1, got {workers}")
    if not 0 <= nice <= 19:  # a negative niceness (a higher priority) needs root
        _fail(f"--nice must be between 0 and 19 (a lower CPU priority), got {nice}")
    with tempfile.TemporaryDirectory(prefix="ctxrec-serve-") as tmp:  # lives as long as the server
        try:
            items_file = str(items) if items else (_mapped_items(mapping, Path(tmp)) if mapping else None)
            settings = ServingSettings(model=str(model), store=store, keys_file=str(keys) if keys else None,
                                       items_file=items_file, index=index, hnsw_ef_search=hnsw_ef_search,  # type: ignore[arg-type]  # CLI str; settings validate
                                       cors_origins=tuple(cors), allowed_model_roots=tuple(model_root), max_k=max_k,
                                       sqlite_synchronous=synchronous, torch_threads=threads, user_cache=user_cache,  # type: ignore[arg-type]  # CLI str; settings validate
                                       store_deadline=store_deadline, state_runtime=state_runtime)  # type: ignore[arg-type]  # checked above
            if workers > 1:  # each process builds its own app from the settings (uvicorn's factory import string)
                from ctxrec.serving.settings import SETTINGS_ENV, settings_to_env

                if not model.exists():
                    _fail(f"--model {str(model)!r} does not exist")
                os.environ[SETTINGS_ENV] = settings_to_env(settings)
                application = None
            else:
                application = create_app(settings)
        except (CtxrecError, FileNotFoundError, ValueError) as exc:
            _fail(str(exc))
        if nice:
            os.nice(nice)  # before uvicorn starts: the worker processes it forks inherit it
        # SIGTERM: stop accepting, let requests in flight finish (each store call ends within its deadline), exit in < 10 s
        if application is None:
            typer.echo(f"serving {model} on http://{host}:{port} with {workers} processes (docs: /docs)", err=True)
            uvicorn.run("ctxrec.serving.app:create_app_from_env", factory=True, workers=workers, host=host, port=port,
                        log_level=log_level, access_log=False, timeout_graceful_shutdown=5)
        else:
            typer.echo(f"serving {model} on http://{host}:{port} (docs: /docs)", err=True)
            uvicorn.run(application, host=host, port=port, log_level=log_level, access_log=False,
                        timeout_graceful_shutdown=5)


def _mapped_items(mapping: Path, folder: Path) -> str:
    """The mapping's items table (attribute and text fields, lists kept) as a JSON Lines file for the service."""
    data = _dataset_from(None, mapping, None)
    fields = [*data.schema.item_attribute_fields, *data.schema.item_text_fields]
    if not fields:
        _fail(f"mapping {str(mapping)!r} has no [items] table with text_fields or attribute_fields: no item attributes to serve")
    path = folder / "items.jsonl"
    table = data.items[[f for f in dict.fromkeys(fields) if f in data.items.columns]].reset_index()
    table.to_json(path, orient="records", lines=True)
    return str(path)


def retrain(
    model: Annotated[Path, typer.Option("--model", help="Run folder being served.")],
    store: Annotated[str, typer.Option(help="Event store the service writes (path or postgresql:// URL).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="New run folder (the next model version).")],
    epochs: Annotated[int, typer.Option(help="Extra epochs from the current weights.")] = 3,
    tolerance: Annotated[float, typer.Option(help="Promote if new NDCG@10 >= current - tolerance.")] = 0.0,
    promote: Annotated[str | None, typer.Option(help="Service URL: switch it to the new version if promoted.")] = None,
    api_key: Annotated[str | None, typer.Option(envvar="CTXREC_API_KEY", help="Admin key for --promote.")] = None,
    mapping: Annotated[Path | None, typer.Option("--mapping", help="Column mapping of the training data (default: "
                                                    "the run's, checked against the files' recorded SHA-256).")] = None,
    data_dir: DataDir = None,
) -> None:
    """Fold stored events into a new model version (warm start), evaluate on held-out new events, promote."""
    from ctxrec.errors import CtxrecError
    from ctxrec.experiment import copy_data_record, read_mapped, staged_folder
    from ctxrec.serving.lifecycle import retrain as do_retrain

    try:
        run_cfg = _run_config(model)
        with staged_folder(out) as stage:  # a failed retrain leaves no half-written run folder
            if mapping is not None:
                data = read_mapped(mapping, record_in=stage)
            else:
                data = _run_data(model, None, None, data_dir or run_cfg.get("data_dir"))
                copy_data_record(model, stage)
            report = do_retrain(model, store, stage, epochs=epochs, data_dir=data_dir, tolerance=tolerance, data=data)
    except (CtxrecError, FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
    typer.echo(json.dumps(report, indent=2))
    if promote and report["promoted"]:
        import httpx

        r = httpx.post(f"{promote.rstrip('/')}/v1/admin/model", json={"run_dir": str(out.resolve())},
                       headers={"X-API-Key": api_key} if api_key else {}, timeout=600)
        if r.status_code != 200:
            _fail(f"promotion failed ({r.status_code}): {r.text}")
        typer.echo(f"service now serves {r.json()['version']}")
