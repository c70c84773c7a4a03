"""Which request-context fields drove a recommendation (occlusion attribution), and how to show it.

For a query and its recommended list, the score of the list is the mean score (for the fusion model: log
probability) the model gives its items. A context field's attribution is how much that score drops when
the field is removed from the request (the value becomes "unknown", the way a client that does not send
it would be served; for ``time`` the request timestamp is dropped). Positive = it pushed these items up;
negative = it held them back. Occlusion is exact for what the model does (no linearisation, unlike
gradient x input) and needs one extra scoring pass per field, which is cheap at explanation time.

Works for any model through its public ``score(batch)``. Attribution over past events needs the model's
sequence internals and lives with the model (``ctxrec.models.fusion.explain``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    from ctxrec.queries import QueryBatch


class Scorer(Protocol):
    def score(self, batch: QueryBatch) -> np.ndarray: ...


def list_score(scores: np.ndarray, top: np.ndarray) -> np.ndarray:
    """(B, V) log-probabilities / scores and (B, k) top items (-1 = none) -> (B,) mean over the list."""
    valid = top >= 0
    vals = np.take_along_axis(scores, np.maximum(top, 0), axis=1)
    vals = np.where(valid & np.isfinite(vals), vals, 0.0)
    return vals.sum(1) / np.maximum(valid.sum(1), 1)


def sent_fields(batch: QueryBatch) -> list[str]:
    """The request-context fields some query sent (sorted), + ``time`` when some query has a timestamp."""
    fields = sorted({k for c in batch.contexts for k in c})
    return fields + (["time"] if np.isfinite(batch.timestamps).any() else [])


def _without(batch: QueryBatch, fields: Sequence[str]) -> tuple[QueryBatch, np.ndarray]:
    """``batch`` with ``fields`` removed from every request (``"time"``: the timestamp), and which
    queries had sent at least one of them."""
    names = [f for f in fields if f != "time"]
    sent = np.array([any(f in c for f in names) for c in batch.contexts], dtype=bool)
    timestamps = batch.timestamps
    if "time" in fields:
        sent |= np.isfinite(batch.timestamps)
        timestamps = np.full(len(batch), np.nan)
    contexts: list[Mapping[str, Any]] = [{k: v for k, v in c.items() if k not in names} for c in batch.contexts]
    return dataclasses.replace(batch, contexts=contexts, timestamps=timestamps), sent


def _base(model: Scorer, batch: QueryBatch, top: np.ndarray, base: np.ndarray | None) -> np.ndarray:
    """(B,) list scores of the unchanged ``batch``: ``base`` when the caller already has them."""
    return list_score(np.asarray(model.score(batch), dtype=np.float64), top) if base is None else base


def context_attribution(model: Scorer, batch: QueryBatch, top: np.ndarray, *, fields: Sequence[str] | None = None,
                        base: np.ndarray | None = None) -> list[dict[str, float]]:
    """Per query, ``{field: score drop when the field is removed}`` for every one of ``fields`` (default:
    :func:`sent_fields`; ``"time"`` = the request timestamp) that the query sent. ``base``: the list
    scores of ``batch`` when the caller has them."""
    base = _base(model, batch, top, base)
    out: list[dict[str, float]] = [{} for _ in range(len(top))]
    for f in (sent_fields(batch) if fields is None else fields):
        occluded, sent = _without(batch, [f])
        drop = base - list_score(np.asarray(model.score(occluded), dtype=np.float64), top)
        for b in np.flatnonzero(sent):
            out[b][f] = round(float(drop[b]), 4)
    return out


def all_fields_drop(model: Scorer, batch: QueryBatch, top: np.ndarray, fields: Sequence[str], *,
                    base: np.ndarray | None = None) -> list[float | None]:
    """Per query, the score drop when every one of ``fields`` it sent is removed at once (None: it sent
    none). Beside the gate's weight for the context view, this says how much of that view comes from
    the request's fields rather than from what the view learned for every request."""
    occluded, sent = _without(batch, fields)
    if not sent.any():
        return [None] * len(top)
    drop = _base(model, batch, top, base) - list_score(np.asarray(model.score(occluded), dtype=np.float64), top)
    return [round(float(d), 4) if s else None for d, s in zip(drop, sent, strict=True)]


# a context view with at least this gate weight whose fields together move the list less than
# PRIOR_DROP is, for this request, a prior learned for all requests: the explanation says so
PRIOR_WEIGHT, PRIOR_DROP = 0.5, 0.01


def format_explanation(expl: dict[str, Any], titles: dict[str, str] | None = None, *, n_events: int = 5) -> str:
    """A readable text table of an explanation dict (view weights, context fields, past events)."""
    titles = titles or {}
    lines: list[str] = []
    if expl.get("view_weights"):
        lines.append("view weights (gate):")
        lines += [f"  {k:<12} {v:6.3f}  {'#' * round(30 * v)}" for k, v in expl["view_weights"].items()]
    if expl.get("context_attribution"):
        lines.append("request context (drop in mean log P of the list when the field is removed):")
        for k, v in sorted(expl["context_attribution"].items(), key=lambda kv: -abs(kv[1])):
            lines.append(f"  {k:<20} {v:+8.4f}")
        together = expl.get("context_all_fields")
        if together is not None and len(expl["context_attribution"]) > 1:
            lines.append(f"  {'(all of them)':<20} {together:+8.4f}")
    lines += context_view_note(expl)
    if expl.get("history_attribution"):
        lines.append(f"past events that drove it (top {n_events}; drop when the event is removed):")
        for e in expl["history_attribution"][:n_events]:
            t = titles.get(e["item_id"], "")
            lines.append(f"  #{e['position']:<4} {e['item_id']:<12} {e['attribution']:+8.4f}  {t}")
    return "\n".join(lines)


def context_view_note(expl: dict[str, Any]) -> list[str]:
    """A line when the gate leans on the context view but this request's fields do not drive it, so a
    reader does not take the view's weight for the fields' effect."""
    weight = (expl.get("view_weights") or {}).get("context")
    if weight is None or weight < PRIOR_WEIGHT:
        return []
    if not expl.get("context_attribution"):
        return [(f"note: the context view has {weight:.2f} of the weight but this request sent no context "
                 "field or time: the view scores with every field unknown, as a prior learned over all requests")]
    together = expl.get("context_all_fields")
    if together is None or abs(together) >= PRIOR_DROP:
        return []
    return [(f"note: the context view has {weight:.2f} of the weight, yet removing every request-context field "
             f"moves the list by only {together:+.4f}: the view's weight comes from what it learned over all "
             "requests (a prior), not from this request's fields")]


def plot_explanation(expl: dict[str, Any], path: str | Path, *, titles: dict[str, str] | None = None,
                     n_events: int = 10, title: str = "why these recommendations") -> Path:
    """Bar charts: view weights, context-field attributions and the top past events; saved as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    titles = titles or {}
    panels: list[tuple[str, Any]] = [(k, expl.get(k)) for k in ("view_weights", "context_attribution", "history_attribution") if expl.get(k)]
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
