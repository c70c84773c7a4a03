"""The training loop: one function, read top to bottom (nanoGPT style).

AdamW, gradient clipping, optional bf16 autocast, evaluation on the validation set after each
epoch, early stopping on ``valid_metric`` (NDCG@10 by default), best weights kept, a resumable
checkpoint after every epoch, progress bars and TensorBoard logs. Ctrl-C stops cleanly: the last
checkpoint is saved and the best weights are restored, so ``--resume`` continues the run. A
:class:`TrainState` starts training from given weights instead (``ctxrec retrain``'s warm start). The
loop knows nothing of models: it trains any module through ``batches``, ``loss_fn`` and ``evaluate``.

Distributed (under torchrun, see ``ctxrec.training.distributed``): the same loop, with the model and its
loss under DDP, each rank training on its shard of every global batch, and rank 0 evaluating, writing
files and broadcasting each epoch's record so that every rank takes the same stopping decision.
On CUDA, batches are built on the CPU in a background thread, pinned and copied with ``non_blocking``.
"""

from __future__ import annotations

import json
import math
import os
import queue
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from ctxrec.errors import ConfigError
from ctxrec.training import distributed as dist_
from ctxrec.training.checkpoint import load_checkpoint, save_checkpoint
from ctxrec.training.memory import HeapGuard, release_free_heap

_EPOCH_REPORTER: ContextVar[Callable[[int, float], None] | None] = ContextVar("ctxrec_epoch_reporter", default=None)


@contextmanager
def epoch_reporter(fn: Callable[[int, float], None]) -> Iterator[None]:
    """Call ``fn(epoch, valid_score)`` after each validation of any training loop run inside this block
    (a tuning study's pruner, without changing model code); ``fn`` may raise to stop the run."""
    token = _EPOCH_REPORTER.set(fn)
    try:
        yield
    finally:
        _EPOCH_REPORTER.reset(token)


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Optimisation settings shared by every neural model."""

    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 128
    """Rows (users, for the sequence models) per step, drawn at random (:mod:`ctxrec.training.batching`)."""
    max_epochs: int = 200
    length_pool: int = 1
    """Batches per length-sorted pool (:mod:`ctxrec.training.batching`): 1 = random batches; 16 = users of
    similar history length share a batch, so far less of the Transformer's work is padding (ml-1m, max_len
    200: 1.4x faster epochs, 0.925 of positions real against 0.54). Per epoch it learned a little less
    (ml-1m validation NDCG@10 0.146 against 0.1505 after 6 epochs; amazon-beauty 0.0587 against 0.0595, one
    seed each); the ml-1m cost recipe trains on it (benchmarks/results/ml-1m/cost.json). Not the default until
    converged figures with it are in."""
    patience: int = 10
    """Stop after this many evaluations without a new best ``valid_metric`` (and at least
    :data:`MIN_PATIENCE_STEPS` optimizer steps since the best)."""
    valid_metric: str = "ndcg@10"
    grad_clip: float = 5.0
    lr_decay: float = 1.0
    """Multiply the learning rate by this after every evaluation without a new best (reduce on plateau,
    as CTR libraries such as FuxiCTR do); 1 = constant learning rate. Measured: frappe pointwise (BARS)
    test AUC 0.9866 with 0.1 vs 0.9857 without (one seed each; benchmarks/results/frappe/); amazon-scientific
    fusion -1.9% NDCG@10 at 0.5. Kept for the pointwise CTR recipe; off by default."""
    min_lr: float = 1e-6
    lr_schedule: Literal["constant", "cosine"] = "constant"
    """``cosine``: the learning rate falls from ``lr`` to ``min_lr`` along a half cosine over ``max_epochs``
    epochs, step by step, so a run planned for a fixed number of epochs ends at a small step size instead
    of stopping mid-stride (see ``benchmarks/results/ml-1m/cost.json``)."""
    ema: float = 0.0
    """Per-step decay of an exponential moving average of the weights (Polyak averaging), e.g. 0.99;
    0 = off. When on, validation, the kept best weights and the ``best`` checkpoint are the averaged
    weights; training steps (and the ``last`` checkpoint) use the raw ones. On resume the average
    restarts from the resumed weights. amazon-scientific fusion (d 64): 0.99 / 0.995 raised NDCG@10
    0.0855 -> 0.0872 / 0.0871 and Recall@10 0.1256 -> 0.1294 / 0.1298 (benchmarks/results/amazon-scientific/
    ablations/). Off by default so that every published command keeps reproducing its figure."""
    seed: int = 42
    max_seconds: float | None = None
    """Wall-clock budget for training; the best model so far is kept when it runs out."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    bf16: bool = False
    """bf16 autocast (CUDA, or CPUs with AVX512-BF16/AMX). Elsewhere the CPU emulates it: a warning says so
    (an AVX2 EPYC core: a 6,400 x 64 -> 12,102 output layer, forward and backward, 4.3x slower than float32)."""
    num_threads: int | None = None
    resume: bool = False
    """Continue from ``run_dir/checkpoints/last`` if it exists."""
    progress: bool = True

    def __post_init__(self) -> None:
        # Checked when the config is built, before any data loads: each one otherwise fails deep in training.
        for name in ("batch_size", "max_epochs", "patience", "length_pool"):
            if getattr(self, name) < 1:
                raise ConfigError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0.0:
            raise ConfigError(f"TrainConfig.lr must be > 0 (e.g. 0.001), got {self.lr}")
        for name in ("weight_decay", "grad_clip", "min_lr"):
            if getattr(self, name) < 0.0:
                raise ConfigError(f"TrainConfig.{name} must be >= 0 (0 = off), got {getattr(self, name)}")
        if self.max_seconds is not None and self.max_seconds <= 0:
            raise ConfigError(f"TrainConfig.max_seconds must be > 0 (or null: no budget), got {self.max_seconds}")
        if self.num_threads is not None and self.num_threads < 1:
            raise ConfigError(f"TrainConfig.num_threads must be >= 1 (or null: torch's default), got {self.num_threads}")
        if not 0.0 <= self.ema < 1.0:
            raise ConfigError(f"TrainConfig.ema must be in [0, 1) (0 = off, e.g. 0.99), got {self.ema}")
        if not 0.0 < self.lr_decay <= 1.0:
            raise ConfigError(f"TrainConfig.lr_decay must be in (0, 1] (1 = off), got {self.lr_decay}")
        if self.lr_schedule == "cosine" and self.lr_decay != 1.0:
            raise ConfigError(f"TrainConfig.lr_schedule='cosine' and lr_decay={self.lr_decay} both set the learning "
                              "rate: keep one (lr_decay=1 with the cosine schedule, or lr_schedule='constant')")
        if self.lr_schedule == "cosine" and self.min_lr >= self.lr:
            raise ConfigError(f"TrainConfig.lr_schedule='cosine' decays lr={self.lr} to min_lr={self.min_lr}: "
                              "min_lr must be smaller")


