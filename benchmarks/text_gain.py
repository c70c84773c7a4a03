"""What the text view adds on warm items (issue 18): two committed multi-seed result rows of one
dataset, the same config with and without the language-model text, into ``text_gain.json``.

    python benchmarks/text_gain.py --dataset amazon-scientific --with text-idinit --without text-none \\
        --also fusion

A row may read an input file made beforehand (``item_vectors``, e.g. the lexical vectors of
``benchmarks/lexical_vectors.py``): ``--prepare`` puts the command that made it first in ``command``.

Each row is a ``benchmarks/run.py --seeds N`` result (``metrics`` = the mean, ``metrics_std``, ``per_seed``);
the file keeps both rows' commands. ``--also`` rows (other with-text variants of the same config) are
listed beside them with their gain, as the ablation record.
"""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
METRICS = ("ndcg@10", "hr@10")


def row(dataset: str, name: str) -> dict[str, Any]:
    path = ROOT / "results" / dataset / f"{name}.json"
    d = json.loads(path.read_text())
    if not d.get("per_seed"):
        raise SystemExit(f"{path} has no per_seed: run it with benchmarks/run.py --seeds 3")
    std = d.get("metrics_std") or {}
    out: dict[str, Any] = {m: d["metrics"][m] for m in METRICS}
    out.update({"std": std.get("ndcg@10"), "hr@10_std": std.get("hr@10"), "seeds": d.get("seeds"),
                "per_seed_ndcg@10": [p["metrics"]["ndcg@10"] for p in d["per_seed"]],
                "use_text": d["model_config"].get("use_text"), "id_init": d["model_config"].get("id_init", "random"),
                "item_vectors": d["model_config"].get("item_vectors"),
                "result": f"benchmarks/results/{dataset}/{name}.json", "command": d["command"]})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--with", dest="with_", required=True, help="result name of the with-text row")
    ap.add_argument("--without", required=True, help="result name of the same config without text")
    ap.add_argument("--also", action="append", default=[], help="other with-text rows to list (ablation)")
    ap.add_argument("--prepare", default=None,
                    help="the command that made an input file the rows read (e.g. benchmarks/lexical_vectors.py)")
    args = ap.parse_args()
    with_, without = row(args.dataset, args.with_), row(args.dataset, args.without)
    if with_["use_text"] is not True or without["use_text"] is not False:
        raise SystemExit(f"--with must be a use_text=true row and --without a use_text=false one; got "
                         f"{with_['use_text']!r} and {without['use_text']!r}")
    base = without["ndcg@10"]
    result = {
        "dataset": args.dataset, "with_text": with_, "without_text": without,
        "gain_ndcg@10": round(with_["ndcg@10"] / base - 1, 4), "seeds": with_["seeds"],
        "command": " ; ".join([*([args.prepare] if args.prepare else []), with_["command"], without["command"]]),
        "variants": [{**row(args.dataset, n), "name": n, "gain_ndcg@10": round(row(args.dataset, n)["ndcg@10"] / base - 1, 4)}
                     for n in args.also],
        "made_by": "python benchmarks/text_gain.py " + " ".join(
            [f"--dataset {args.dataset}", f"--with {args.with_}", f"--without {args.without}",
             *(f"--also {n}" for n in args.also), *([f"--prepare {shlex.quote(args.prepare)}"] if args.prepare else [])]),
    }
    out = ROOT / "results" / args.dataset / "text_gain.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{args.dataset}: with text {with_['ndcg@10']:.4f} +- {with_['std']:.4f}, without {base:.4f} +- "
          f"{without['std']:.4f}: {result['gain_ndcg@10']:+.1%} NDCG@10 -> {out}")
    for v in result["variants"]:
        print(f"  {v['name']}: {v['ndcg@10']:.4f} +- {v['std']:.4f} ({v['gain_ndcg@10']:+.1%})")


if __name__ == "__main__":
    main()
