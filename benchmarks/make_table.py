"""Rebuild benchmarks/RESULTS.md from benchmarks/results/**/*.json, next to published figures.

    python benchmarks/make_table.py
"""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent

# Published figures with their protocol (from ../shared/data/README.md and notes/quality-anchors.md).
PUBLISHED: dict[str, list[tuple[str, dict[str, float], str]]] = {
    "ml-1m": [
        ("SASRec (BCE, original)", {"ndcg@10": 0.1341, "hr@10": 0.2500}, "Klenitskiy & Vasilev 2023, same file, LOO, full ranking"),
        ("SASRec+ (full CE)", {"ndcg@10": 0.1821, "hr@10": 0.3152}, "Klenitskiy & Vasilev 2023, same file, LOO, full ranking"),
        ("HSTU-large", {"ndcg@10": 0.1893, "hr@10": 0.3294}, "Zhai et al. 2024, own ML-1M preprocessing, LOO, full ranking"),
        ("HSTU-large + MoL", {"ndcg@10": 0.1979, "hr@10": 0.3412}, "Ding & Zhai 2024, HSTU preprocessing (3,706 items), LOO, full ranking"),
        ("FuXi-alpha (re-run by the eSASRec authors)", {"ndcg@10": 0.1813, "hr@10": 0.3164}, "transformer_benchmark, 3,706-item file, LOO, full ranking"),
        ("eSASRec", {"ndcg@10": 0.1772, "hr@10": 0.3133}, "arXiv 2508.06450, 3,706-item file, LOO, full ranking"),
    ],
    "amazon-beauty": [
        ("SASRec (reported)", {"ndcg@10": 0.0318, "recall@10": 0.0605}, "via eSASRec benchmark, S3-Rec Beauty, LOO, full"),
        ("SASRec+SS (calculated)", {"ndcg@10": 0.0531, "recall@10": 0.0921}, "eSASRec 2025, S3-Rec Beauty, LOO, full"),
        ("eSASRec (calculated)", {"ndcg@10": 0.0523, "recall@10": 0.0928}, "eSASRec 2025, S3-Rec Beauty, LOO, full"),
        ("BSARec", {"ndcg@10": 0.0611, "hr@10": 0.1008}, "AAAI 2024, official log, S3-Rec Beauty (FMLP-Rec pipeline), LOO, full; a third-party run got 0.0575 / 0.0950"),
        ("WEARec", {"ndcg@10": 0.0599, "hr@10": 0.1016}, "AAAI 2026, third-party re-run of the official code, same data"),
    ],
    "amazon-scientific": [
        ("VQ-Rec", {"ndcg@10": 0.0643, "recall@10": 0.1211}, "Hou et al. 2023, UniSRec split, full ranking"),
    ],
    "ml-100k": [
        ("RecBole SASRec, 15 min CPU (this machine)", {"ndcg@10": 0.0581, "hr@10": 0.1188}, "notes/peer-recbole.md, LOO, full ranking (seen items not excluded)"),
        ("RecBole BPR (this machine)", {"ndcg@10": 0.0673, "hr@10": 0.1241}, "notes/peer-recbole.md, LOO, full ranking"),
    ],
}

COLS = ["ndcg@10", "hr@10", "recall@10", "mrr@10", "coverage@10"]

# Pointwise (CTR) results: frappe with the BARS protocol (benchmarks/frappe_bars.py), AUC / log loss on the test part.
CTR_COLS = ["auc", "logloss"]
PUBLISHED_CTR: dict[str, list[tuple[str, dict[str, float], str]]] = {
    "frappe": [(n, {"auc": a, "logloss": ll}, "BARS Frappe_x1 leaderboard (FuxiCTR), random 7:2:1, 2 negatives per positive")
               for n, a, ll in (("FM", 0.9671, 0.2065), ("DeepFM", 0.9842, 0.1482), ("DCN-V2", 0.9845, 0.1491),
                                ("FinalNet", 0.9857, 0.1311), ("FinalMLP", 0.9861, 0.1484))],
}


def fmt(v: float | None, std: float | None = None) -> str:
    if v is None:
        return "-"
    return f"{v:.4f}" if std is None else f"{v:.4f} ± {std:.4f}"


def _cell(r: dict, col: str) -> str:
    """Mean ± std over seeds where the row has several, else the one figure."""
    return fmt(r["metrics"].get(col), (r.get("metrics_std") or {}).get(col))


def _seeds(r: dict) -> str:
    n = len(r.get("per_seed") or []) or 1
    cut = r.get("stopped_by_time_budget") or ([0] if (r.get("fit_info") or {}).get("stopped_by") == "time_budget" else [])
    return f"{n}" + (" (cut by its time budget: not a headline)" if cut else "")


