"""SASRec trained with full softmax cross-entropy ("SASRec+", Klenitskiy & Vasilev 2023).

A causal Transformer over the item sequence; the hidden state at position t scores the whole
catalogue through the (tied) item embedding table to predict item t+1. ID-only and context-blind:
the baseline every ctxrec model is measured against.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal

import numpy as np
import torch
from torch import nn

from ctxrec.models.base import QueryBatch, Recommender
from ctxrec.models.layers import CausalBlock, check_transformer_shape, state_chunks
from ctxrec.models.losses import full_ce, sampled_ce
from ctxrec.training.loop import TrainConfig, pick_device

if TYPE_CHECKING:
    from ctxrec.data.dataset import Dataset
    from ctxrec.data.splits import EvalSet


@dataclass(frozen=True, kw_only=True)
class SASRecConfig:
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 1
    d_ff: int | None = None
    """Feed-forward width; defaults to ``d_model`` as in the original SASRec."""
    max_len: int = 200
    """Only the last ``max_len`` events of a history are read."""
    dropout: float = 0.2
    loss: Literal["ce", "sampled"] = "ce"
    n_negatives: int = 1024
    """Negatives per step when ``loss="sampled"``."""
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        check_transformer_shape(d_model=self.d_model, n_layers=self.n_layers, n_heads=self.n_heads,
                                max_len=self.max_len, dropout=self.dropout, d_ff=self.d_ff)


class SASRecNet(nn.Module):
    """Item embedding (row 0 = padding) + learned positions + causal blocks -> hidden states."""

    def __init__(self, n_items: int, cfg: SASRecConfig) -> None:
        super().__init__()
        d = cfg.d_model
        self.item_emb = nn.Embedding(n_items + 1, d, padding_idx=0)
        self.pos_emb = nn.Embedding(cfg.max_len, d)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(CausalBlock(d, cfg.n_heads, cfg.d_ff or d, cfg.dropout) for _ in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(d)
        nn.init.normal_(self.item_emb.weight, std=0.02)
        nn.init.normal_(self.pos_emb.weight, std=0.02)

    def forward(self, seq: torch.Tensor) -> torch.Tensor:  # seq (B, T) right-padded with 0
        x = self._tokens(seq)
        for block in self.blocks:
            x = block(x)
        return self.ln_f(x)  # (B, T, D)

    def forward_last(self, seq: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """``forward(seq)[arange(B), pos]`` (B, D) in eval mode, the last block at ``pos`` (B,) only."""
        x = self._tokens(seq)
        *first, last = self.blocks
        for block in first:
            x = block(x)
        assert isinstance(last, CausalBlock)
        return self.ln_f(last.forward_at(x, pos))

    def _tokens(self, seq: torch.Tensor) -> torch.Tensor:  # (B, T) -> (B, T, D)
        T = seq.shape[1]
        x = self.item_emb(seq) * math.sqrt(self.item_emb.embedding_dim) + self.pos_emb.weight[:T]
        return self.drop(x) * (seq > 0).unsqueeze(-1)


def right_pad(seqs: list[np.ndarray], max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Last ``max_len`` items of each sequence, left-aligned and right-padded with 0.
    Returns the (B, T) array (T = longest kept length) and the lengths (B,)."""
    kept = [s[-max_len:] for s in seqs]
    lens = np.fromiter((len(s) for s in kept), dtype=np.int64, count=len(kept))
    out = np.zeros((len(kept), max(1, int(lens.max()) if kept else 1)), dtype=np.int64)
    for i, s in enumerate(kept):
        out[i, : len(s)] = s
    return out, lens


