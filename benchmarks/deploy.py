"""Deployment benchmark: fp32 vs int8 (vs pruned) ONNX exports of a trained model, and the text encoder.

    python benchmarks/deploy.py --dataset ml-1m --model runs/bench/ml-1m/sasrec/model
    python benchmarks/deploy.py --dataset amazon-scientific --model runs/bench/amazon-scientific/fusion/model \
        --text-encoder

For each variant (``torch`` = the PyTorch model for reference, ``fp32`` / ``int8`` (int8 tables + ORT dynamic
quantization of the weight MatMuls) / ``int8s`` (int8 tables + static, calibrated QDQ quantization of every
MatMul, attention and item scoring included) ONNX exports, ``pruned<P>`` = global magnitude pruning of P% of
the weights then fp32 export) it records

* ``ndcg@10`` (and hr@10) on the test cases of the run's split, full ranking, computed by
  ``ctxrec.evaluation.Evaluator`` exactly as benchmarks/run.py does (the Recommender protocol is the same);
* ``size_mb``: the network file (``recommender.onnx``; for ``torch`` the float32 network weights), 10^6 bytes,
  and ``size_mb_gzip`` (what the zeros of pruning buy once compressed);
* ``p50_ms`` / ``p90_ms``: single-query latency of the whole ``recommend([RecQuery(user_id=u)], k=10)`` path
  (query encoding, network, masking of seen items, top-10, external ids) over ``--queries`` known users;
  the variants are timed interleaved (one query each, in a random order per query) so that load from
  other processes and cache effects hit them alike. ``--latency-only`` re-times the existing exports and
  updates the latency fields of an existing result file;
* ``p50_ms_batch<B>`` / ``p90_ms_batch<B>`` (``--batch-sizes``, default 16 and 64; torch, fp32 and the int8
  variants): latency of one ``recommend`` call on B random known users, i.e. what the service's
  micro-batcher scores in one forward pass under load, interleaved the same way; ``per_query_ms_batch<B>``
  = p50 / B. ``<q>_vs_fp32`` holds the issue's ratios (NDCG@10 relative drop, size, latency p50 single
  query and per batch size) for each int8 variant. Every ONNX variant gets the same export (incl.
  ``last_position_only``) and ONNX Runtime's full graph optimisation, with the same thread count.

``--text-encoder`` (text-aware models): sentences/second of the fp32 and int8 ONNX text encoders on the
item texts, mean/min cosine of int8 to the fp32 item vectors the model was trained with, and NDCG@10 of
the model with its text vectors replaced by the int8 encoder's.

Writes benchmarks/results/deploy/<dataset>.json and rebuilds benchmarks/results/deploy/DEPLOY.md.
Exports go to runs/deploy/<dataset>/ (not committed). Run it under the heavy-job lock (see docs/HELPERS.md).
"""

from __future__ import annotations

import argparse
import gzip
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results" / "deploy"


def _mb(n: float) -> float:
    return round(n / 1e6, 3)


def _gzip_mb(path: Path) -> float:
    return _mb(len(gzip.compress(path.read_bytes(), compresslevel=6)))


def _torch_size(model: Any) -> tuple[float, float]:
    """float32 network weights of the PyTorch model (what its model.safetensors holds besides histories)."""
    arrays = [v.detach().cpu().numpy() for v in model.net.state_dict().values()]
    raw = b"".join(np.ascontiguousarray(a).tobytes() for a in arrays)
    return _mb(len(raw)), _mb(len(gzip.compress(raw, compresslevel=6)))


def latency(models: dict[str, Any], users: list[str], k: int = 10, warmup: int = 20) -> dict[str, dict[str, float]]:
    """Interleaved single-query latency of ``recommend`` per model (ms)."""
    from ctxrec.models.base import RecQuery

    names = list(models)
    for u in users[:warmup]:
        for n in names:
            models[n].recommend([RecQuery(user_id=u)], k=k)
    times: dict[str, list[float]] = {n: [] for n in names}
    rng = np.random.default_rng(1)
    for u in users:
        q = [RecQuery(user_id=u)]
        # A fresh random order per query: no variant always runs right after the same other one (the
        # PyTorch fusion model streams megabytes per query and would leave its successor a cold cache).
        for j in rng.permutation(len(names)):
            n = names[j]
            t = time.perf_counter()
            models[n].recommend(q, k=k)
            times[n].append(time.perf_counter() - t)
    return {n: {"p50_ms": round(float(np.median(v)) * 1e3, 3), "p90_ms": round(float(np.percentile(v, 90)) * 1e3, 3),
                "mean_ms": round(float(np.mean(v)) * 1e3, 3)} for n, v in times.items()}