def _command(r: dict) -> str:
    """The row's command, after the one that made an input file it reads (``prepare``), if any."""
    return (f"`{r['prepare']}`; then " if r.get("prepare") else "") + f"`{r['command']}`"


def noise_note(ours: list[dict], published: dict[str, float], cols: list[str]) -> str:
    """'within noise' when a published figure lies within 2 std of a multi-seed ctxrec row's mean."""
    hits = [f"{c} within noise of ctxrec {r['name']}" for r in ours for c in cols
            if c in published and c in (sd := r.get("metrics_std") or {}) and sd[c] > 0
            and abs(r["metrics"][c] - published[c]) <= 2 * sd[c]]
    return "; ".join(hits)


def _stop(r: dict) -> str:
    info = r.get("fit_info") or {}
    if "members" in info:  # an ensemble: how each member stopped
        return ", ".join(_stop({"fit_info": m}) for m in info["members"])
    if "stopped_by" not in info:
        return "closed form"
    return f"{info['stopped_by']} ({info.get('best_epoch')}/{info.get('epochs_run')})"


def compared(r: dict) -> bool:
    """A row set beside the published figures: several seeds, or a closed form (no seed to vary). A trained
    one-seed row is a record, listed under the table and never compared (issue 15: a row compared with a
    published figure has at least 3 seeds)."""
    return len(r.get("per_seed") or []) >= 2 or _stop(r) == "closed form"


def records(rows: list[dict], cols: list[str], ctr: bool = False) -> list[str]:
    """The one-seed trained rows of a dataset, below its comparison table."""
    if not rows:
        return []
    out = ["One-seed runs (records: not compared with the published figures above; each needs more seeds first):", "",
           "| model | " + " | ".join(cols) + " | stop (best/epochs) | source / command |", "|---|" + "---|" * (len(cols) + 2)]
    for r in rows:
        cut = " (cut by its time budget)" if "cut" in _seeds(r) else ""
        out.append(f"| ctxrec {r['name']}{cut} | " + " | ".join(_cell(r, c) for c in cols) + f" | {_stop(r)} | "
                   + (f"`{r['command']}`" if ctr else _command(r)) + " |")
    return [*out, ""]


def tuning_section(results: dict[str, list[dict]]) -> list[str]:
    """The tuned rows (benchmarks/tune.py) beside the default-flags and hand-tuned rows of the same model."""
    rows = [json.loads(f.read_text()) for f in sorted((ROOT / "results" / "tuning").glob("*.json"))]
    if not rows:
        return []
    lines = ["## Tuning (`ctxrec tune`)", "",
             "Test NDCG@10 (AUC for the pointwise CTR model) of the default flags, the hand-tuned flags and the best",
             "trial of a study (validation only; test read once per seed after the study), with what the study cost.", "",
             ("| dataset | model | metric | default flags | hand-tuned | tuned | tuned / hand-tuned | trials (pruned) | budget | "
              "study wall s | CPU h | command |"), "|---|" + "---|" * 11]
    by_name = {(ds, r["name"]): r for ds, rs in results.items() for r in rs}
    for t in rows:
        ds, model = t["dataset"], t["model"]
        key = "auc" if t.get("objective") == "auc" else "ndcg@10"
        hand_name = Path(t.get("hand_tuned_row", f"{model}.json")).stem  # tune.py --hand-tuned NAME
        cells = []
        for name in (f"{model}-default", hand_name):
            r = by_name.get((ds, name))
            named = f", `{name}`" if name not in (model, f"{model}-default") else ""
            cells.append(f"{_cell(r, key)} ({_seeds(r)} seeds{named})" if r else "-")
        sd = (t.get("test_metrics_std") or {}).get(key)
        tuned = f"{fmt(t['test_metrics'][key], sd)} ({len(t.get('seeds') or [1])} seeds)"
        hand = by_name.get((ds, hand_name))  # the hand-tuned row as it stands now (it may have gained seeds since)
        ratio = round(t["test_metrics"][key] / hand["metrics"][key], 3) if hand else t.get(f"tuned_over_hand_tuned_{key}")
        budget = f"{t['budget_trials']} trials" + (f" / {t['budget_s'] / 60:g} min" if t.get("budget_s") else "")
        lines.append(f"| {ds} | {model} | {key} | {cells[0]} | {cells[1]} | {tuned} | {ratio if ratio is not None else '-'} | "
                     f"{t['trials']} ({t['pruned']}) | {budget} | {t.get('study_wall_s', '-')} | {t.get('cpu_hours', '-')} | "
                     f"`{t['command']}` |")
    notes = [f"- {t['dataset']} {t['model']}: {t['cost_note']}" for t in rows if t.get("cost_note")]
    return [*lines, "", *notes, *([""] if notes else [])]