class SASRecRecommender(Recommender):
    """ID-only sequential baseline. Users with no history get train popularity (documented fallback)."""

    kind = "sasrec"
    config_class: ClassVar[type] = SASRecConfig
    context_blind = True
    supports_state = True  # the user vector (Recommender.encode_state's default)
    supports_warm_start = reads_with_encoders_of = True  # item ids are its only encoding (given by the data's vocabulary)

    def __init__(self, config: SASRecConfig | None = None) -> None:
        super().__init__(config)
        self.net: SASRecNet | None = None
        self.popularity: np.ndarray | None = None
        self.device = torch.device("cpu")

    # -------------------------------------------------------------------------------- training
    def _fit(self, data: Dataset, *, valid: EvalSet | None, run_dir: Path | None) -> None:
        from ctxrec.evaluation.evaluator import validation_fn
        from ctxrec.training.batching import length_bucketed_batches
        from ctxrec.training.loop import train_loop

        cfg, tc = self.config, self.config.train
        torch.manual_seed(tc.seed)
        self.device = pick_device(tc.device)
        self.popularity = np.bincount(data.item_idx, minlength=data.n_items).astype(np.float32)
        self.net = SASRecNet(data.n_items, cfg).to(self.device)
        seqs = [s + 1 for s in data.sequences() if len(s) >= 2]  # shift: 0 is padding
        counts = np.bincount(data.item_idx + 1, minlength=data.n_items + 1).astype(np.float64) + 1.0
        counts[0] = 0.0
        with np.errstate(divide="ignore"):  # log 0 = -inf for padding: never sampled
            log_q = torch.tensor(np.log(counts / counts.sum()), dtype=torch.float32, device=self.device)
        gen = torch.Generator(device=self.device).manual_seed(tc.seed)
        net = self.net

        lengths = np.array([min(len(s) - 1, cfg.max_len) for s in seqs])

        def batches(rng: np.random.Generator) -> Iterator[dict[str, torch.Tensor]]:
            for chosen in length_bucketed_batches(lengths, tc.batch_size, rng, tc.length_pool):  # 1: random
                chunk = [seqs[i][-(cfg.max_len + 1) :] for i in chosen]
                inp, _ = right_pad([c[:-1] for c in chunk], cfg.max_len)
                tgt, _ = right_pad([c[1:] for c in chunk], cfg.max_len)
                yield {"inp": torch.from_numpy(inp), "tgt": torch.from_numpy(tgt)}  # CPU; train_loop moves (pinned on CUDA)

        def loss_fn(batch: dict[str, torch.Tensor]) -> torch.Tensor:
            h = net(batch["inp"])  # (B, T, D)
            mask = batch["tgt"] > 0
            hidden, targets = h[mask], batch["tgt"][mask]  # (N, D), (N,)
            if cfg.loss == "ce":
                return full_ce(hidden, net.item_emb.weight, targets)
            return sampled_ce(hidden, net.item_emb.weight, targets, n_negatives=cfg.n_negatives, log_q=log_q, generator=gen)

        evaluate = validation_fn(self, valid, self._monitor, exclude_seen=not self.keeps_seen)

        n_batches = math.ceil(len(seqs) / tc.batch_size)
        result = train_loop(net, batches=batches, loss_fn=loss_fn, evaluate=evaluate, cfg=tc, run_dir=run_dir,
                            n_batches=n_batches, initial=self._warm_start)
        net.eval()
        self.fit_info = {"best_epoch": result.best_epoch, "best_valid": result.best_score,
                         "epochs_run": result.epochs_run, "train_seconds": result.seconds,
                         "stopped_by": result.stopped_by, "history": result.history}

    # -------------------------------------------------------------------------------- inference
    @torch.no_grad()
    def user_vectors(self, histories: list[np.ndarray]) -> torch.Tensor:
        """(B, D) hidden state after the last history item (zeros for an empty history); histories in
        :func:`~ctxrec.models.layers.state_chunks` (similar lengths, bounded positions per forward)."""
        assert self.net is not None
        self.net.eval()
        seqs = [h + 1 for h in histories]
        out = torch.zeros(len(seqs), self.config.d_model, device=self.device)
        for rows in state_chunks([min(len(s), self.config.max_len) for s in seqs]):
            inp, lens = right_pad([seqs[i] for i in rows], self.config.max_len)
            h = self.net.forward_last(torch.from_numpy(inp).to(self.device),
                                      torch.from_numpy(np.maximum(lens - 1, 0)).to(self.device))  # (b, D)
            out[torch.as_tensor(rows, device=self.device)] = h.float() * torch.from_numpy(lens > 0).to(self.device).unsqueeze(-1)
        return out

    @torch.no_grad()
    def _score(self, batch: QueryBatch) -> np.ndarray:
        assert self.net is not None and self.popularity is not None
        vec = self.user_vectors(batch.histories)
        scores = (vec @ self.net.item_emb.weight[1:].T).float().cpu().numpy()  # (B, n_items)
        empty = np.array([len(h) == 0 for h in batch.histories])
        if empty.any():
            scores[empty] = self.popularity / max(1.0, float(self.popularity.max()))
        return scores

    def user_embeddings(self, batch: QueryBatch) -> np.ndarray:
        """Dot-product form of ``_score`` for approximate retrieval (non-empty histories)."""
        return self.user_vectors(batch.histories).float().cpu().numpy()

    def item_embeddings(self) -> np.ndarray:
        assert self.net is not None
        return self.net.item_emb.weight[1:].detach().float().cpu().numpy()

    # -------------------------------------------------------------------------------- persistence
    def _state(self) -> dict[str, np.ndarray]:
        assert self.net is not None and self.popularity is not None
        state = {f"net.{k}": v.detach().cpu().numpy() for k, v in self.net.state_dict().items()}
        state["popularity"] = self.popularity
        return state

    def _load_state(self, state: dict[str, np.ndarray]) -> None:
        self.popularity = state.pop("popularity")
        self.net = SASRecNet(len(self.popularity), self.config)
        self.net.load_state_dict({k[4:]: torch.from_numpy(v) for k, v in state.items()})
        self.net.eval()
