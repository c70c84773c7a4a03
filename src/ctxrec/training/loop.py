"""The training loop: one function, read top to bottom (nanoGPT style).

AdamW, gradient clipping, optional bf16 autocast, evaluation on the validation set after each
epoch, early stopping on ``valid_metric`` (NDCG@10 by default), best weights kept, a resumable
checkpoint after every epoch, progress bars and TensorBoard logs. Ctrl-C stops cleanly: the last
checkpoint is saved and the best weights are restored, so ``--resume`` continues the run.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from ctxrec.training.checkpoint import load_checkpoint, save_checkpoint


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Optimisation settings shared by every neural model."""

    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 128
    max_epochs: int = 200
    patience: int = 10
    """Stop after this many evaluations without a new best ``valid_metric``."""
    valid_metric: str = "ndcg@10"
    grad_clip: float = 5.0
    seed: int = 42
    max_seconds: float | None = None
    """Wall-clock budget for training; the best model so far is kept when it runs out."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    bf16: bool = False
    """bf16 autocast (CUDA, or CPUs with AVX512-BF16/AMX)."""
    num_threads: int | None = None
    resume: bool = False
    """Continue from ``run_dir/checkpoints/last`` if it exists."""
    progress: bool = True


@dataclass
class TrainResult:
    best_epoch: int
    best_score: float
    epochs_run: int
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)
    stopped_by: str = "max_epochs"


def pick_device(pref: str) -> torch.device:
    if pref == "cuda" or (pref == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise RuntimeError("device='cuda' was requested but torch.cuda.is_available() is False; use device='cpu'")
        return torch.device("cuda")
    return torch.device("cpu")


def train_loop(
    module: torch.nn.Module,
    *,
    batches: Callable[[np.random.Generator], Iterator[dict[str, torch.Tensor]]],
    loss_fn: Callable[[dict[str, torch.Tensor]], torch.Tensor],
    evaluate: Callable[[], dict[str, float]] | None,
    cfg: TrainConfig,
    run_dir: Path | None = None,
    n_batches: int | None = None,
) -> TrainResult:
    """Train ``module`` in place and leave it holding the best weights seen on validation.

    ``batches(rng)`` yields one epoch of tensor dicts (already on the right device);
    ``loss_fn(batch)`` returns a scalar loss; ``evaluate()`` returns validation metrics.
    """
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    device = next(module.parameters()).device
    rng = np.random.default_rng(cfg.seed)
    optimizer = torch.optim.AdamW(module.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    amp = torch.autocast(device.type, dtype=torch.bfloat16) if cfg.bf16 else nullcontext()

    ckpt_dir = run_dir / "checkpoints" if run_dir else None
    writer = _tensorboard(run_dir)
    history: list[dict[str, float]] = []
    best_score, best_epoch, start_epoch, bad_evals = -math.inf, -1, 0, 0
    best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
    if cfg.resume and ckpt_dir and (ckpt_dir / "last").exists():
        meta = load_checkpoint(ckpt_dir / "last", module, optimizer)
        start_epoch, best_score, best_epoch = meta["epoch"] + 1, meta["best_score"], meta["best_epoch"]
        bad_evals, history = meta["bad_evals"], meta["history"]
        rng = np.random.default_rng([cfg.seed, start_epoch])
        if (ckpt_dir / "best").exists():
            tmp = {k: v.clone() for k, v in module.state_dict().items()}
            load_checkpoint(ckpt_dir / "best", module, None)
            best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
            module.load_state_dict(tmp)
    t0 = time.perf_counter() - (history[-1]["elapsed"] if history else 0.0)
    stopped_by = "max_epochs"
    epoch = start_epoch - 1
    try:
        for epoch in range(start_epoch, cfg.max_epochs):
            module.train()
            t_epoch, losses = time.perf_counter(), []
            bar = _progress(batches(rng), total=n_batches, desc=f"epoch {epoch}", enabled=cfg.progress)
            for batch in bar:
                with amp:
                    loss = loss_fn(batch)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip:
                    torch.nn.utils.clip_grad_norm_(module.parameters(), cfg.grad_clip)
                optimizer.step()
                losses.append(loss.item())
                if cfg.progress and len(losses) % 20 == 0:
                    bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
            record: dict[str, float] = {"epoch": epoch, "loss": float(np.mean(losses)) if losses else float("nan"),
                                        "train_seconds": time.perf_counter() - t_epoch}
            if evaluate is not None:
                module.eval()
                with torch.no_grad(), amp:
                    record.update({k if k.startswith("monitor_") else f"valid_{k}": v for k, v in evaluate().items()})
            record["elapsed"] = time.perf_counter() - t0
            history.append(record)
            score = record.get(f"valid_{cfg.valid_metric}", -record["loss"])
            if writer is not None:
                for k, v in record.items():
                    if k != "epoch":
                        writer.add_scalar(k, v, epoch)
                writer.flush()
            if score > best_score:
                best_score, best_epoch, bad_evals = score, epoch, 0
                best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
                if ckpt_dir:
                    save_checkpoint(ckpt_dir / "best", module, None, {"epoch": epoch, "score": score})
            else:
                bad_evals += 1
            if cfg.progress:
                shown = {k: round(v, 4) for k, v in record.items() if k.startswith("valid_") and "@10" in k}
                print(f"epoch {epoch}: loss {record['loss']:.4f} {shown} best {best_score:.4f}@{best_epoch} "
                      f"({record['train_seconds']:.1f}s)", flush=True)
            if ckpt_dir:
                save_checkpoint(ckpt_dir / "last", module, optimizer, {
                    "epoch": epoch, "best_score": best_score, "best_epoch": best_epoch,
                    "bad_evals": bad_evals, "history": history})
            if evaluate is not None and bad_evals >= cfg.patience:
                stopped_by = "early_stopping"
                break
            if cfg.max_seconds is not None and time.perf_counter() - t0 > cfg.max_seconds:
                stopped_by = "time_budget"
                break
    except KeyboardInterrupt:
        stopped_by = "interrupted"
        print(f"\ninterrupted during epoch {epoch} ({len(history)} epochs completed); the best weights are kept; "
              f"continue with train.resume=true (checkpoint in {ckpt_dir})", flush=True)
    finally:
        if writer is not None:
            writer.close()
    module.load_state_dict(best_state)
    result = TrainResult(best_epoch=best_epoch, best_score=best_score, epochs_run=len(history),
                         seconds=time.perf_counter() - t0, history=history, stopped_by=stopped_by)
    if run_dir:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "history.json").write_text(json.dumps(history, indent=1))
    return result


def _tensorboard(run_dir: Path | None) -> Any:
    if run_dir is None:
        return None
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter(log_dir=str(run_dir / "tensorboard"))


def _progress(it: Iterator[Any], *, total: int | None, desc: str, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(it, total=total, desc=desc, leave=False, disable=not enabled, mininterval=1.0)
