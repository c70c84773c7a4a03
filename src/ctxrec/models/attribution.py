"""Which request-context fields and which past events drove a recommendation (occlusion attribution).

For a query and its recommended list, the score of the list is the mean log-probability the model gives
its items. A context field's attribution is how much that score drops when the field is removed from
the request (the value becomes "unknown", the way a client that does not send it would be served; for
``time`` the request timestamp is dropped). A past event's attribution is how much the score drops
when that one event is removed from the history (its context goes with it). Positive = it pushed
these items up; negative = it held them back. Occlusion is exact for what the model does (no
linearisation, unlike gradient x input) and needs one extra forward pass per field and per event,
which is cheap at explanation time (``max_events`` limits the events examined to the most recent).

Works for any Recommender through ``_score`` for the context part; the history part uses the fusion
model's token tensors (``_encode_batch`` / ``FusionNet``), so the same internals that score also explain.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ctxrec.models.base import QueryBatch, Recommender


def _list_score(scores: np.ndarray, top: np.ndarray) -> np.ndarray:
    """(B, V) log-probabilities / scores and (B, k) top items (-1 = none) -> (B,) mean over the list."""
    valid = top >= 0
    vals = np.take_along_axis(scores, np.maximum(top, 0), axis=1)
    vals = np.where(valid & np.isfinite(vals), vals, 0.0)
    return vals.sum(1) / np.maximum(valid.sum(1), 1)


def context_fields_of(model: Recommender, batch: QueryBatch) -> list[str]:
    """The request-context fields that can be occluded: the model's fields present in some query, + ``time``."""
    enc = getattr(model, "ctx_encoder", None)
    names = list(enc.field_names) if enc is not None else sorted({k for c in batch.contexts for k in c})
    present = [f for f in names if any(f in c for c in batch.contexts)]
    if enc is not None and enc.use_time and np.isfinite(batch.timestamps).any():
        present.append("time")
    return present


def context_attribution(model: Recommender, batch: QueryBatch, top: np.ndarray) -> list[dict[str, float]]:
    """Per query, ``{field: score drop when the field is removed}`` for every field it sent."""
    base = _list_score(np.asarray(model._score(batch), dtype=np.float64), top)
    out: list[dict[str, float]] = [{} for _ in range(len(top))]
    for f in context_fields_of(model, batch):
        if f == "time":
            occluded = dataclasses.replace(batch, timestamps=np.full(len(batch), np.nan))
            sent = np.isfinite(batch.timestamps)
        else:
            occluded = dataclasses.replace(batch, contexts=[{k: v for k, v in c.items() if k != f} for c in batch.contexts])
            sent = np.array([f in c for c in batch.contexts])
        drop = base - _list_score(np.asarray(model._score(occluded), dtype=np.float64), top)
        for b in np.flatnonzero(sent):
            out[b][f] = round(float(drop[b]), 4)
    return out