def batch_latency(models: dict[str, Any], users: list[str], batch_sizes: list[int], reps: int, k: int = 10,
                  warmup: int = 3, budget_s: float = 90.0) -> dict[str, dict[str, float]]:
    """Interleaved latency of ``recommend`` on a batch of ``B`` queries (what the service's micro-batcher
    scores in one forward pass under load): per rep, ``B`` random known users, every variant in a random
    order on the same batch. ``p50_ms_batch<B>`` is per batch, ``per_query_ms_batch<B>`` = p50 / B.
    Each batch size stops early after ``budget_s`` seconds (the rep count is recorded)."""
    from ctxrec.models.base import RecQuery

    names = list(models)
    rng = np.random.default_rng(2)
    out: dict[str, dict[str, float]] = {n: {} for n in names}
    for B in batch_sizes:
        times: dict[str, list[float]] = {n: [] for n in names}
        start = time.perf_counter()
        for r in range(warmup + reps):
            q = [RecQuery(user_id=users[i]) for i in rng.choice(len(users), size=B, replace=len(users) < B)]
            for j in rng.permutation(len(names)):
                t = time.perf_counter()
                models[names[j]].recommend(q, k=k)
                if r >= warmup:
                    times[names[j]].append(time.perf_counter() - t)
            if time.perf_counter() - start > budget_s:
                break
        for n, v in times.items():
            p50 = float(np.median(v))
            out[n].update({f"p50_ms_batch{B}": round(p50 * 1e3, 3), f"p90_ms_batch{B}": round(float(np.percentile(v, 90)) * 1e3, 3),
                           f"per_query_ms_batch{B}": round(p50 * 1e3 / B, 4), f"reps_batch{B}": len(v)})
    return out


INT8_VARIANTS = ("int8", "int8s")
"""``int8``: int8 tables + ORT dynamic quantization of the weight MatMuls; ``int8s``: int8 tables + static
(calibrated, QDQ) quantization of every MatMul, attention and item scoring included."""
BATCH_TIMED = ("torch", "fp32", "int8", "int8s")


def _batch_sizes(text: str) -> list[int]:
    return [int(b) for b in text.split(",") if b.strip()]


def _compare_to_fp32(fp32: dict[str, Any], q: dict[str, Any], batch_sizes: list[int]) -> dict[str, Any]:
    """The issue's targets: NDCG@10 relative drop, size ratio, latency ratios (fp32 / int8; > 1 = int8 faster)."""
    out = {"ndcg_rel_drop": round((fp32["ndcg@10"] - q["ndcg@10"]) / fp32["ndcg@10"], 5),
           "size_ratio": round(fp32["size_mb"] / q["size_mb"], 2),
           "latency_ratio_p50": round(fp32["p50_ms"] / q["p50_ms"], 2)}
    for b in batch_sizes:
        if f"p50_ms_batch{b}" in q and f"p50_ms_batch{b}" in fp32:
            out[f"latency_ratio_p50_batch{b}"] = round(fp32[f"p50_ms_batch{b}"] / q[f"p50_ms_batch{b}"], 2)
    return out


