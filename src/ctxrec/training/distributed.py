"""Data-parallel training on PyTorch's own engine: torchrun (elastic launch) + DistributedDataParallel.

How a run is distributed (see docs/distributed.md):

* **Launch.** ``ctxrec train --nproc N`` re-runs the same ``ctxrec train`` command in N local processes
  through :mod:`torch.distributed.run` (``--standalone``); a multi-node run is the plain ``torchrun
  --nnodes=... -m ctxrec.cli train ...`` command, which takes exactly the same code path. Each process
  reads ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` / ``MASTER_ADDR`` from the environment torchrun sets
  and joins the process group in :func:`setup`: gloo on CPU, NCCL (one GPU per local rank) on CUDA.
* **Model.** Every rank builds the model with the same seed; :func:`wrap` puts the model *and its loss*
  under DDP (so models keep their own ``loss_fn`` and need no DDP code), which broadcasts rank 0's
  parameters at the start and averages gradients in backward.
* **Data.** Every rank draws the same seeded epoch order and builds the same global batches of
  ``train.batch_size`` rows; rank r trains on rows ``[r*B/N, (r+1)*B/N)`` of each (:func:`shard_batch`),
  so the shards are disjoint, the global batch (and the number of optimizer steps per epoch) is the same
  as in one process, and the learning rate needs no rescaling. Each rank's loss is weighted by its share
  of the batch's rows, so the averaged gradient is the row-weighted mean. A batch with fewer rows than
  ranks is skipped by every rank.
* **Decisions and files.** Rank 0 alone evaluates on validation, writes checkpoints, TensorBoard logs,
  history and the run folder; it broadcasts each epoch's record, so early stopping and the time budget are
  decided identically on every rank.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in the job."""

    rank: int
    world_size: int
    local_rank: int
    backend: str

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def in_torchrun() -> bool:
    """True when torchrun (or another launcher using its environment variables) started this process."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ and "MASTER_ADDR" in os.environ


def setup() -> DistContext | None:
    """Join the process group described by torchrun's environment; ``None`` outside torchrun.

    Backend: ``CTXREC_DIST_BACKEND`` if set, else NCCL when CUDA is available, else gloo. With NCCL the
    process's current CUDA device becomes ``cuda:LOCAL_RANK`` (so ``train.device="auto"`` picks it)."""
    if not in_torchrun():
        return None
    import torch.distributed as dist

    if dist.is_initialized():
        return context()
    backend = os.environ.get("CTXREC_DIST_BACKEND") or ("nccl" if torch.cuda.is_available() else "gloo")
    if backend not in ("gloo", "nccl"):
        raise ValueError(f"CTXREC_DIST_BACKEND={backend!r}: use 'gloo' (CPU) or 'nccl' (CUDA)")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend=backend)
    return context()


def context() -> DistContext | None:
    """The current job when it has more than one process, else ``None`` (the single-process path)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return None
    return DistContext(rank=dist.get_rank(), world_size=dist.get_world_size(),
                       local_rank=int(os.environ.get("LOCAL_RANK", "0")), backend=str(dist.get_backend()))


def is_main_process() -> bool:
    """Rank 0, or the only process: the one that writes files and prints."""
    ctx = context()
    return ctx is None or ctx.is_main


def teardown() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


class _LossModule(torch.nn.Module):
    """``forward(batch) = loss_fn(batch)`` over ``module``'s parameters, so DDP sees the whole step."""

    def __init__(self, module: torch.nn.Module, loss_fn: Callable[[dict[str, torch.Tensor]], torch.Tensor]) -> None:
        super().__init__()
        self.module = module
        self.loss_fn = loss_fn

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.loss_fn(batch)