def main() -> str:
    results: dict[str, list[dict]] = {}
    machine = None
    for f in sorted((ROOT / "results").glob("*/*.json")):
        if f.parent.name in {"peer", "serving", "deploy", "distributed"}:
            continue
        r = json.loads(f.read_text())
        if "metrics" not in r:
            continue
        r.setdefault("name", f.stem)
        results.setdefault(r["dataset"], []).append(r)
        machine = machine or r.get("machine")
    lines = ["# Benchmark results", "",
             "Generated by `python benchmarks/make_table.py` from `benchmarks/results/<dataset>/<model>.json`.",
             "All ctxrec rows: leave-one-out (last event test, second-to-last validation), full ranking over the",
             "whole catalogue, items already in the history excluded, model selected on validation NDCG@10.",
             "`stop`: why training ended (early_stopping, time_budget, or interrupted by hand with Ctrl-C, which keeps",
             "the best validation weights), with the best epoch and the number of epochs run (0-based best).",
             "Rows with several seeds show mean ± sample std (`seeds`: how many; `per_seed` in the JSON); a",
             "published figure within 2 std of a multi-seed row's mean is marked *within noise*. A run that its",
             "time budget stopped is marked and is not a headline. Only rows with several seeds (or a closed form,",
             "which has no seed) stand beside the published figures; a trained row with one seed is listed below",
             "its dataset's table as a record.", ""]
    if machine:
        lines += [(f"Machine: {machine.get('cpu')}, {machine.get('cores')} cores, {machine.get('memory_gib')} GiB, "
                  f"GPU: {machine.get('gpu') or 'none'}, torch {machine.get('torch')}."), ""]
    for ds in sorted(set(results) | set(PUBLISHED)):
        if ds in PUBLISHED_CTR:
            lines += [f"## {ds} (pointwise, BARS protocol)", "",
                      "| model | AUC | log loss | seeds | fit s | s/epoch | stop (best/epochs) | source / command |",
                      "|---|---|---|---|---|---|---|---|"]
            rows = sorted(results.get(ds, []), key=lambda r: r["metrics"].get("auc", 0))
            ours = [r for r in rows if compared(r)]
            for r in ours:
                lines.append(f"| **ctxrec {r['name']}** | " + " | ".join(_cell(r, c) for c in CTR_COLS)
                             + f" | {_seeds(r)} | {r.get('fit_seconds', '-')} | {r.get('seconds_per_epoch') or '-'} | {_stop(r)}"
                             + f" | `{r['command']}` |")
            for name, m, src in PUBLISHED_CTR[ds]:
                note = noise_note(ours, m, CTR_COLS)
                lines.append(f"| {name} (published) | " + " | ".join(fmt(m.get(c)) for c in CTR_COLS)
                             + f" | | | | | {src}{'; *' + note + '*' if note else ''} |")
            lines.append("")
            lines += records([r for r in rows if not compared(r)], CTR_COLS, ctr=True)
            continue
        lines += [f"## {ds}", "", "| model | " + " | ".join(COLS)
                  + " | seeds | fit s | s/epoch | stop (best/epochs) | peak RSS MiB | source / command |",
                  "|---|" + "---|" * (len(COLS) + 6)]
        rows = sorted(results.get(ds, []), key=lambda r: r["metrics"].get("ndcg@10", 0))
        ours = [r for r in rows if compared(r)]
        for r in ours:
            lines.append(f"| **ctxrec {r['name']}** | " + " | ".join(_cell(r, c) for c in COLS)
                         + f" | {_seeds(r)} | {r.get('fit_seconds', '-')} | {r.get('seconds_per_epoch') or '-'} | {_stop(r)}"
                         + f" | {r.get('peak_rss_mib', '-')} | {_command(r)} |")
        for name, m, src in PUBLISHED.get(ds, []):
            note = noise_note(ours, m, COLS)
            lines.append(f"| {name} (published) | " + " | ".join(fmt(m.get(c)) for c in COLS)
                         + f" | | | | | | {src}{'; *' + note + '*' if note else ''} |")
        lines.append("")
        lines += records([r for r in rows if not compared(r)], COLS)
    lines += tuning_section(results)
    text = "\n".join(lines)
    (ROOT / "RESULTS.md").write_text(text)
    return text


if __name__ == "__main__":
    print(main())
