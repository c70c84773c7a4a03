"""What every ``ctxrec`` command module shares: the Typer apps, the option types, the error exit and
the loading of a command's data (:mod:`ctxrec.cli` and :mod:`ctxrec.cli_serve` register their commands on
``app``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

app = typer.Typer(help="ctxrec: context-aware recommendation with pretrained language models.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)
data_app = typer.Typer(help="Inspect datasets and write column mappings.", no_args_is_help=True)
app.add_typer(data_app, name="data")
config_app = typer.Typer(help="Model configuration reference.", no_args_is_help=True)
app.add_typer(config_app, name="config")

DataDir = Annotated[str | None, typer.Option("--data-dir", help="Data directory (default: $CTXREC_DATA).")]
Mapping = Annotated[Path | None, typer.Option("--mapping", help="Column mapping (TOML/JSON) of your own data, "
                                                 "instead of a built-in dataset; `ctxrec data init` writes one.")]



def _fail(msg: str) -> NoReturn:
    typer.secho(f"error: {msg}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=2)


def _warn(msg: str) -> None:
    typer.secho(f"warning: {msg}", fg=typer.colors.YELLOW, err=True)


def _dataset_from(dataset: str | None, mapping: Path | None, data_dir: str | None) -> Any:
    """The dataset a command names: a built-in name or ``--mapping FILE`` (errors are CtxrecErrors)."""
    from ctxrec.experiment import load_data

    return load_data(dataset=dataset, mapping=mapping, data_dir=data_dir)


def _run_data(run: Path, dataset: str | None, mapping: Path | None, data_dir: str | None) -> Any:
    """The data of a run: the one named on the command line, else the one the run folder records."""
    from ctxrec.experiment import run_data

    if dataset is not None or mapping is not None:
        return _dataset_from(dataset, mapping, data_dir)
    data = run_data(run)
    if data is None:
        what = ("a model folder saved from the library (model.save)" if (run / "config.json").is_file()
                else "not a run folder written by `ctxrec train`")
        _fail(f"{str(run)!r} is {what}, so it does not record the data it was trained on; pass --mapping FILE "
              "(the column mapping of your data) or --dataset NAME (a built-in dataset)")
    return data


def _run_config(run: Path) -> dict[str, Any]:
    """The run folder's experiment config, or {} for a model folder."""
    if (run / "model").is_dir() and (run / "config.json").is_file():
        cfg: dict[str, Any] = json.loads((run / "config.json").read_text())
        return cfg
    return {}
