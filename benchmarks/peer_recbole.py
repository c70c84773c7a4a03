"""Training speed side by side: RecBole 1.2.1's SASRec vs ctxrec's SASRec, same machine, same split.

    python benchmarks/peer_recbole.py --dataset ml-100k [--recbole-cap-seconds 900]
        [--ctxrec-max-epochs N] [--skip-install] [--venv /work/peer-venv] [--out PATH]

Why a separate script: RecBole needs its own pins (numpy<2, pandas 2.2, setuptools<84, see
benchmarks/peer/requirements-recbole.txt and shared/notes/peer-recbole.md), so it gets its own venv
OUTSIDE the repo (created here on first use, PyPI only) and runs as a subprocess
(benchmarks/peer/recbole_driver.py). ctxrec runs as a second subprocess of this script, so wall time
and peak RSS are per system. Nothing of RecBole's (code, logs, checkpoints) or of the data goes into
the repo: the work folder (--workdir, default a fresh /tmp/ctxrec-peer-*) keeps them.

Protocol. Our loaded dataset is exported to RecBole atomic files with ``timestamp`` = the event's
position within its user, so RecBole's leave-one-out split (order TO, LS valid_and_test, grouped by
user) has exactly ctxrec's valid/test targets; that is checked twice: from the exported file before
running (RecBole's ordering rule replayed) and from the datasets RecBole actually built. RecBole runs
the notes' SASRec (CE, 2x2 heads, d 64, inner 256, dropout 0.5, max len 50, batch 2048, lr 1e-3, seed
2020, stopping_step 10) with a wall cap checked after each epoch; ctxrec runs its quickstart (ml-100k)
or benchmark (ml-1m) config with ``valid=split.valid, monitor=split.test``. Both record test NDCG@10
after every epoch.

Two NDCG@10 families are reported for RecBole: its own evaluator (full ranking masking only [PAD];
already-seen items can be ranked) and "masked", computed by the driver from the same scores with each
case's history removed, which is what ctxrec's evaluator does (exclude_seen=True). The headline time
to reach RecBole's best uses the masked value, so both sides are scored the same way.

Output: benchmarks/results/peer/recbole_vs_ctxrec_<dataset>.json (or --out) and RECBOLE.md beside it,
regenerated from every recbole_vs_ctxrec_*.json in that folder.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from ctxrec.data.dataset import Dataset
    from ctxrec.data.splits import Split

ROOT = Path(__file__).resolve().parent
REQUIREMENTS = ROOT / "peer" / "requirements-recbole.txt"
DRIVER = ROOT / "peer" / "recbole_driver.py"
DEFAULT_VENV = Path("/work/peer-venv")
TORCH_PIN = "torch==2.13.0"
RECBOLE_VERSION = "1.2.1"
INTER_HEADER = ["user_id:token", "item_id:token", "timestamp:float"]

# RecBole side: shared/notes/peer-recbole.md section 3 (RANK + SASRec overrides; model values are
# RecBole's SASRec.yaml defaults, spelled out so the run says what it ran).
RECBOLE_CONFIG: dict[str, Any] = {
    "seed": 2020, "reproducibility": True, "use_gpu": False, "show_progress": False,
    "learner": "adam", "learning_rate": 0.001, "train_batch_size": 2048, "eval_batch_size": 4096,
    "weight_decay": 0.0, "epochs": 200, "eval_step": 1, "stopping_step": 10,
    "train_neg_sample_args": None,
    "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "full"},
    "metrics": ["Recall", "NDCG", "MRR", "Hit"], "topk": [10, 20], "valid_metric": "NDCG@10",
    "n_layers": 2, "n_heads": 2, "hidden_size": 64, "inner_size": 256,
    "hidden_dropout_prob": 0.5, "attn_dropout_prob": 0.5, "hidden_act": "gelu",
    "loss_type": "CE", "MAX_ITEM_LIST_LENGTH": 50,
    # Our export: only these columns; the timestamp is an order key, so no normalisation and no filtering.
    "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
    "normalize_all": False, "user_inter_num_interval": "[0,inf)", "item_inter_num_interval": "[0,inf)",
}

# ctxrec side. ml-100k: the quickstart's SASRec (ctxrec.quickstart.QUICKSTART_MODELS, read at run
# time); ml-1m and others: the config of benchmarks/results ml-1m runs.
CTXREC_ML1M_CONFIG: dict[str, Any] = {
    "max_len": 200, "dropout": 0.2,
    "train": {"batch_size": 128, "lr": 0.001, "patience": 10, "max_epochs": 200, "bf16": True},
}


def ctxrec_config(dataset: str, *, max_epochs: int | None, cap_seconds: float, overrides: list[str] = ()) -> dict[str, Any]:
    if dataset == "ml-100k":
        from ctxrec.quickstart import QUICKSTART_MODELS

        cfg = json.loads(json.dumps(dict(QUICKSTART_MODELS)["sasrec"]))
    else:
        cfg = json.loads(json.dumps(CTXREC_ML1M_CONFIG))
    # CPU like RecBole's venv (its torch is the CPU wheel); no progress bars; the same wall budget.
    cfg["train"].update(device="cpu", progress=False, max_seconds=cap_seconds)
    if max_epochs is not None:
        cfg["train"]["max_epochs"] = max_epochs
    if overrides:
        from ctxrec.config import apply_overrides

        cfg = apply_overrides(cfg, list(overrides))
    return cfg


# ------------------------------------------------------------------------------------ RecBole venv
def _run(cmd: list[str]) -> None:
    print("+ " + " ".join(shlex.quote(c) for c in cmd), flush=True)
    subprocess.run(cmd, check=True)


def venv_ok(venv: Path) -> bool:
    py = venv / "bin" / "python"
    if not py.exists():
        return False
    probe = f"import recbole, torch, numpy; assert recbole.__version__ == {RECBOLE_VERSION!r}, recbole.__version__"
    return subprocess.run([str(py), "-c", probe], check=False, capture_output=True).returncode == 0


def ensure_venv(venv: Path, *, skip_install: bool) -> Path:
    """RecBole's venv, created with the notes' recipe when missing: torch first, then the pins with
    ``-c`` holding torch so pip never swaps in another (CUDA) build; then ``pip check``."""
    if venv_ok(venv):
        return venv / "bin" / "python"
    if skip_install:
        raise SystemExit(f"--skip-install was given but {venv} has no working recbole {RECBOLE_VERSION}; "
                         "drop --skip-install to create it, or point --venv at a working one")
    if venv.resolve().is_relative_to(ROOT.parent.resolve()):
        raise SystemExit(f"--venv {venv} is inside the repository; RecBole's venv must live outside it "
                         f"(default {DEFAULT_VENV})")
    _run([sys.executable, "-m", "venv", str(venv)])
    pip = [str(venv / "bin" / "python"), "-m", "pip"]
    _run([*pip, "install", TORCH_PIN])
    with tempfile.TemporaryDirectory() as tmp:
        pins = Path(tmp) / "torch-pin.txt"
        pins.write_text(TORCH_PIN + "\n")
        _run([*pip, "install", "-r", str(REQUIREMENTS), "-c", str(pins)])
    _run([*pip, "check"])
    if not venv_ok(venv):
        raise SystemExit(f"installed {venv} but `import recbole` ({RECBOLE_VERSION}) still fails there")
    return venv / "bin" / "python"


# --------------------------------------------------------------------------------- atomic export
def export_atomic(data: Dataset, path: Path) -> pd.DataFrame:
    """Write ``data`` as a RecBole ``.inter`` file in ctxrec's event order; return what was written.

    ``timestamp`` is the event's 0-based position within its user: a strictly increasing per-user
    key, so RecBole's stable sort by time reproduces our order exactly (no ties, and integers are
    exact in float32 up to 2**24)."""
    import numpy as np
    import pandas as pd

    from ctxrec.data.dataset import Columns

    order = data.row_order()  # rows grouped by dense user, each user's events in our order
    offsets = data.user_offsets()
    users_dense = data.user_idx[order]
    position = np.arange(len(order)) - offsets[users_dense]
    if len(position) and position.max() >= 2**24:
        raise ValueError(f"a user has {int(position.max()) + 1} events; float32 order keys are exact only below 2**24")
    frame = pd.DataFrame({
        INTER_HEADER[0]: data.interactions[Columns.USER].to_numpy()[order],
        INTER_HEADER[1]: data.interactions[Columns.ITEM].to_numpy()[order],
        INTER_HEADER[2]: position.astype(np.int64),
    })
    bad = frame[INTER_HEADER[0]].str.contains(r"[\t\n]") | frame[INTER_HEADER[1]].str.contains(r"[\t\n]")
    if bad.any():
        raise ValueError(f"{int(bad.sum())} ids contain a tab or newline, which RecBole's atomic format cannot hold")
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, sep="\t", index=False)
    return frame


def recbole_targets_from_file(path: Path) -> dict[str, dict[str, str]]:
    """Valid and test targets RecBole's LS valid_and_test split gives for this ``.inter`` file.

    RecBole's rule (1.2.1): stable sort of all rows by float32 time key (after min-max scaling when
    ``normalize_all``; we turn that off), group rows by user keeping that order, then per user the
    last row is test and the one before it valid; a user with 2 rows gets test only, 1 row nothing."""
    import numpy as np
    import pandas as pd

    frame = pd.read_csv(path, sep="\t", dtype={INTER_HEADER[0]: str, INTER_HEADER[1]: str})
    if list(frame.columns) != INTER_HEADER:
        raise ValueError(f"{path}: header is {list(frame.columns)}, expected {INTER_HEADER}")
    key = frame[INTER_HEADER[2]].to_numpy(np.float64).astype(np.float32)
    frame = frame.iloc[np.argsort(key, kind="stable")]
    valid: dict[str, str] = {}
    test: dict[str, str] = {}
    for user, items in frame.groupby(INTER_HEADER[0], sort=False)[INTER_HEADER[1]]:
        seq = items.tolist()
        if len(seq) >= 2:
            test[user] = seq[-1]
        if len(seq) >= 3:
            valid[user] = seq[-2]
    return {"valid": valid, "test": test}


def ctxrec_targets(data: Dataset, split: Split) -> dict[str, dict[str, str]]:
    """Valid and test targets of ctxrec's leave-one-out split, in external ids."""
    out = {}
    for name, ev in (("valid", split.valid), ("test", split.test)):
        users = data.user_vocab.external(ev.users)
        items = data.item_vocab.external([int(t[0]) for t in ev.targets])
        out[name] = dict(zip(users, items, strict=True))
    return out


