"""Worker for test_distributed.py: SASRec, then fusion, on a tiny simulated log, one process or one torchrun rank.

    python tests/training/ddp_worker.py OUT.json                                   # one process
    python -m torch.distributed.run --standalone --nproc-per-node=2 tests/training/ddp_worker.py OUT.json

Dropout is off and every training sequence is longer than ``max_len`` (so each row holds the same number
of target positions): the 2-rank gradient is then the 1-process gradient up to float rounding, and the
two runs must agree closely. Rank 0 writes the per-epoch history and the final parameters' checksum.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch


def main(out: str) -> None:
    from ctxrec.data.splits import leave_one_out
    from ctxrec.data.synthetic import SimulatorConfig, simulate
    from ctxrec.models import build_model
    from ctxrec.training import distributed

    torch.set_num_threads(1)
    ctx = distributed.setup()
    try:
        data = simulate(SimulatorConfig(n_users=96, n_items=60, events_per_user=16, min_events_per_user=14, seed=3))
        split = leave_one_out(data)
        model = build_model("sasrec", {"d_model": 16, "n_layers": 1, "max_len": 8, "dropout": 0.0,
                                       "train": {"max_epochs": 4, "batch_size": 32, "lr": 3e-3, "progress": False,
                                                 "patience": 100}})
        run_dir = Path(out).with_suffix("") / "run"
        model.fit(split.train, valid=split.valid, run_dir=run_dir)
        # The fusion model through the same loop (ID + context, no text encoder; every dropout off).
        fusion = build_model("fusion", {"d_model": 16, "n_layers": 1, "max_len": 8, "dropout": 0.0, "use_text": False,
                                        "id_dropout": 0.0, "context_dropout": 0.0,
                                        "train": {"max_epochs": 2, "batch_size": 32, "lr": 3e-3, "progress": False}})
        fusion.fit(split.train, valid=split.valid)
        if ctx is None or ctx.is_main:
            assert model.net is not None
            flat = torch.cat([p.detach().flatten() for p in model.net.parameters()])
            Path(out).write_text(json.dumps({
                "world_size": 1 if ctx is None else ctx.world_size,
                "history": model.fit_info["history"],
                "params": flat.tolist(),
                "fusion_history": fusion.fit_info["history"],
            }))
    finally:
        distributed.teardown()


if __name__ == "__main__":
    main(sys.argv[1])
