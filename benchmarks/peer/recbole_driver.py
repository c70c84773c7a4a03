"""RecBole 1.2.1 SASRec with per-epoch curves and a wall cap; run by benchmarks/peer_recbole.py.

Runs inside RecBole's own venv (not ctxrec's), so it imports nothing from ctxrec:

    <peer-venv>/bin/python recbole_driver.py SPEC.json RESULT.json

SPEC.json: {"dataset": name, "data_path": folder holding <name>/<name>.inter, "cap_seconds": s,
"config": RecBole config_dict}. The steps are those of ``recbole.quick_start.run_recbole`` (same
seeds, same call order), plus, after every epoch, RecBole's own test evaluation of the current
weights (``evaluate(test_data, load_best_model=False)``, RNG state saved and restored around it)
and a history-masked NDCG@10/HR@10 computed from the same scores, which is ctxrec's protocol
(ctxrec's evaluator drops each case's history from the ranking; RecBole's sequential full ranking
masks only [PAD]).

Patches, as in shared/notes/peer-recbole.md (RecBole's files are untouched):
  P1  torch.load(weights_only=False): RecBole's checkpoint pickles its Config; the file is the
      checkpoint this same run wrote.
  P2  autograd anomaly detection off before fit: importing recbole's sequential package turns it
      on for the whole process (sine.py); speed only, results are unchanged.
"""

from __future__ import annotations

import functools
import json
import math
import random
import resource
import sys
import time

T_START = time.perf_counter()

import numpy as np  # noqa: E402  (after T_START: the import time is part of what is measured)
import torch  # noqa: E402

torch.load = functools.partial(torch.load, weights_only=False)  # P1


MODEL_KEYS = ("n_layers", "n_heads", "hidden_size", "inner_size", "hidden_dropout_prob", "attn_dropout_prob",
              "hidden_act", "layer_norm_eps", "initializer_range", "loss_type", "MAX_ITEM_LIST_LENGTH")


class CapReached(Exception):
    """Raised from fit's per-epoch callback to stop at the wall cap."""


def _rng_state() -> tuple:
    return torch.get_rng_state(), np.random.get_state(), random.getstate()


def _set_rng_state(state: tuple) -> None:
    torch.set_rng_state(state[0])
    np.random.set_state(state[1])
    random.setstate(state[2])


def user_histories(dataset, uid_field: str, iid_field: str, time_field: str) -> dict[int, np.ndarray]:
    """Each user's items in RecBole's order (stable sort by time key, grouped by user)."""
    uid = dataset.inter_feat[uid_field].numpy()
    iid = dataset.inter_feat[iid_field].numpy()
    ts = dataset.inter_feat[time_field].numpy()
    order = np.lexsort((ts, uid))  # stable: ties keep file order, as RecBole's stable sort does
    uid, iid = uid[order], iid[order]
    cuts = np.flatnonzero(np.diff(uid)) + 1
    return {int(u[0]): items for u, items in zip(np.split(uid, cuts), np.split(iid, cuts), strict=True)}


@torch.no_grad()
def own_metrics(trainer, eval_data, histories: dict[int, np.ndarray], n_tail: int, uid_field: str) -> dict:
    """NDCG@10 / HR@10 from RecBole's scores, with and without masking each case's history.

    The history of a case is the user's sequence minus its last ``n_tail`` events (2 for valid,
    1 for test), the same items ctxrec's leave-one-out gives as the case's history."""
    trainer.model.eval()
    trainer.tot_item_num = eval_data._dataset.item_num
    out = {"native": [0.0, 0.0], "masked": [0.0, 0.0]}
    n = 0
    for batched in eval_data:
        interaction, scores, pos_u, pos_i = trainer._full_sort_batch_eval(batched)
        scores = scores.float().cpu()
        users = interaction[uid_field].cpu().numpy()
        rows, cols = [], []
        for r, u in enumerate(users):
            h = histories[int(u)][:-n_tail] if n_tail else histories[int(u)]
            rows.append(np.full(len(h), r))
            cols.append(h)
        masked = scores.clone()
        masked[torch.from_numpy(np.concatenate(rows)), torch.from_numpy(np.concatenate(cols))] = -math.inf
        for name, s in (("native", scores), ("masked", masked)):
            t = s[pos_u.cpu(), pos_i.cpu()]  # (B,) one target per case
            rank = (s[pos_u.cpu()] > t.unsqueeze(1)).sum(1).numpy()  # 0-based rank of the target
            hit = rank < 10
            out[name][0] += float(np.where(hit, 1.0 / np.log2(rank + 2.0), 0.0).sum())
            out[name][1] += float(hit.sum())
        n += len(users)
    return {f"{name}_{m}": v / n for name, (nd, hr) in out.items() for m, v in (("ndcg@10", nd), ("hr@10", hr))}


def eval_targets(eval_data, dataset, uid_field: str, iid_field: str) -> list[list[str]]:
    """(user token, target item token) of every case, to compare with ctxrec's split."""
    feat = eval_data._dataset.inter_feat
    users = dataset.id2token(uid_field, feat[uid_field].numpy())
    items = dataset.id2token(iid_field, feat[iid_field].numpy())
    return [[str(u), str(i)] for u, i in zip(users, items, strict=True)]