def wrap(module: torch.nn.Module, loss_fn: Callable[[dict[str, torch.Tensor]], torch.Tensor],
         ctx: DistContext) -> torch.nn.Module:
    """DDP over ``module`` whose forward is ``loss_fn`` (which calls ``module`` itself).

    ``static_graph``: every step uses the same parameters, but ablations may leave some out of the
    graph for good (a switched-off view, an absent profile); a static graph handles that without
    ``find_unused_parameters``' per-step graph traversal. ``forward_sync_buffers=False``: buffers (text
    vectors, attribute ids) are built identically from the data on every rank, synced once at start
    and never change in training, so they are not re-broadcast every step."""
    from torch.nn.parallel import DistributedDataParallel as DDP

    device = next(module.parameters()).device
    ids = None
    if device.type == "cuda":
        ids = [torch.cuda.current_device() if device.index is None else device.index]  # type: ignore[redundant-expr]  # torch types device.index as int; a bare "cuda" device has None
    return DDP(_LossModule(module, loss_fn), device_ids=ids, static_graph=True, forward_sync_buffers=False)


def shard_batch(batch: dict[str, Any], rank: int, world_size: int) -> tuple[dict[str, Any], float] | None:
    """Rank ``rank``'s rows of a global batch and its row-share weight ``world_size * rows / total``.

    Every tensor in ``batch`` has the batch dimension first. ``None`` when the batch has fewer rows than
    ranks (every rank sees the same batch, so they all skip it)."""
    sizes = {v.shape[0] for v in batch.values() if torch.is_tensor(v) and v.dim() > 0}
    if len(sizes) != 1:
        raise ValueError(f"distributed training splits every tensor of a batch along its first dimension, but this "
                         f"model's batch has leading sizes {sorted(sizes)}; train it with --nproc 1, or make its "
                         "batches batch-first (e.g. (B, 1 + negatives) instead of (B * (1 + negatives),))")
    total = sizes.pop()
    if total < world_size:
        return None
    lo, hi = rank * total // world_size, (rank + 1) * total // world_size
    shard = {k: v[lo:hi] if torch.is_tensor(v) and v.dim() > 0 else v for k, v in batch.items()}
    return shard, world_size * (hi - lo) / total


def broadcast_object(obj: Any, ctx: DistContext) -> Any:
    """Rank 0's ``obj`` on every rank (tensors inside should be on the CPU)."""
    import torch.distributed as dist

    box = [obj if ctx.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def mean_across_ranks(values: list[float], ctx: DistContext) -> float:
    """Mean of every rank's ``values`` together (for the logged epoch loss)."""
    import torch.distributed as dist

    dev = torch.device("cuda", torch.cuda.current_device()) if ctx.backend == "nccl" else torch.device("cpu")
    t = torch.tensor([float(sum(values)), float(len(values))], dtype=torch.float64, device=dev)
    dist.all_reduce(t)
    return float(t[0] / t[1]) if t[1] > 0 else float("nan")


def to_cpu(obj: Any) -> Any:
    """Nested dicts/lists of tensors with every tensor moved to the CPU (for broadcasting state)."""
    if torch.is_tensor(obj):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_cpu(v) for v in obj)
    return obj


def launch(nproc: int, argv: list[str], *, command: str | None = None) -> None:
    """Run ``python -m ctxrec.cli <argv>`` in ``nproc`` local processes via torch.distributed.run.

    Same as ``torchrun --standalone --nproc-per-node=N -m ctxrec.cli <argv>``; raises
    ``torch.distributed.elastic.multiprocessing.errors.ChildFailedError`` when a worker fails.
    ``command`` is recorded in the run folder's metrics.json instead of the workers' own command line."""
    from torch.distributed.run import get_args_parser, run

    if nproc < 1:
        raise ValueError(f"--nproc must be >= 1, got {nproc}")
    if command:
        os.environ["CTXREC_LAUNCH_COMMAND"] = command
    args = get_args_parser().parse_args(["--standalone", f"--nproc-per-node={nproc}", "--module", "ctxrec.cli", *argv])
    run(args)
