"""What a person looks at after a run: the metrics table printed by the CLI and the quickstart, and the
training curve saved as report.png."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any


def auto_decisions(fit_info: dict[str, Any] | None) -> str:
    """The settings a fit decided for the user ("auto" values), as one line to print, or "" when none:
    a choice made on the user's behalf is said where they read the result, not only in metrics.json."""
    auto = (fit_info or {}).get("auto") or {}
    parts = [f"{k}={str(v).lower()}" for k, v in (auto.get("chosen") or {}).items()]
    cold = auto.get("cold_start")
    if isinstance(cold, dict):
        parts += [f"{k}={str(cold[k]).lower()}" for k in ("use_text", "id_dropout", "temperature", "cold_ids") if k in cold]
    return "decided on your data: " + ", ".join(parts) + " (fit_info.auto in metrics.json says why)" if parts else ""


def plot_training_curve(history: list[dict[str, Any]], path: str | Path, *, title: str = "training") -> Path:
    """Loss and validation metrics per epoch, saved as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, ax1 = plt.subplots(figsize=(7, 4))
    ax1.plot(epochs, [h["loss"] for h in history], color="tab:gray", label="train loss")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("train loss")
    ax2 = ax1.twinx()
    for key in sorted({k for h in history for k in h if k.startswith("valid_")}):
        ax2.plot(epochs, [h.get(key, math.nan) for h in history], marker=".", label=key.removeprefix("valid_"))
    ax2.set_ylabel("validation metric")
    lines = ax1.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax2.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="center right", fontsize=8)
    ax1.set_title(title)
    fig.tight_layout()
    p = Path(path)
    fig.savefig(p, dpi=110)
    plt.close(fig)
    return p


METRIC_COLUMNS = ("ndcg@10", "hr@10", "recall@10", "mrr@10", "map@10", "precision@10", "coverage@10")


def print_metrics(rows: dict[str, dict[str, float]], *, title: str = "test metrics (full ranking)") -> None:
    """One table row per model (``{model: metrics}``), at least 120 columns wide; "-" where a metric is absent."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    table.add_column("model")
    for c in METRIC_COLUMNS:
        table.add_column(c, justify="right")
    for name, m in rows.items():
        table.add_row(name, *[f"{m[c]:.4f}" if c in m else "-" for c in METRIC_COLUMNS])
    Console(width=max(Console().width, 120)).print(table)