def main(spec_path: str, result_path: str) -> None:
    from logging import getLogger

    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.data.transform import construct_transform
    from recbole.utils import get_flops, get_model, get_trainer, init_logger, init_seed

    with open(spec_path) as f:
        spec = json.load(f)
    cap = float(spec["cap_seconds"])
    cfg = dict(spec["config"], data_path=spec["data_path"])
    config = Config(model="SASRec", dataset=spec["dataset"], config_dict=cfg)
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    logger = getLogger()
    logger.info(config)

    t_data = time.perf_counter()
    dataset = create_dataset(config)
    logger.info(dataset)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    data_seconds = time.perf_counter() - t_data
    uid_f, iid_f, time_f = config["USER_ID_FIELD"], config["ITEM_ID_FIELD"], config["TIME_FIELD"]
    hist = user_histories(dataset, uid_f, iid_f, time_f)

    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    logger.info(model)
    flops = get_flops(model, dataset, config["device"], logger, construct_transform(config))
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)

    # Per-epoch timing: wrap the trainer's own epoch functions (fit's logic is untouched).
    epoch_log: list[dict] = []
    pending: dict = {}
    orig_train, orig_valid = trainer._train_epoch, trainer._valid_epoch

    def timed_train(*a, **k):
        t = time.perf_counter()
        loss = orig_train(*a, **k)
        pending.update(train_seconds=time.perf_counter() - t, loss=float(loss))
        return loss

    def timed_valid(*a, **k):
        t = time.perf_counter()
        score, result = orig_valid(*a, **k)
        pending.update(valid_seconds=time.perf_counter() - t, **{f"valid_{k_}": float(v) for k_, v in result.items()})
        return score, result

    trainer._train_epoch, trainer._valid_epoch = timed_train, timed_valid

    def after_epoch(epoch_idx: int, valid_score: float) -> None:
        t = time.perf_counter()
        state = _rng_state()
        test = trainer.evaluate(test_data, load_best_model=False, show_progress=False)
        own = own_metrics(trainer, test_data, hist, 1, uid_f)
        _set_rng_state(state)
        rec = {"epoch": epoch_idx, **pending, **{f"test_{k}": float(v) for k, v in test.items()},
               **{f"test_own_{k}": v for k, v in own.items()}, "test_seconds": time.perf_counter() - t,
               "elapsed": time.perf_counter() - t_fit}
        pending.clear()
        epoch_log.append(rec)
        print(f"[driver] epoch {epoch_idx}: train {rec['train_seconds']:.1f}s loss {rec['loss']:.4f} "
              f"valid ndcg@10 {valid_score:.4f} test ndcg@10 {rec['test_ndcg@10']:.4f} "
              f"(masked {own['masked_ndcg@10']:.4f}) elapsed {rec['elapsed']:.0f}s", flush=True)
        last = rec["elapsed"] - (epoch_log[-2]["elapsed"] if len(epoch_log) > 1 else 0.0)
        if rec["elapsed"] + last > cap:  # the next epoch, judged by this one, would overrun the cap
            raise CapReached

    torch.autograd.set_detect_anomaly(False)  # P2
    assert not torch.is_anomaly_enabled()
    t_fit = time.perf_counter()
    stopped_by = "early_stopping"
    try:
        trainer.fit(train_data, valid_data, saved=True, show_progress=config["show_progress"], callback_fn=after_epoch)
    except CapReached:
        stopped_by = "wall_cap"
    fit_seconds = time.perf_counter() - t_fit
    if stopped_by == "early_stopping" and len(epoch_log) >= config["epochs"]:
        stopped_by = "max_epochs"

    # As run_recbole: test the best-validation checkpoint.
    test_result = trainer.evaluate(test_data, load_best_model=True, show_progress=False)
    own_best = own_metrics(trainer, test_data, hist, 1, uid_f)
    best_epoch = max(range(len(epoch_log)), key=lambda i: (epoch_log[i]["valid_ndcg@10"], i))
    # (RecBole's early_stopping counts a tie with the best as a new best, so the last tied epoch wins.)
    result = {
        "recbole_version": __import__("recbole").__version__,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "anomaly_detection": torch.is_anomaly_enabled(),
        "patches": ["P1 torch.load weights_only=False", "P2 set_detect_anomaly(False) before fit"],
        "config": {k: config[k] for k in (*sorted(cfg), *MODEL_KEYS)},
        "n_params": n_params,
        "flops": float(flops),
        # sequence_samples: one per event with at least one event before it (RecBole's augmentation)
        "counts": {"users": dataset.user_num - 1, "items": dataset.item_num - 1, "sequence_samples": dataset.inter_num,
                   "train_samples": len(train_data._dataset), "valid_cases": len(valid_data._dataset),
                   "test_cases": len(test_data._dataset)},
        "valid_targets": eval_targets(valid_data, dataset, uid_f, iid_f),
        "test_targets": eval_targets(test_data, dataset, uid_f, iid_f),
        "history": epoch_log,
        "best_epoch": epoch_log[best_epoch]["epoch"],
        "stopped_by": stopped_by,
        "test_best": {k: float(v) for k, v in test_result.items()},
        "test_best_own": own_best,
        "data_seconds": data_seconds,
        "fit_seconds": fit_seconds,
        "driver_seconds": time.perf_counter() - T_START,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    with open(result_path, "w") as f:
        json.dump(result, f, indent=1, default=str)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
