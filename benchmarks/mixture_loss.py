"""The fusion mixture loss at ml-1m's shapes: the library's form against the einsum form it replaced (issue 18).

    flock /tmp/ctxrec-heavy.lock .venv/bin/python benchmarks/mixture_loss.py

P(i) = sum_j w_j softmax_j(i) over J views needs J softmaxes over the catalogue at every trained
position, so on a large catalogue with a small model this loss is most of a training step. The einsum
form (``reference_nll`` below, the library's code until 2026-12-05) built the (N, J, V) logits with an
einsum, took a logsumexp and a gather over them; the library's ``mixture_nll`` multiplies once into
(N J, V) rows and reads each view's log-softmax at the target from torch's fused cross-entropy. Both
are timed forward + backward on the same random inputs, alternating, and their losses and gradients
compared. Writes ``benchmarks/results/ml-1m/mixture_loss.json`` and ``MIXTURE_LOSS.md``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent


def reference_nll(view_vecs: torch.Tensor, log_w: torch.Tensor, table: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The einsum form the library used before (kept here only as the measured baseline)."""
    logits = torch.einsum("njd,vd->njv", view_vecs, table).float()  # (N, J, V)
    logits[..., 0] = float("-inf")
    log_sm = logits - torch.logsumexp(logits, -1, keepdim=True)
    idx = targets.view(-1, 1, 1).expand(-1, logits.shape[1], 1)
    return -torch.logsumexp(log_w + log_sm.gather(-1, idx).squeeze(-1), dim=1).mean()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from ctxrec.experiment import machine_description
    from ctxrec.models.fusion.net import mixture_nll

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--positions", type=int, default=20_000, help="trained positions per batch (ml-1m: 128 users x ~160)")
    ap.add_argument("--views", type=int, default=3)
    ap.add_argument("--items", type=int, default=3_417, help="catalogue + padding row")
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(ROOT / "results" / "ml-1m" / "mixture_loss.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    N, J, V, D = args.positions, args.views, args.items, args.dim
    vecs = (torch.randn(N, J, D, generator=gen) * 0.5).requires_grad_()
    log_w = torch.log_softmax(torch.randn(N, J, generator=gen), -1).requires_grad_()
    table = (torch.randn(V, D, generator=gen) * 0.5).requires_grad_()
    targets = torch.randint(1, V, (N,), generator=gen)
    forms = {"einsum (before)": lambda: reference_nll(vecs, log_w, table, targets),
             "fused cross-entropy (library)": lambda: mixture_nll(vecs, log_w, table, targets, mixture=True)}

    def step(fn: Any) -> tuple[float, float, list[torch.Tensor]]:
        for t in (vecs, log_w, table):
            t.grad = None
        t0 = time.perf_counter()
        loss = fn()
        loss.backward()
        return time.perf_counter() - t0, float(loss), [t.grad.clone() for t in (vecs, log_w, table) if t.grad is not None]

    seconds: dict[str, list[float]] = {k: [] for k in forms}
    results = {k: step(fn) for k, fn in forms.items()}  # warm-up, and the values compared
    for _ in range(args.repeats):
        for k, fn in forms.items():  # alternating, so a load change hits both
            seconds[k].append(step(fn)[0])
    (_, loss_a, grads_a), (_, loss_b, grads_b) = results.values()
    rows = [{"form": k, "median_s": round(statistics.median(v), 3), "runs_s": [round(x, 3) for x in v]} for k, v in seconds.items()]
    rows[1]["vs_before"] = round(rows[1]["median_s"] / rows[0]["median_s"], 3)
    command = ("python benchmarks/mixture_loss.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))).rstrip()
    out = {"shapes": {"positions": N, "views": J, "items": V, "dim": D}, "threads": args.threads, "rows": rows,
           "loss_abs_diff": abs(loss_a - loss_b),
           "grad_max_abs_diff": max(float((a - b).abs().max()) for a, b in zip(grads_a, grads_b, strict=True)),
           "command": command, "machine": machine_description()}
    dest = Path(args.out)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(out, indent=2) + "\n")
    lines = ["# The mixture loss at ml-1m's shapes", "",
             (f"Forward + backward of the J-view mixture NLL, {N} positions x {J} views x {V} items, d {D}, "
             f"{args.threads} thread(s); median of {args.repeats} alternating runs. Command: `{command}`. "
             f"Loss difference {out['loss_abs_diff']:.1e}, largest gradient difference {out['grad_max_abs_diff']:.1e}."), "",
             "| form | median s | vs before |", "|---|---|---|"]
    lines += [f"| {r['form']} | {r['median_s']} | {r.get('vs_before', 1.0)} |" for r in rows]
    dest.with_name("MIXTURE_LOSS.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return out


if __name__ == "__main__":
    main()