@dataclass(frozen=True)
class TrainState:
    """Where training starts instead of the module's fresh weights: a warm start (``ctxrec retrain``
    continues from the served model's weights). No checkpoint folder is involved, and the run's own
    bookkeeping (best score, patience, history) starts afresh."""

    weights: Mapping[str, torch.Tensor]
    """A ``state_dict`` of a module of the same architecture and shapes."""
    optimizer: Mapping[str, Any] | None = None
    """An AdamW ``state_dict`` (moments, step counts); None = a fresh optimizer."""
    epoch: int = 0
    """The first epoch to run; ``max_epochs`` still counts from 0."""


@dataclass
class TrainResult:
    best_epoch: int
    best_score: float
    epochs_run: int
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)
    stopped_by: str = "max_epochs"


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX), where bf16 autocast pays."""
    cpu = torch.cpu
    return bool(getattr(cpu, "_is_avx512_bf16_supported", lambda: False)()
                or getattr(cpu, "_is_amx_tile_supported", lambda: False)())


def pick_device(pref: str) -> torch.device:
    if pref == "cuda" or (pref == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise RuntimeError("device='cuda' was requested but torch.cuda.is_available() is False; use device='cpu'")
        return torch.device("cuda")
    return torch.device("cpu")


MIN_PATIENCE_STEPS = 50
"""Early stopping also waits this many optimizer steps without a new best. On a small log an epoch is a
step or two, and ``patience`` epochs of them barely move the weights while a few dozen validation cases
jitter: on InCarMusic (42 users, one step per epoch) the fusion model stopped after 24 steps at test
NDCG@10 0.15 where SASRec, luckier on the same noise, went on to 75 steps and 0.28."""


def patience_epochs(cfg: TrainConfig, steps_per_epoch: int) -> int:
    """Evaluations without a new best before stopping: ``cfg.patience``, or more where an epoch is so few
    steps that they would not add up to :data:`MIN_PATIENCE_STEPS`."""
    return max(cfg.patience, math.ceil(MIN_PATIENCE_STEPS / max(1, steps_per_epoch)))


def cosine_lr(cfg: TrainConfig, epochs_done: float) -> float:
    """The learning rate after ``epochs_done`` (fractional) of ``cfg.max_epochs`` under the cosine schedule."""
    frac = min(max(epochs_done / cfg.max_epochs, 0.0), 1.0)
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1.0 + math.cos(math.pi * frac))


def train_loop(
    module: torch.nn.Module,
    *,
    batches: Callable[[np.random.Generator], Iterator[dict[str, torch.Tensor]]],
    loss_fn: Callable[[dict[str, torch.Tensor]], torch.Tensor],
    evaluate: Callable[[], dict[str, float]] | None,
    cfg: TrainConfig,
    run_dir: Path | None = None,
    n_batches: int | None = None,
    initial: TrainState | None = None,
) -> TrainResult:
    """Train ``module`` in place and leave it holding the best weights seen on validation.

    ``batches(rng)`` yields one epoch of tensor dicts whose tensors have the batch dimension first (on
    the CPU, or already on the module's device; CPU tensors are moved here); ``loss_fn(batch)`` returns a
    scalar loss (mean over the batch); ``evaluate()`` returns validation metrics. ``initial`` starts from
    those weights (and optimizer state); a shape mismatch is torch's ``RuntimeError`` naming the tensors.
    Under torchrun every rank calls this with the same arguments (see ``ctxrec.training.distributed``).
    """
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    ctx = dist_.context()
    rank, world = (ctx.rank, ctx.world_size) if ctx else (0, 1)
    main = rank == 0
    device = next(module.parameters()).device
    rng = np.random.default_rng(cfg.seed)
    # Fused AdamW (one kernel over all parameters, CPU and CUDA), same update rule: measured 2-5x
    # faster steps on 2 cores when a large item table dominates the parameters (1M x 64).
    fused = all(p.dtype.is_floating_point and p.device.type in ("cpu", "cuda") for p in module.parameters())
    optimizer = torch.optim.AdamW(module.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused or None)
    amp = torch.autocast(device.type, dtype=torch.bfloat16) if cfg.bf16 else nullcontext()
    if cfg.bf16 and device.type == "cpu" and not cpu_has_bf16():
        warnings.warn(f"train.bf16=true on a CPU without bf16 instructions ({torch.backends.cpu.get_cpu_capability()}, "
                      "no AVX512-BF16 or AMX): it is emulated and several times slower than float32 here; set "
                      "train.bf16=false", stacklevel=2)

    ckpt_dir = run_dir / "checkpoints" if run_dir else None
    writer = _tensorboard(run_dir) if main else None
    history: list[dict[str, float]] = []
    best_score, best_epoch, start_epoch, bad_evals = -math.inf, -1, 0, 0
    if initial is not None:
        if cfg.resume and ckpt_dir and (ckpt_dir / "last").exists():
            raise ConfigError(f"train.resume=true would continue from the checkpoint in {ckpt_dir}, and an initial "
                              "state was given too: set train.resume=false to start from the initial state")
        module.load_state_dict(dict(initial.weights))
        if initial.optimizer is not None:
            optimizer.load_state_dict(dict(initial.optimizer))
        start_epoch = initial.epoch
    best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
    resumed = False
    if main and cfg.resume and ckpt_dir and (ckpt_dir / "last").exists():
        meta = load_checkpoint(ckpt_dir / "last", module, optimizer)
        start_epoch, best_score, best_epoch = meta["epoch"] + 1, meta["best_score"], meta["best_epoch"]
        bad_evals, history, resumed = meta["bad_evals"], meta["history"], True
        if (ckpt_dir / "best").exists():
            tmp = {k: v.clone() for k, v in module.state_dict().items()}
            load_checkpoint(ckpt_dir / "best", module, None)
            best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
            module.load_state_dict(tmp)
    step_loss: Callable[[dict[str, torch.Tensor]], torch.Tensor] = loss_fn
    if ctx is not None:
        # Rank 0 read the checkpoint (run folders need not be shared): hand its state to the others.
        # Parameters travel with DDP's initial broadcast; optimizer state and bookkeeping go here.
        if main:
            state = dist_.to_cpu([resumed, optimizer.state_dict() if resumed else None, best_state if resumed else None,
                                  [start_epoch, best_score, best_epoch, bad_evals, history]])
        else:
            state = None
        resumed, opt_state, best_cpu, (start_epoch, best_score, best_epoch, bad_evals, history) = dist_.broadcast_object(state, ctx)
        if resumed and not main:
            best_state = {k: v.to(device) for k, v in best_cpu.items()}
            optimizer.load_state_dict(opt_state)
        step_loss = dist_.wrap(module, loss_fn, ctx)
        torch.manual_seed(cfg.seed + 1 + rank)  # distinct dropout noise per rank
    if resumed or start_epoch > 0:
        rng = np.random.default_rng([cfg.seed, start_epoch])
    # After resuming and DDP's broadcast: the average starts from the weights training starts from.
    ema = _WeightAverage(module, cfg.ema) if cfg.ema > 0 else None
    t0 = time.perf_counter() - (history[-1]["elapsed"] if history else 0.0)
    stopped_by = _stopped_before(history, bad_evals, cfg, evaluate is not None) if resumed else None
    if stopped_by is not None:  # resuming a run whose training had ended (its run folder failed to write)
        start_epoch = cfg.max_epochs
    stopped_by = stopped_by or "max_epochs"
    epoch = start_epoch - 1
    heap = HeapGuard()
    try:
        for epoch in range(start_epoch, cfg.max_epochs):
            module.train()
            t_epoch, losses = time.perf_counter(), []
            shown_progress = cfg.progress and main
            bar = _progress(_device_batches(batches(rng), device, rank, world), total=n_batches,
                            desc=f"epoch {epoch}", enabled=shown_progress)
            steps_in_epoch = n_batches or (int(history[-1]["steps"]) if history else 0)
            for i, (batch, weight) in enumerate(bar):
                if cfg.lr_schedule == "cosine" and steps_in_epoch:
                    for group in optimizer.param_groups:
                        group["lr"] = cosine_lr(cfg, epoch + min(i / steps_in_epoch, 1.0))
                with amp:
                    loss = step_loss(batch)
                    if weight != 1.0:
                        loss = loss * weight
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip:
                    torch.nn.utils.clip_grad_norm_(module.parameters(), cfg.grad_clip)
                optimizer.step()
                if ema is not None:
                    ema.update()
                heap.after_step()
                losses.append(loss.item())
                if shown_progress and len(losses) % 20 == 0:
                    bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
            mean_loss = dist_.mean_across_ranks(losses, ctx) if ctx else (float(np.mean(losses)) if losses else float("nan"))
            record: dict[str, float] = {"epoch": epoch, "loss": mean_loss, "train_seconds": time.perf_counter() - t_epoch,
                                        "lr": optimizer.param_groups[0]["lr"], "steps": len(losses)}
            raw = ema.swap_in() if ema is not None else None  # validate (and keep) the averaged weights
            if evaluate is not None and main:
                module.eval()
                with torch.no_grad(), amp, _eval_threads(ctx):
                    record.update({k if k.startswith("monitor_") else f"valid_{k}": v for k, v in evaluate().items()})
            record["elapsed"] = time.perf_counter() - t0
            if ctx is not None:  # rank 0's record (validation, clock) drives every rank's decisions
                record = dist_.broadcast_object(record, ctx)
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
                if ckpt_dir and main:
                    _checkpoint(ckpt_dir / "best", module, None, {"epoch": epoch, "score": score})
            else:
                bad_evals += 1
                if cfg.lr_decay != 1.0:
                    for group in optimizer.param_groups:
                        group["lr"] = max(group["lr"] * cfg.lr_decay, cfg.min_lr)
            if ema is not None and raw is not None:
                ema.swap_out(raw)  # back to the raw weights for training and the resumable checkpoint
            if cfg.progress and main:
                shown = {k: round(v, 4) for k, v in record.items() if k.startswith("valid_") and "@10" in k}
                print(f"epoch {epoch}: loss {record['loss']:.4f} {shown} best {best_score:.4f}@{best_epoch} "
                      f"({record['train_seconds']:.1f}s)", flush=True)
            if ckpt_dir and main:
                _checkpoint(ckpt_dir / "last", module, optimizer, {
                    "epoch": epoch, "best_score": best_score, "best_epoch": best_epoch,
                    "bad_evals": bad_evals, "history": history})
            release_free_heap()  # freed tensors fragment the heap: without it the RSS grows every epoch
            heap.floor = None  # the next step measures the heap anew (validation has come and gone)
            if (report := _EPOCH_REPORTER.get()) is not None and f"valid_{cfg.valid_metric}" in record:
                report(epoch, score)
            if evaluate is not None and bad_evals >= patience_epochs(cfg, len(losses)):
                stopped_by = "early_stopping"
                break
            if cfg.max_seconds is not None and record["elapsed"] > cfg.max_seconds:
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
    del best_state
    release_free_heap()
    result = TrainResult(best_epoch=best_epoch, best_score=best_score, epochs_run=len(history),
                         seconds=time.perf_counter() - t0, history=history, stopped_by=stopped_by)
    if run_dir and main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "history.json").write_text(json.dumps(history, indent=1))
    return result


def _stopped_before(history: list[dict[str, float]], bad_evals: int, cfg: TrainConfig, validated: bool) -> str | None:
    """Why a resumed run's training had already ended at its last checkpoint (None: it had not)."""
    steps = history[-1].get("steps") if history else None  # a checkpoint of an older version has none
    if validated and bad_evals >= (patience_epochs(cfg, int(steps)) if steps else cfg.patience):
        return "early_stopping"
    if cfg.max_seconds is not None and history and history[-1]["elapsed"] > cfg.max_seconds:
        return "time_budget"
    return None


def _checkpoint(path: Path, module: torch.nn.Module, optimizer: torch.optim.Optimizer | None,
                meta: dict[str, Any]) -> None:
    """:func:`save_checkpoint`, where a write error (a full disk) costs the checkpoint, not the training:
    the weights in memory are intact and the last complete checkpoint stays on disk."""
    try:
        save_checkpoint(path, module, optimizer, meta)
    except OSError as exc:
        warnings.warn(f"checkpoint {path} not written ({exc}); training goes on and the last complete checkpoint "
                      f"stays: free space in {path.parent} so that the next one and the model can be written",
                      stacklevel=2)


class _WeightAverage:
    """Exponential moving average of a module's parameters, swapped in for validation."""

    def __init__(self, module: torch.nn.Module, decay: float) -> None:
        self.decay = decay
        self.params = [p for p in module.parameters() if p.dtype.is_floating_point]
        self.shadow = [p.detach().clone() for p in self.params]

    @torch.no_grad()
    def update(self) -> None:
        torch._foreach_lerp_(self.shadow, [p.detach() for p in self.params], 1.0 - self.decay)

    @torch.no_grad()
    def swap_in(self) -> list[torch.Tensor]:
        """Load the averages into the module; returns the raw weights for :meth:`swap_out`."""
        raw = [p.detach().clone() for p in self.params]
        for p, s in zip(self.params, self.shadow, strict=True):
            p.copy_(s)
        return raw

    @torch.no_grad()
    def swap_out(self, raw: list[torch.Tensor]) -> None:
        for p, r in zip(self.params, raw, strict=True):
            p.copy_(r)


@contextmanager
def _eval_threads(ctx: dist_.DistContext | None) -> Iterator[None]:
    """Rank 0 evaluates alone while the other local ranks wait: let it use their CPU threads too."""
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1")) if ctx is not None else 1
    before = torch.get_num_threads()
    if local > 1:
        torch.set_num_threads(min(before * local, os.cpu_count() or before))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _device_batches(it: Iterator[dict[str, Any]], device: torch.device, rank: int, world: int
                    ) -> Iterator[tuple[dict[str, Any], float]]:
    """This rank's shard of each batch (with its loss weight), on ``device``.

    On CUDA a background thread builds and pins the next batches while the GPU works on the current
    one, and the copies are ``non_blocking``; on the CPU batches pass through unchanged."""
    def shards() -> Iterator[tuple[dict[str, Any], float]]:
        for batch in it:
            if world == 1:
                yield batch, 1.0
                continue
            got = dist_.shard_batch(batch, rank, world)
            if got is not None:
                yield got

    if device.type != "cuda":
        yield from shards()
        return
    for batch, weight in _prefetch(shards(), depth=2, pin=True, cuda_device=device.index):
        yield {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}, weight


def _pin(batch: dict[str, Any]) -> dict[str, Any]:
    return {k: v.pin_memory() if torch.is_tensor(v) and v.device.type == "cpu" else v for k, v in batch.items()}


def _prefetch(it: Iterator[tuple[dict[str, Any], float]], *, depth: int, pin: bool, cuda_device: int | None = None
              ) -> Iterator[tuple[dict[str, Any], float]]:
    """Run ``it`` (batch building, and pinning when ``pin``) in a daemon thread, ``depth`` batches ahead.

    ``cuda_device``: the training device's index; the current CUDA device is per thread, so a batch
    builder that moves tensors to ``"cuda"`` itself must land on this rank's GPU, not on cuda:0."""
    q: queue.Queue[Any] = queue.Queue(maxsize=depth)
    done, stop = object(), threading.Event()

    def work() -> None:
        try:
            if cuda_device is not None:
                torch.cuda.set_device(cuda_device)
            for batch, weight in it:
                item = (_pin(batch) if pin else batch, weight)
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(done)
        except BaseException as exc:  # noqa: BLE001  # not swallowed: re-raised in the training thread
            q.put(exc)

    threading.Thread(target=work, daemon=True, name="ctxrec-batches").start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()


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