def compare_targets(ours: dict[str, dict[str, str]], theirs: dict[str, dict[str, str]]) -> dict[str, Any]:
    """Per part: cases, and how many differ (missing on either side or another target item)."""
    res: dict[str, Any] = {}
    for part in ("valid", "test"):
        a, b = ours[part], theirs[part]
        differ = sorted(u for u in set(a) | set(b) if a.get(u) != b.get(u))
        res[part] = {"cases": len(a), "recbole_cases": len(b), "differ": len(differ), "examples": differ[:5]}
    res["equal"] = all(res[p]["differ"] == 0 for p in ("valid", "test"))
    return res


# ---------------------------------------------------------------------------------- subprocesses
def run_measured(cmd: list[str], *, log: Path, cwd: Path, tag: str) -> dict[str, Any]:
    """Run ``cmd`` under ``/usr/bin/time -v`` (when present); stdout+stderr go to ``log`` and the
    lines starting with ``[tag]`` are echoed. Returns wall seconds and the peak RSS time reports."""
    timef = log.with_suffix(".time")
    full = ["/usr/bin/time", "-v", "-o", str(timef), *cmd] if Path("/usr/bin/time").exists() else cmd
    t0 = time.perf_counter()
    with log.open("w") as fh:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # live logs through the pipe
        proc = subprocess.Popen(full, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert proc.stdout is not None
        for line in proc.stdout:
            fh.write(line)
            if line.startswith(f"[{tag}]"):
                print(line, end="", flush=True)
        rc = proc.wait()
    wall = time.perf_counter() - t0
    if rc != 0:
        tail = "".join(log.read_text().splitlines(keepends=True)[-40:])
        raise SystemExit(f"{tag} run failed (exit {rc}); last lines of {log}:\n{tail}")
    rss = None
    if timef.exists():
        m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", timef.read_text())
        rss = round(int(m.group(1)) / 1024, 1) if m else None
    return {"wall_seconds": round(wall, 2), "time_v_peak_rss_mib": rss}


def ctxrec_child(spec_path: str, result_path: str) -> None:
    """The ctxrec side, run in its own process (``--child-ctxrec``) so its RSS is its own."""
    t_start = time.perf_counter()
    import resource

    import torch

    from ctxrec.data.datasets import load_dataset
    from ctxrec.data.splits import leave_one_out
    from ctxrec.evaluation.evaluator import EvalConfig, Evaluator
    from ctxrec.models import build_model

    spec = json.loads(Path(spec_path).read_text())
    data = load_dataset(spec["dataset"], spec["data_dir"])
    split = leave_one_out(data)
    model = build_model("sasrec", spec["config"])
    print(f"[ctxrec] training sasrec on {spec['dataset']} ({data.n_users} users, {data.n_items} items)", flush=True)
    t_fit = time.perf_counter()
    model.fit(split.train, valid=split.valid, monitor=split.test)
    fit_seconds = time.perf_counter() - t_fit
    ks, metrics = (10, 20), ("ndcg", "hr", "mrr", "recall")
    masked = Evaluator(EvalConfig(ks=ks, metrics=metrics)).evaluate(model, split.test)
    native = Evaluator(EvalConfig(ks=ks, metrics=metrics, exclude_seen=False)).evaluate(model, split.test)
    for h in model.fit_info["history"]:
        print(f"[ctxrec] epoch {h['epoch']}: train {h['train_seconds']:.1f}s loss {h['loss']:.4f} valid ndcg@10 "
              f"{h.get('valid_ndcg@10', float('nan')):.4f} test ndcg@10 {h.get('monitor_ndcg@10', float('nan')):.4f} "
              f"elapsed {h['elapsed']:.0f}s", flush=True)
    n_params = sum(p.numel() for p in model.net.parameters()) if model.net is not None else None
    result = {
        "config": spec["config"],
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "n_params": n_params,
        "counts": {"users": data.n_users, "items": data.n_items, "interactions": data.n_events,
                   "valid_cases": len(split.valid), "test_cases": len(split.test)},
        "history": model.fit_info["history"],
        "fit_info": {k: v for k, v in model.fit_info.items() if k != "history"},
        "test_best": {k: float(v) for k, v in masked.items() if "@" in k and not k.startswith("coverage")},
        "test_best_native": {k: float(v) for k, v in native.items() if "@" in k and not k.startswith("coverage")},
        "fit_seconds": fit_seconds,
        "child_seconds": time.perf_counter() - t_start,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    Path(result_path).write_text(json.dumps(result, indent=1))


# ------------------------------------------------------------------------------------- summary
def _median(xs: list[float]) -> float | None:
    xs = sorted(xs)
    if not xs:
        return None
    mid = len(xs) // 2
    return xs[mid] if len(xs) % 2 else (xs[mid - 1] + xs[mid]) / 2


def time_to_reach(history: list[dict[str, Any]], key: str, threshold: float) -> tuple[float | None, int | None]:
    """Elapsed seconds (from the start of training) and epoch of the first epoch with ``key >= threshold``."""
    for h in history:
        if h.get(key) is not None and h[key] >= threshold:
            return round(float(h["elapsed"]), 2), int(h["epoch"])
    return None, None


def _r(x: float | None, nd: int = 4) -> float | None:
    return None if x is None else round(float(x), nd)


def summarise(
    rb: dict[str, Any], cx: dict[str, Any], rb_proc: dict[str, Any], cx_proc: dict[str, Any]
) -> dict[str, Any]:
    """The comparison: RecBole's best-valid-epoch test NDCG@10 and ctxrec's time to reach it, plus
    each system's speed, quality, wall time and peak RSS (``time -v``; the child's own getrusage
    where ``/usr/bin/time`` is missing)."""
    best = next(h for h in rb["history"] if h["epoch"] == rb["best_epoch"])
    rb_best_native = float(rb["test_best"]["ndcg@10"])
    rb_best_masked = float(rb["test_best_own"]["masked_ndcg@10"])
    t_masked, e_masked = time_to_reach(cx["history"], "monitor_ndcg@10", rb_best_masked)
    t_native, e_native = time_to_reach(cx["history"], "monitor_ndcg@10", rb_best_native)
    rb_wall = rb_proc["wall_seconds"]
    cx_best = next((h for h in cx["history"] if h["epoch"] == cx["fit_info"]["best_epoch"]), None)
    return {
        "recbole_best_test_ndcg@10_masked": _r(rb_best_masked),
        "recbole_best_test_ndcg@10": _r(rb_best_native),
        "ctxrec_seconds_to_recbole_best_masked": t_masked,
        "ctxrec_epoch_to_recbole_best_masked": e_masked,
        "ratio_to_recbole_wall_masked": _r(t_masked / rb_wall) if t_masked is not None else None,
        "ctxrec_seconds_to_recbole_best": t_native,
        "ctxrec_epoch_to_recbole_best": e_native,
        "ratio_to_recbole_wall": _r(t_native / rb_wall) if t_native is not None else None,
        "recbole_elapsed_at_best_epoch": _r(best["elapsed"], 2),
        "recbole": {
            "epochs_run": len(rb["history"]), "best_epoch": rb["best_epoch"], "stopped_by": rb["stopped_by"],
            "seconds_per_epoch_median": _r(_median([h["train_seconds"] for h in rb["history"]]), 2),
            "test_ndcg@10": _r(rb["test_best"]["ndcg@10"]), "test_hr@10": _r(rb["test_best"]["hit@10"]),
            "test_ndcg@10_masked": _r(rb["test_best_own"]["masked_ndcg@10"]),
            "test_hr@10_masked": _r(rb["test_best_own"]["masked_hr@10"]),
            "fit_seconds": _r(rb["fit_seconds"], 2), "wall_seconds": rb_wall,
            "peak_rss_mib": rb_proc["time_v_peak_rss_mib"] or _r(rb["peak_rss_mib"], 1),
        },
        "ctxrec": {
            "epochs_run": len(cx["history"]), "best_epoch": cx["fit_info"]["best_epoch"],
            "stopped_by": cx["fit_info"]["stopped_by"],
            "seconds_per_epoch_median": _r(_median([h["train_seconds"] for h in cx["history"]]), 2),
            "test_ndcg@10": _r(cx["test_best_native"]["ndcg@10"]), "test_hr@10": _r(cx["test_best_native"]["hr@10"]),
            "test_ndcg@10_masked": _r(cx["test_best"]["ndcg@10"]), "test_hr@10_masked": _r(cx["test_best"]["hr@10"]),
            "best_epoch_monitor_ndcg@10": _r(cx_best.get("monitor_ndcg@10")) if cx_best else None,
            "fit_seconds": _r(cx["fit_seconds"], 2), "wall_seconds": cx_proc["wall_seconds"],
            "peak_rss_mib": cx_proc["time_v_peak_rss_mib"] or _r(cx["peak_rss_mib"], 1),
        },
    }


def write_markdown(folder: Path) -> Path:
    """RECBOLE.md from every recbole_vs_ctxrec_*.json in ``folder``."""
    rows = [json.loads(p.read_text()) for p in sorted(folder.glob("recbole_vs_ctxrec_*.json"))]
    out = ["# RecBole 1.2.1 SASRec vs ctxrec SASRec: training speed, same machine, same split", "",
           "Generated by `benchmarks/peer_recbole.py` from the JSON files in this folder; do not edit.",
           "Leave-one-out, full ranking over all items, test set. **masked** = each case's history removed",
           "from the ranking (ctxrec's evaluator; for RecBole computed from its own scores by the driver);",
           "RecBole's native evaluator masks only [PAD]. Time to RecBole's best: seconds from the start of",
           "ctxrec's training until its per-epoch test NDCG@10 first reaches RecBole's best-valid-epoch test",
           "NDCG@10 (masked vs masked; native RecBole value in brackets); ratio = that / RecBole's total wall.",
           ""]
    out.append("| dataset | system | epochs (best) | stop | s/epoch (median) | test NDCG@10 masked | HR@10 masked "
               "| test NDCG@10 native | HR@10 native | wall s | peak RSS MiB |")
    out.append("|---|---|---|---|---|---|---|---|---|---|---|")
    notes = []
    for r in rows:
        s = r["summary"]
        for name in ("recbole", "ctxrec"):
            x = s[name]
            out.append(f"| {r['dataset']} | {name} | {x['epochs_run']} ({x['best_epoch']}) | {x['stopped_by']} | "
                       f"{x['seconds_per_epoch_median']} | {x['test_ndcg@10_masked']} | {x['test_hr@10_masked']} | "
                       f"{x['test_ndcg@10']} | {x['test_hr@10']} | {x['wall_seconds']} | {x['peak_rss_mib']} |")
        t, ratio = s["ctxrec_seconds_to_recbole_best_masked"], s["ratio_to_recbole_wall_masked"]
        reach = (f"{t} s (epoch {s['ctxrec_epoch_to_recbole_best_masked']}), {ratio} of RecBole's wall"
                 if t is not None else "not reached")
        t2 = s["ctxrec_seconds_to_recbole_best"]
        reach2 = f"{t2} s, {s['ratio_to_recbole_wall']}" if t2 is not None else "not reached"
        m = r["machine"]
        notes.append(f"- **{r['dataset']}**: ctxrec reached RecBole's best test NDCG@10 "
                     f"{s['recbole_best_test_ndcg@10_masked']} in {reach} [native {s['recbole_best_test_ndcg@10']}: "
                     f"{reach2}]. Machine: {m.get('cpu')}, {m.get('cores')} cores, torch {m.get('torch')}. "
                     f"Command: `{r['command']}`")
    out += ["", *notes, ""]
    path = folder / "RECBOLE.md"
    path.write_text("\n".join(out))
    return path


# ---------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> dict[str, Any]:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--child-ctxrec"]:
        ctxrec_child(argv[1], argv[2])
        return {}
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", required=True, help="a ctxrec built-in dataset (ml-100k, ml-1m, ...)")
    ap.add_argument("--data-dir", default=None, help="ctxrec data directory (default $CTXREC_DATA)")
    ap.add_argument("--recbole-cap-seconds", type=float, default=900.0,
                    help="wall cap on RecBole's fit, checked after each epoch: it stops when the next epoch, "
                         "judged by the last one, would overrun (default 900)")
    ap.add_argument("--ctxrec-cap-seconds", type=float, default=None,
                    help="ctxrec's train.max_seconds (default: the RecBole cap)")
    ap.add_argument("--ctxrec-max-epochs", type=int, default=None, help="override ctxrec's train.max_epochs")
    ap.add_argument("--venv", type=Path, default=DEFAULT_VENV, help=f"RecBole's venv (default {DEFAULT_VENV})")
    ap.add_argument("--skip-install", action="store_true", help="fail instead of creating the venv")
    ap.add_argument("--out", type=Path, default=None,
                    help="result JSON (default benchmarks/results/peer/recbole_vs_ctxrec_<dataset>.json); "
                         "RECBOLE.md is regenerated beside it")
    ap.add_argument("--workdir", type=Path, default=None,
                    help="where the export, logs and RecBole's checkpoint go (default a new /tmp/ctxrec-peer-*)")
    ap.add_argument("--ctxrec-set", action="append", default=[], metavar="KEY=VALUE",
                    help="override ctxrec's SASRec config (e.g. train.batch_size=32); recorded in the output")
    ap.add_argument("--reuse-recbole", type=Path, default=None, metavar="RESULT_JSON",
                    help="reuse the RecBole half of an earlier result JSON for this dataset (RecBole's run is "
                         "seeded and deterministic) and rerun only ctxrec; the reuse is recorded in the output")
    args = ap.parse_args(argv)
    command = "python benchmarks/peer_recbole.py " + " ".join(shlex.quote(a) for a in argv)
    out = args.out or ROOT / "results" / "peer" / f"recbole_vs_ctxrec_{args.dataset}.json"
    work = args.workdir or Path(tempfile.mkdtemp(prefix=f"ctxrec-peer-{args.dataset}-"))
    if work.resolve().is_relative_to(ROOT.parent.resolve()):
        raise SystemExit(f"--workdir {work} is inside the repository; RecBole's files and the data must stay out of it")
    work.mkdir(parents=True, exist_ok=True)
    print(f"work folder: {work}", flush=True)

    python = ensure_venv(args.venv, skip_install=args.skip_install)

    from ctxrec.data.datasets import load_dataset
    from ctxrec.data.splits import leave_one_out
    from ctxrec.experiment import machine_description

    data = load_dataset(args.dataset, args.data_dir)
    split = leave_one_out(data)
    rb_name = f"ctxrec-{args.dataset}"  # not "ml-100k": RecBole would read its packaged copy instead
    inter = work / "data" / rb_name / f"{rb_name}.inter"
    export_atomic(data, inter)
    ours = ctxrec_targets(data, split)
    pre_check = compare_targets(ours, recbole_targets_from_file(inter))
    if not pre_check["equal"]:
        raise SystemExit(f"the export does not reproduce ctxrec's leave-one-out targets: {pre_check}")
    print(f"export {inter}: {data.n_events:,} rows; RecBole-rule targets equal ctxrec's "
          f"({pre_check['valid']['cases']} valid, {pre_check['test']['cases']} test)", flush=True)

    # RecBole
    prev = json.loads(args.reuse_recbole.read_text()) if args.reuse_recbole else None
    if prev is not None and prev["dataset"] != args.dataset:
        raise SystemExit(f"--reuse-recbole {args.reuse_recbole} is for {prev['dataset']!r}, not {args.dataset!r}")
    spec = {"dataset": rb_name, "data_path": str(work / "data"), "cap_seconds": args.recbole_cap_seconds,
            "config": {**RECBOLE_CONFIG, "checkpoint_dir": str(work / "saved")}}
    (work / "recbole_spec.json").write_text(json.dumps(spec, indent=1))
    rb_cwd = work / "recbole"
    rb_cwd.mkdir(exist_ok=True)
    if prev is not None:
        print(f"RecBole: reusing the run recorded in {args.reuse_recbole} ({prev['finished']})", flush=True)
        rb = {k: v for k, v in prev["recbole"].items() if k not in ("process", "venv", "requirements")}
        rb_proc = prev["recbole"]["process"]
        post_check = prev["split_check"]["from_recbole"]
    else:
        print(f"RecBole SASRec (cap {args.recbole_cap_seconds:.0f}s) ...", flush=True)
        rb_cmd = [str(python), str(DRIVER), str(work / "recbole_spec.json"), str(work / "recbole_result.json")]
        rb_proc = run_measured(rb_cmd, log=work / "recbole.log", cwd=rb_cwd, tag="driver")
        rb = json.loads((work / "recbole_result.json").read_text())
        theirs = {part: dict(map(tuple, rb.pop(f"{part}_targets"))) for part in ("valid", "test")}
        post_check = compare_targets(ours, theirs)

    # ctxrec
    cap = args.ctxrec_cap_seconds if args.ctxrec_cap_seconds is not None else args.recbole_cap_seconds
    cx_spec = {"dataset": args.dataset, "data_dir": args.data_dir,
               "config": ctxrec_config(args.dataset, max_epochs=args.ctxrec_max_epochs, cap_seconds=cap,
                                      overrides=args.ctxrec_set)}
    (work / "ctxrec_spec.json").write_text(json.dumps(cx_spec, indent=1))
    print(f"ctxrec SASRec (cap {cap:.0f}s) ...", flush=True)
    cx_cmd = [sys.executable, str(Path(__file__).resolve()), "--child-ctxrec",
              str(work / "ctxrec_spec.json"), str(work / "ctxrec_result.json")]
    cx_proc = run_measured(cx_cmd, log=work / "ctxrec.log", cwd=work, tag="ctxrec")
    cx = json.loads((work / "ctxrec_result.json").read_text())

    result = {
        "dataset": args.dataset,
        "command": command,
        "machine": machine_description(),
        "split_check": {"from_export": pre_check, "from_recbole": post_check},
        "summary": summarise(rb, cx, rb_proc, cx_proc),
        "recbole": {**rb, "process": rb_proc, "venv": str(args.venv), "requirements": REQUIREMENTS.name},
        "ctxrec": {**cx, "process": cx_proc},
        "workdir": str(work),
        "recbole_reused_from": None if prev is None else {"command": prev["command"], "finished": prev["finished"]},
        "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, default=str) + "\n")
    md = write_markdown(out.parent)
    s = result["summary"]
    print(json.dumps(dict(s.items()), indent=1))
    print(f"-> {out}\n-> {md}")
    if not post_check["equal"]:
        raise SystemExit(f"RecBole's own valid/test targets differ from ctxrec's: {post_check} (result kept in {out})")
    return result


if __name__ == "__main__":
    main()
