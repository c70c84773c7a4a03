"""Ablations of the fusion model: the same base config with one component switched off at a time.

    python benchmarks/ablations.py --dataset amazon-scientific \
        --set max_len=50 --set dropout=0.3 --set train.patience=5 --set train.max_epochs=40

Each variant is one ``benchmarks/run.py`` run (results/<dataset>/ablations/<variant>.json, run folder
under runs/bench/<dataset>/ablations/); ABLATIONS.md beside them tabulates each variant against the full
model. ``--variant NAME:KEY=V,KEY=V`` adds a custom variant (used for tuning); ``--reuse`` skips variants
whose result file exists (so an interrupted sweep resumes).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent

VARIANTS: dict[str, list[str]] = {
    "full": [],
    "no_text": ["use_text=false"],
    "no_id": ["use_id=false"],
    "no_context": ["use_context=false"],
    "no_attributes": ["use_attributes=false"],
    "single_softmax": ["mixture=false"],
}
WHAT = {
    "full": "everything on",
    "no_text": "no language-model item vectors",
    "no_id": "no item ID embeddings (text + attributes only)",
    "no_context": "no event/request context, no context view",
    "no_attributes": "no attribute embeddings",
    "single_softmax": "one softmax over the gate-weighted views instead of the mixture",
    # variants tried while tuning (not switches off): kept so the table shows what did not help
    "cosine_t0.07": "cosine scoring with temperature 0.07 instead of dot products",
    "moe_adapter": "MoE text adapter (4 whitened experts) instead of the linear projection",
    "d256": "d_model 256 / 4 heads instead of 64 / 1",
    "brand_category": "brand and category-path attribute ids (parsed from the item text), as the loader now gives",
    "seed1": "train.seed=1 (seed noise)",
    "seed2": "train.seed=2 (seed noise)",
    # for a base config with mixture=false (ml-1m): the mixture switched *on*
    "mixture": "mixture of per-view softmaxes instead of the base's single softmax",
}
COLS = ["ndcg@10", "recall@10", "mrr@10"]


def main(argv: list[str] | None = None) -> dict:
    import run as run_one

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated built-in variant names")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME:K=V,K=V", help="a custom variant")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="base config override")
    ap.add_argument("--reuse", action="store_true")
    ap.add_argument("--note", default="", help="a paragraph for ABLATIONS.md (the budget, how to read the rows)")
    ap.add_argument("--data-dir", default=None)
    args = ap.parse_args(argv)
    variants = {n: VARIANTS[n] for n in args.variants.split(",") if n}
    for spec in args.variant:
        name, _, sets = spec.partition(":")
        variants[name] = [s for s in sets.split(",") if s]
        WHAT.setdefault(name, ", ".join(variants[name]))
    out_dir = ROOT / "results" / args.dataset / "ablations"
    rows: dict[str, dict] = {}
    for name, sets in variants.items():
        dest = out_dir / f"{name}.json"
        if not (args.reuse and dest.exists()):
            argv1 = ["--dataset", args.dataset, "--model", "fusion", "--name", f"ablations/{name}"]
            argv1 += [x for s in args.set + sets for x in ("--set", s)]
            if args.data_dir:
                argv1 += ["--data-dir", args.data_dir]
            run_one.main(argv1)
        rows[name] = json.loads(dest.read_text())
    cmd = list(argv if argv is not None else sys.argv[1:])
    if "--note" in cmd:  # the note is in the table already; keep the command line short
        i = cmd.index("--note")
        cmd[i + 1] = "..."
    write_table(args.dataset, out_dir, " ".join(shlex.quote(a) for a in cmd), args.note)
    return rows


def _sets(cmd: str) -> list[str]:
    """The ``--set KEY=VALUE`` overrides of a command line."""
    toks = shlex.split(cmd)
    return [toks[i + 1] for i, t in enumerate(toks[:-1]) if t == "--set"]


def write_table(dataset: str, out_dir: Path, cmd: str, note: str = "") -> None:
    rows = {f.stem: json.loads(f.read_text()) for f in sorted(out_dir.glob("*.json"))}
    full = rows.get("full")
    # Runs under a time budget reach different epochs: the last column compares them at the same epoch.
    curves = {n: (r.get("fit_info") or {}).get("valid_curve", {}).get("values") for n, r in rows.items()}
    n_eq = min((len(c) for c in curves.values() if c), default=0)
    lines = [f"# Fusion ablations on {dataset}", "",
             "Test split, full ranking over all items, history excluded. Each row switches one component off in the",
             "base config; Δ is relative to `full`. Every row is its own `benchmarks/run.py` run (command in its JSON).", "",
             f"Sweep command: `python benchmarks/ablations.py {cmd}`", "",
             "A switch can be inert on a dataset: with one view (no context fields, no timestamps, no user",
             "profile) the mixture equals the single softmax, and `use_context` only changes the random stream;",
             "the `views` column shows what each run had. Such rows measure seed noise, not the component.", "",
             *([note, ""] if note else []),
             "| variant | what changes | views | " + " | ".join(COLS) + f" | Δ ndcg@10 | epochs (best) | s/epoch | valid ndcg@10 after {n_eq} epochs |",
             "|---|---|---|" + "---|" * (len(COLS) + 4)]
    order = [n for n in VARIANTS if n in rows] + sorted(n for n in rows if n not in VARIANTS)
    for n in order:
        r = rows[n]
        m = r["metrics"]
        delta = "" if full is None or n == "full" else f"{(m['ndcg@10'] / full['metrics']['ndcg@10'] - 1) * 100:+.1f}%"
        info = r.get("fit_info") or {}
        views = ", ".join(info.get("views") or []) or "-"
        what = WHAT.get(n) or ", ".join(x for x in _sets(r.get("command", "")) if full is None or x not in _sets(full.get("command", "")))
        lines.append(f"| {n} | {what or r.get('command', '')} | {views} | " + " | ".join(f"{m[c]:.4f}" for c in COLS)
                     + f" | {delta} | {info.get('epochs_run', '-')} ({info.get('best_epoch', '-')}) | {r.get('seconds_per_epoch', '-')} | "
                     + (f"{curves[n][n_eq - 1]:.4f} |" if curves[n] and n_eq else "- |"))
    if full is not None:
        lines += ["", f"Machine: {full.get('machine', '')}"]
    (out_dir / "ABLATIONS.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
