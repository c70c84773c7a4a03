"""Pickle-free checkpoints: module + optimizer tensors in safetensors, scalars in JSON.

A checkpoint is a folder with ``state.safetensors`` and ``meta.json``. Written to a temporary
folder and renamed, so an interrupted write never leaves a half checkpoint behind.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

T = TypeVar("T")


def write_safetensors(save: Callable[[dict[str, T], str], None], tensors: dict[str, T], path: Path) -> None:
    """``save(tensors, path)`` (safetensors' torch or numpy ``save_file``), its I/O failures raised as the
    :class:`OSError` they are: safetensors reports a full disk as ``SafetensorError(... (os error 28))``, which
    code that handles write errors would not catch."""
    try:
        save(tensors, str(path))
    except SafetensorError as exc:
        code = re.search(r"os error (\d+)", str(exc))
        if code is None:
            raise
        raise OSError(int(code.group(1)), os.strerror(int(code.group(1))), str(path)) from exc


def save_checkpoint(path: Path, module: torch.nn.Module, optimizer: torch.optim.Optimizer | None, meta: dict[str, Any]) -> None:
    tensors: dict[str, torch.Tensor] = {f"model.{k}": v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    opt_meta: dict[str, Any] = {}
    if optimizer is not None:
        sd = optimizer.state_dict()
        opt_meta = {"param_groups": sd["param_groups"], "scalars": {}}
        for pid, st in sd["state"].items():
            for name, val in st.items():
                if torch.is_tensor(val):
                    tensors[f"opt.{pid}.{name}"] = val.detach().cpu().contiguous()
                else:
                    opt_meta["scalars"][f"{pid}.{name}"] = val
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        write_safetensors(save_file, tensors, tmp / "state.safetensors")
        (tmp / "meta.json").write_text(json.dumps({"meta": meta, "optimizer": opt_meta}, indent=1))
    except OSError:  # a full disk: the half-written copy goes, the last complete checkpoint stays
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if path.exists():
        old = path.with_name(path.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, path)


def load_checkpoint(path: Path, module: torch.nn.Module, optimizer: torch.optim.Optimizer | None) -> dict[str, Any]:
    """Restore ``module`` (and ``optimizer``) in place; returns the saved ``meta`` dict."""
    tensors = load_file(str(path / "state.safetensors"))
    blob = json.loads((path / "meta.json").read_text())
    module.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    if optimizer is not None and blob["optimizer"]:
        state: dict[int, dict[str, Any]] = {}
        for k, v in tensors.items():
            if k.startswith("opt."):
                _, pid, name = k.split(".", 2)
                state.setdefault(int(pid), {})[name] = v
        for k, v in blob["optimizer"]["scalars"].items():
            pid, name = k.split(".", 1)
            state.setdefault(int(pid), {})[name] = v
        optimizer.load_state_dict({"state": state, "param_groups": blob["optimizer"]["param_groups"]})
    return dict(blob["meta"])