def text_encoder_bench(model: Any, data: Any, split: Any, fp32_dir: Path, int8_dir: Path, threads: int,
                       evaluator: Any, say: Any) -> dict[str, Any]:
    import copy

    import torch

    from ctxrec.deploy.onnx_runtime import OnnxTextEncoder
    from ctxrec.text.templates import item_texts

    texts = item_texts(data, model.config.item_text)
    enc32, enc8 = OnnxTextEncoder(fp32_dir, threads=threads), OnnxTextEncoder(int8_dir, threads=threads)
    rng = np.random.default_rng(0)
    sample = [texts[i] for i in rng.choice(len(texts), size=min(512, len(texts)), replace=False)]
    enc32.encode(sample[:64])
    enc8.encode(sample[:64])
    rates: dict[str, list[float]] = {"fp32": [], "int8": []}
    for _ in range(3):  # alternate so that other load hits both alike; best of 3
        for name, enc in (("fp32", enc32), ("int8", enc8)):
            t = time.perf_counter()
            enc.encode(sample)
            rates[name].append(len(sample) / (time.perf_counter() - t))
    say(f"text encoder sentences/s: fp32 {max(rates['fp32']):.1f}, int8 {max(rates['int8']):.1f}")
    t = time.perf_counter()
    v8 = enc8.encode(texts)
    enc_s = time.perf_counter() - t
    ref = model.net.text_vectors[1:].detach().cpu().numpy()  # the fp32 vectors the model was trained with
    cos = (v8 * ref).sum(1) / (np.linalg.norm(v8, axis=1) * np.linalg.norm(ref, axis=1) + 1e-12)
    m8 = copy.deepcopy(model)
    with torch.no_grad():
        m8.net.text_vectors[1:] = torch.from_numpy(v8)
    res8 = evaluator.evaluate(m8, split.test)
    say(f"int8 item vectors: cos mean {cos.mean():.4f} min {cos.min():.4f}, ndcg@10 {res8['ndcg@10']:.4f}")
    return {
        "texts": len(texts), "throughput_texts": len(sample),
        "fp32": {"sentences_per_s": round(max(rates["fp32"]), 1), "size_mb": _mb((fp32_dir / "model.onnx").stat().st_size)},
        "int8": {"sentences_per_s": round(max(rates["int8"]), 1), "size_mb": _mb((int8_dir / "model.onnx").stat().st_size),
                 "cos_mean": round(float(cos.mean()), 5), "cos_min": round(float(cos.min()), 5),
                 "ndcg@10": res8["ndcg@10"], "hr@10": res8["hr@10"], "encode_all_seconds": round(enc_s, 1)},
        "speedup": round(max(rates["int8"]) / max(rates["fp32"]), 2),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--model", required=True, help="model or run folder (sasrec or fusion)")
    ap.add_argument("--split", default=None, help="default: the split recorded with the benchmark result, else leave-one-out")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--prune", type=float, action="append", default=None, help="pruning fractions (default 0.3, 0.5)")
    ap.add_argument("--queries", type=int, default=1000, help="users timed for latency")
    ap.add_argument("--threads", type=int, default=1, help="ONNX Runtime and torch threads")
    ap.add_argument("--text-encoder", action="store_true")
    ap.add_argument("--name", default="", help="result name: writes results/deploy/<dataset>-<name>.json (default "
                    "<dataset>.json), e.g. for a second model of the same dataset")
    ap.add_argument("--out", default=None, help="export root (default runs/deploy/<dataset>[-<name>])")
    ap.add_argument("--latency-only", action="store_true", help="re-time existing exports; update the result file")
    ap.add_argument("--batch-sizes", default="16,64", help="batched latency: comma-separated batch sizes ('' = none)")
    ap.add_argument("--batch-reps", type=int, default=100, help="batches timed per batch size (capped at 90 s each)")
    args = ap.parse_args(argv)
    argv_list = argv if argv is not None else sys.argv[1:]
    command = "python benchmarks/deploy.py " + " ".join(shlex.quote(a) for a in argv_list)

    import torch

    torch.set_num_threads(args.threads)
    from ctxrec.data.datasets import load_dataset
    from ctxrec.data.splits import make_split
    from ctxrec.deploy.export import ExportConfig, export_model
    from ctxrec.deploy.onnx_runtime import OnnxRecommender
    from ctxrec.evaluation.evaluator import EvalConfig, Evaluator
    from ctxrec.experiment import machine_description
    from ctxrec.models import load_model

    def say(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)

    prunes = args.prune if args.prune is not None else [0.3, 0.5]
    stem = f"{args.dataset}-{args.name}" if args.name else args.dataset
    out_root = Path(args.out) if args.out else ROOT.parent / "runs" / "deploy" / stem
    model = load_model(args.model)
    if args.latency_only:
        return retime(args, model, out_root, command, say, RESULTS / f"{stem}.json")
    bench_file = ROOT / "results" / args.dataset / f"{model.kind}.json"
    split_name = args.split or (json.loads(bench_file.read_text()).get("split") if bench_file.exists() else None) or "leave-one-out"
    data = load_dataset(args.dataset, args.data_dir)
    split = make_split(data, split_name)
    evaluator = Evaluator(EvalConfig(exclude_seen=True))

    variants: dict[str, Path] = {}
    exports: dict[str, Any] = {}
    for name, cfg in [("fp32", ExportConfig(text_encoder=args.text_encoder)),
                      ("int8", ExportConfig(quantize="int8", text_encoder=args.text_encoder)),
                      ("int8s", ExportConfig(quantize="int8-static", text_encoder=False)),
                      *[(f"pruned{int(p * 100)}", ExportConfig(prune=p, text_encoder=False)) for p in prunes]]:
        t = time.perf_counter()
        info = export_model(model, out_root / name, cfg, log=say)
        say(f"{name}: exported in {time.perf_counter() - t:.1f} s")
        variants[name], exports[name] = out_root / name, info

    models: dict[str, Any] = {"torch": model}
    models.update({n: OnnxRecommender.load(p, threads=args.threads) for n, p in variants.items()})
    entries: dict[str, dict[str, Any]] = {}
    for name, m in models.items():
        t = time.perf_counter()
        res = evaluator.evaluate(m, split.test)
        say(f"{name}: ndcg@10 {res['ndcg@10']:.4f} hr@10 {res['hr@10']:.4f} ({time.perf_counter() - t:.0f} s)")
        if name == "torch":
            size, size_gz = _torch_size(model)
        else:
            f = variants[name] / "recommender.onnx"
            size, size_gz = _mb(f.stat().st_size), _gzip_mb(f)
        entries[name] = {"ndcg@10": res["ndcg@10"], "hr@10": res["hr@10"], "size_mb": size, "size_mb_gzip": size_gz}
        if name != "torch":
            entries[name]["verification"] = exports[name]["verification"]
            if "prune" in exports[name]:
                entries[name]["sparsity"] = exports[name]["prune"]["sparsity"]

    assert model.user_vocab is not None
    rng = np.random.default_rng(0)
    users = [model.user_vocab.ids[i] for i in rng.choice(len(model.user_vocab), size=min(args.queries, len(model.user_vocab)), replace=False)]
    say(f"timing {len(users)} single queries per variant, interleaved")
    for name, lat in latency(models, users).items():
        entries[name].update(lat)
        say(f"{name}: p50 {lat['p50_ms']:.3f} ms p90 {lat['p90_ms']:.3f} ms")
    batch_sizes = _batch_sizes(args.batch_sizes)
    if batch_sizes:
        timed = {n: models[n] for n in BATCH_TIMED if n in models}
        say(f"timing batches of {batch_sizes} queries for {', '.join(timed)}, interleaved")
        for name, lat in batch_latency(timed, users, batch_sizes, args.batch_reps).items():
            entries[name].update(lat)
            say(f"{name}: " + ", ".join(f"batch {b} p50 {lat[f'p50_ms_batch{b}']:.2f} ms" for b in batch_sizes))

    result: dict[str, Any] = {
        "dataset": args.dataset, "name": args.name, "model": model.kind, "model_dir": args.model,
        "model_config": {k: getattr(model.config, k) for k in ("d_model", "n_layers", "n_heads", "max_len")
                         if hasattr(model.config, k)}, "split": split_name,
        "n_test_cases": len(split.test), "exclude_seen": True, "threads": args.threads, "latency_queries": len(users),
        "batch_sizes": batch_sizes,
        **entries,
        **{f"{q}_vs_fp32": _compare_to_fp32(entries["fp32"], entries[q], batch_sizes) for q in INT8_VARIANTS},
        "command": command, "machine": machine_description(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    if args.text_encoder:
        te32, te8 = variants["fp32"] / "text_encoder", variants["int8"] / "text_encoder"
        if not (te32 / "model.onnx").exists():
            raise SystemExit(f"{args.model} has no exportable text encoder; drop --text-encoder")
        result["text_encoder"] = text_encoder_bench(model, data, split, te32, te8, args.threads, evaluator, say)
        result["text_encoder"]["ndcg_rel_drop"] = round(
            (entries["fp32"]["ndcg@10"] - result["text_encoder"]["int8"]["ndcg@10"]) / entries["fp32"]["ndcg@10"], 5)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    write_table()
    say(f"wrote {RESULTS / (stem + '.json')}: {result['int8_vs_fp32']}")
    return result


def retime(args: Any, model: Any, out_root: Path, command: str, say: Any, f: Path) -> dict[str, Any]:
    """Re-measure the latency of the exports already in ``out_root`` and update the result file ``f``."""
    from ctxrec.deploy.onnx_runtime import OnnxRecommender

    result = json.loads(f.read_text())
    names = ["fp32", *[q for q in INT8_VARIANTS if q in result], *sorted(k for k in result if k.startswith("pruned"))]
    models: dict[str, Any] = {"torch": model}
    models.update({n: OnnxRecommender.load(out_root / n, threads=args.threads) for n in names})
    rng = np.random.default_rng(0)
    users = [model.user_vocab.ids[i] for i in rng.choice(len(model.user_vocab), size=min(args.queries, len(model.user_vocab)), replace=False)]
    say(f"timing {len(users)} single queries per variant, interleaved")
    for name, lat in latency(models, users).items():
        result[name].update(lat)
        say(f"{name}: p50 {lat['p50_ms']:.3f} ms p90 {lat['p90_ms']:.3f} ms")
    batch_sizes = _batch_sizes(args.batch_sizes)
    if batch_sizes:
        timed = {n: models[n] for n in BATCH_TIMED if n in models}
        for name, lat in batch_latency(timed, users, batch_sizes, args.batch_reps).items():
            result[name].update(lat)
            say(f"{name}: " + ", ".join(f"batch {b} p50 {lat[f'p50_ms_batch{b}']:.2f} ms" for b in batch_sizes))
    result["batch_sizes"] = batch_sizes
    for q in INT8_VARIANTS:
        if q in result:
            result[f"{q}_vs_fp32"] = _compare_to_fp32(result["fp32"], result[q], batch_sizes)
    result["threads"], result["latency_queries"] = args.threads, len(users)
    result["latency_command"] = command
    result["latency_date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    f.write_text(json.dumps(result, indent=2) + "\n")
    write_table()
    say(f"updated {f}: {result['int8_vs_fp32']}")
    return result


def write_table() -> None:
    """DEPLOY.md from every results/deploy/*.json."""
    lines = ["# Deployment: ONNX export, int8 quantization, pruning", "",
             "Generated by `benchmarks/deploy.py` (see its docstring for what each column measures). NDCG@10: test",
             "cases of the run's split, full ranking, `ctxrec.evaluation.Evaluator`. Size: the network file",
             "(`recommender.onnx`; for torch the float32 network weights), 10^6 bytes. Latency (p50/p90 ms): one",
             "query `recommend([RecQuery(user_id=u)], k=10)`, whole path; batch B (p50 ms per batch): `recommend` on",
             "B random known users at once, what the service's micro-batcher scores in one forward pass under load.",
             "Variants interleaved, ONNX Runtime and torch with the thread count shown.", ""]
    for f in sorted(RESULTS.glob("*.json")):
        r = json.loads(f.read_text())
        m = r["machine"]
        bs = r.get("batch_sizes", [])
        mc = r.get("model_config", {})
        width = f", d_model {mc['d_model']}, {mc['n_layers']} layers" if "d_model" in mc else ""
        lines += [(f"## {r['dataset']}{' / ' + r['name'] if r.get('name') else ''} ({r['model']}{width}, {r['split']}, "
                  f"{r['n_test_cases']:,} test cases)"), "",
                  f"`{r['command']}` — {r['date']}; {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, "
                  f"torch {m['torch']}, {r['threads']} thread(s), {r['latency_queries']} timed queries."
                  + (f" Latency re-timed by `{r['latency_command']}` ({r['latency_date']})." if "latency_command" in r else ""),
                  "",
                  "| variant | NDCG@10 | HR@10 | size MB | size MB (gzip) | p50 ms | p90 ms |"
                  + "".join(f" batch {b} p50 ms |" for b in bs),
                  "|---|---|---|---|---|---|---|" + "---|" * len(bs)]
        for name in ["torch", "fp32", *[q for q in INT8_VARIANTS if q in r], *sorted(k for k in r if k.startswith("pruned"))]:
            e = r[name]
            label = {"torch": "PyTorch fp32 (reference)", "fp32": "ONNX fp32", "int8": "ONNX int8 (dynamic)",
                     "int8s": "ONNX int8 static (all MatMuls)"}.get(
                name, f"ONNX fp32, {name[6:]}% pruned (sparsity {e.get('sparsity', 0):.2f})")
            batch = "".join(f" {e[f'p50_ms_batch{b}']:.2f} |" if f"p50_ms_batch{b}" in e else " — |" for b in bs)
            lines.append(f"| {label} | {e['ndcg@10']:.4f} | {e['hr@10']:.4f} | {e['size_mb']:.3f} | "
                         f"{e['size_mb_gzip']:.3f} | {e['p50_ms']:.3f} | {e['p90_ms']:.3f} |" + batch)
        lines.append("")
        for q in INT8_VARIANTS:
            if f"{q}_vs_fp32" not in r:
                continue
            c = r[f"{q}_vs_fp32"]
            ok = lambda v, t: "met" if v >= t else "NOT met"  # noqa: E731
            lat = [f"single query {c['latency_ratio_p50']:.2f}x ({ok(c['latency_ratio_p50'], 1.5)})"]
            lat += [f"batch {b} {c[f'latency_ratio_p50_batch{b}']:.2f}x ({ok(c[f'latency_ratio_p50_batch{b}'], 1.5)})"
                    for b in bs if f"latency_ratio_p50_batch{b}" in c]
            lines += [f"{'int8' if q == 'int8' else 'int8 static'} vs fp32: NDCG@10 relative drop {c['ndcg_rel_drop']:.2%} "
                      f"(target <= 1%: {'met' if c['ndcg_rel_drop'] <= 0.01 else 'NOT met'}), {c['size_ratio']:.2f}x smaller "
                      f"(target >= 3x: {ok(c['size_ratio'], 3.0)}), p50 latency lower by (target >= 1.5x): "
                      + ", ".join(lat) + ".", ""]
        if "text_encoder" in r:
            t = r["text_encoder"]
            lines += ["Text encoder (ONNX Runtime, item texts):", "",
                      "| encoder | sentences/s | size MB | cos to fp32 mean / min | NDCG@10 with its item vectors |",
                      "|---|---|---|---|---|",
                      (f"| fp32 | {t['fp32']['sentences_per_s']:.1f} | {t['fp32']['size_mb']:.1f} | 1 / 1 | "
                      f"{r['fp32']['ndcg@10']:.4f} |"),
                      (f"| int8 | {t['int8']['sentences_per_s']:.1f} | {t['int8']['size_mb']:.1f} | "
                      f"{t['int8']['cos_mean']:.4f} / {t['int8']['cos_min']:.4f} | {t['int8']['ndcg@10']:.4f} |"), "",
                      (f"int8 text encoder: {t['speedup']:.2f}x the fp32 sentences/s (target >= 2x); NDCG@10 relative "
                      f"drop {t['ndcg_rel_drop']:.2%} (target <= 1%)."), ""]
    lines += NOTES
    (RESULTS / "DEPLOY.md").write_text("\n".join(lines) + "\n")


NOTES = [
    "## Reading these figures", "",
    "* **Latency target (int8 >= 1.5x lower than fp32): met at d_model 256, not at d_model 64.** ml-1m, one",
    "  thread, variants interleaved, same export graph and ONNX Runtime optimisation for all. SASRec with",
    "  d_model 256 / 4 heads (`ml-1m / d256`, trained 20 min: NDCG@10 0.1678): int8 is 1.56x faster for one",
    "  query, 1.78x for a batch of 16 and 1.80x for a batch of 64, NDCG@10 +0.2% (no drop), 3.8x smaller: all",
    "  three targets met. SASRec with d_model 64 (`ml-1m`, NDCG@10 0.1719): 1.05x / 1.19x / 1.22x, so not",
    "  met there, while size (3.3x) and NDCG (-0.29%) are. int8 buys speed where the weight GEMMs carry the",
    "  work; at d 64 they are too small (next point). It speeds up a given model, it does not make the wide",
    "  model cheap: int8 d 256 (1.27 ms) is still slower than fp32 d 64 (0.70 ms) for one query. int8 static",
    "  (every MatMul, attention and item scoring included, calibrated QDQ) is no better than dynamic int8",
    "  (d 64: 0.91x / 1.09x / 1.14x, a Quantize/Dequantize pair around each of the 14 MatMuls costs about",
    "  what the int8 arithmetic saves at K = 64; d 256: 1.46x / 1.75x / 1.72x); it stays an export option",
    "  (`--quantize int8-static`).",
    "* Why int8 wins little here (from operation counts; not profiled per op): for a batch of 64 histories",
    "  of ~200 items, 43% of the ~765 M multiply-adds are attention (Q Kt, softmax V; fp32 in dynamic int8),",
    "  the softmax over 64 x 200 x 200 scores, LayerNorm and GELU are fp32 in every variant, and the weight",
    "  GEMMs that do run in int8 have an inner dimension of only 64, where quantizing the activations and",
    "  rescaling the outputs is a sizeable extra pass. At d 256 the weight GEMMs have 16x the work per token",
    "  while attention grows 4x, and int8 pays (above). A fused int8 attention kernel was not tried.",
    "* Exploration on ml-1m (same lock, 1 thread, interleaved; ONNX Runtime alone / whole `recommend`, p50 ms):",
    "",
    "  | graph | batch 1 | batch 16 | batch 64 |",
    "  |---|---|---|---|",
    "  | fp32, full last block (the previous export) | 0.56 / 0.58 | 12.5 / 13.9 | 55.1 / 60.0 |",
    "  | int8, full last block (the previous export) | 0.52 / 0.53 | 10.2 / 11.7 | 44.6 / 50.2 |",
    "  | fp32, last position only (now the default) | 0.46 / 0.47 | 7.1 / 8.4 | 31.4 / 37.4 |",
    "  | int8 dynamic, last position only | 0.44 / 0.47 | 5.6 / 6.8 | 24.4 / 30.0 |",
    "  | int8 dynamic incl. attention MatMuls, last position only | 0.42 / 0.44 | 5.5 / 6.7 | 24.1 / 29.6 |",
    "  | int8 static QDQ, all MatMuls, last position only | 0.47 / 0.55 | 6.2 / 7.6 | 26.0 / 32.1 |",
    "",
    "  Computing only the scored position in the last block (an fp32 graph change, `last_position_only`) is",
    "  the real gain: 1.6x per batch for fp32 and int8 alike. Against the *previous* fp32 graph the new int8",
    "  is 2.0x faster per batch of 64, but that ratio credits int8 with a change fp32 gets too, so it is not",
    "  the target's ratio. Quantizing the attention MatMuls dynamically adds 1-2% (NDCG@10 0.1711, -0.45%).",
    "  ONNX Runtime's transformers optimizer (bert, 1 head, d 64) finds no Attention fusion in the exported",
    "  causal attention; its other fusions (SkipLayerNormalization, BiasGelu) are what `ORT_ENABLE_ALL`",
    "  already applies to every variant at session creation, and saving the optimised model only saves",
    "  start-up time. The item-scoring MatMul (64 x 3,706 per query, ~2% of the work) stays fp32 in dynamic",
    "  int8 (its right-hand side is computed in the graph, so `quantize_dynamic` skips it) and is int8 in",
    "  int8 static.",
    "* The ml-1m run held the heavy-job lock (other, unlocked processes such as test runs may still have",
    "  shared the 2 cores); the ratios come from interleaved measurements that share the same load. The",
    "  amazon-scientific figures predate the batched columns and the int8 static variant (its fusion graph",
    "  is not affected by `last_position_only`); they were not under the lock.",
    "* Pruning: global magnitude pruning over the embedding tables and Linear weights costs NDCG quickly on",
    "  SASRec (ID embeddings are the whole item representation) and little on fusion at 30% (text carries",
    "  items); the zeros only shrink the compressed file. Which fusion views to drop is left to the ablations",
    "  (none were committed when this was written).",
    "",
]


if __name__ == "__main__":
    main()