def history_attribution(model: Any, batch: QueryBatch, top: np.ndarray, *, max_events: int = 20) -> list[list[dict[str, Any]]]:
    """Per query, the last ``max_events`` history events with the score drop when each is removed
    (fusion model: token tensors from ``_encode_batch``), largest first."""
    import torch

    from ctxrec.models.fusion import mixture_log_probs

    net = model.net.eval()
    x = model._encode_batch(batch)
    out: list[list[dict[str, Any]]] = []
    with torch.no_grad():
        table = net.item_table()
        for b in range(len(top)):
            n = int(x["len"][b])  # BOS + events
            hist = np.asarray(batch.histories[b], dtype=np.int64)
            first = max(1, n - max_events)
            variants = [None, *range(first, n)]  # None = the full sequence
            seqs = []
            for j in variants:
                keep = [p for p in range(n) if p != j]
                seqs.append(keep)
            T = n
            V = len(seqs)
            idx = torch.zeros(V, T, dtype=torch.long)
            mask = torch.zeros(V, T, dtype=torch.bool)
            for v, keep in enumerate(seqs):
                idx[v, : len(keep)] = torch.tensor(keep)
                mask[v, : len(keep)] = True
            inp = torch.where(mask, x["inp"][b][idx], torch.zeros_like(idx))
            ev = torch.where(mask, x["ev"][b][idx], torch.zeros_like(idx))
            ci = x["ci"][b][idx] * mask.unsqueeze(-1)
            cd = x["cd"][b][idx] * mask.unsqueeze(-1)
            lens = mask.sum(1)
            h = net.encode(inp, ev, ci, cd, table)
            last = h[torch.arange(V), lens - 1]
            prof = net.profile_vector(x["prof"][b : b + 1].expand(V, -1),
                                      None if "utext" not in x else x["utext"][b : b + 1].expand(V, -1))
            vecs, log_w = net.views(last, x["rci"][b : b + 1].expand(V, -1), x["rcd"][b : b + 1].expand(V, -1), prof)
            vecs_s, table_s = net.scoring_inputs(vecs, table) if hasattr(net, "scoring_inputs") else (vecs, table)
            log_p = mixture_log_probs(vecs_s, log_w, table_s, mixture=model.config.mixture)[:, 1:].double().numpy()
            scores = _list_score(log_p, np.repeat(top[b : b + 1], V, 0))
            events = []
            offset = len(hist) - (n - 1)  # history index of token position 1
            for v, j in enumerate(variants[1:], start=1):
                pos = offset + j - 1
                events.append({"position": int(pos), "item_id": model.item_vocab.ids[int(hist[pos])],
                               "attribution": round(float(scores[0] - scores[v]), 4)})
            events.sort(key=lambda e: -e["attribution"])
            out.append(events)
    return out


def format_explanation(expl: dict[str, Any], titles: dict[str, str] | None = None, *, n_events: int = 5) -> str:
    """A readable text table of an explanation dict (view weights, context fields, past events)."""
    titles = titles or {}
    lines: list[str] = []
    if expl.get("view_weights"):
        lines.append("view weights (gate):")
        lines += [f"  {k:<12} {v:6.3f}  {'#' * int(round(30 * v))}" for k, v in expl["view_weights"].items()]
    if expl.get("context_attribution"):
        lines.append("request context (drop in mean log P of the list when the field is removed):")
        for k, v in sorted(expl["context_attribution"].items(), key=lambda kv: -abs(kv[1])):
            lines.append(f"  {k:<20} {v:+8.4f}")
    if expl.get("history_attribution"):
        lines.append(f"past events that drove it (top {n_events}; drop when the event is removed):")
        for e in expl["history_attribution"][:n_events]:
            t = titles.get(e["item_id"], "")
            lines.append(f"  #{e['position']:<4} {e['item_id']:<12} {e['attribution']:+8.4f}  {t}")
    return "\n".join(lines)


def plot_explanation(expl: dict[str, Any], path: str | Path, *, titles: dict[str, str] | None = None,
                     n_events: int = 10, title: str = "why these recommendations") -> Path:
    """Bar charts: view weights, context-field attributions and the top past events; saved as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    titles = titles or {}
    panels = [(k, expl.get(k)) for k in ("view_weights", "context_attribution", "history_attribution") if expl.get(k)]
    fig, axes = plt.subplots(1, max(len(panels), 1), figsize=(5 * max(len(panels), 1), 4), squeeze=False)
    for ax, (key, val) in zip(axes[0], panels, strict=False):
        if key == "history_attribution":
            ev = val[:n_events][::-1]
            labels = [(titles.get(e["item_id"]) or e["item_id"])[:28] + f" (#{e['position']})" for e in ev]
            values = [e["attribution"] for e in ev]
            ax.set_title("top past events")
        else:
            items = sorted(val.items(), key=lambda kv: abs(kv[1]))
            labels, values = [k for k, _ in items], [v for _, v in items]
            ax.set_title("view weights" if key == "view_weights" else "request context fields")
        ax.barh(labels, values, color=["tab:blue" if v >= 0 else "tab:red" for v in values])
        ax.axvline(0, color="gray", lw=0.5)
        ax.tick_params(axis="y", labelsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(p, dpi=110)
    plt.close(fig)
    return p
