"""The fusion model's settings. Every ``use_*`` flag is an ablation switch.

Options measured not to help were removed in the redesign of issue 17 (their rows stay in
``benchmarks/results/amazon-scientific/ablations/ABLATIONS.md``): ``label_smoothing`` (0.1 / 0.3:
-1.5% / -3.4% NDCG@10), ``contrastive`` (0.1 / 0.3: -3.6% / -6.4%), the ``mlp`` and ``moe`` text
adapters (-4.2% / -3.3%) and ``cold_prior`` (cold-target Recall@10 0.0473 vs 0.0511 without it,
within noise: ``COLD_START.md``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ctxrec.context import ContextConfig
from ctxrec.errors import ConfigError
from ctxrec.models.layers import check_transformer_shape
from ctxrec.text.encoders import TextEncoderConfig
from ctxrec.text.templates import TextTemplateConfig
from ctxrec.training.loop import TrainConfig


@dataclass(frozen=True, kw_only=True)
class FusionConfig:
    """The fusion model. Every ``use_*`` flag is an ablation switch."""

    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 1
    max_len: int = 200
    dropout: float = 0.2
    attention_dropout: float | None = None
    """Dropout on the attention weights; None = ``dropout``. 0 lets CPU attention use its fused kernel:
    on ml-1m (d 256, 4 heads, 200 positions, bf16) a training step took 2.25 s instead of 3.0 s and peaked
    at 3.1 instead of 4.1 GiB (benchmarks/results/ml-1m/STEP_COST.md). Quality: on amazon-scientific (the
    headline config, 3 seeds) 0 gave NDCG@10 0.0891 +- 0.0006 against 0.0895 +- 0.0003 (within noise) and
    no speed-up at 50 positions; not yet measured on ml-1m, so the default is unchanged."""
    use_id: bool = True
    """Learned ID embedding per item (items without one rely on text and attributes)."""
    use_text: bool | Literal["auto"] = "auto"
    """Frozen language-model embedding of the item text, through a learned linear projection; ``"auto"``
    (default): with and without, each trained ``auto_epochs`` epochs, and the better on validation goes on
    (models/fusion/auto.py; the choice is in ``fit_info["auto"]`` and the saved config). It carries
    items without events (cold start) and helps where the text says what IDs cannot learn
    (amazon-scientific +9% NDCG@10 from text alone; +0.6% once brand and category are attributes too); on
    ml-1m (titles + genres beside genre attributes) it cost 6.6% at a 10-minute budget, and at the full
    budget the model without it led on validation at 21 of 22 epochs (benchmarks/results/ml-1m/text/).
    (A residual MLP and a UniSRec-style MoE adapter on top of the projection were
    measured and removed: -4.2% and -3.3% NDCG@10 on amazon-scientific.)"""
    use_attributes: bool = True
    use_context: bool = True
    """Per-event and request-time context (fields and time features) and the context view."""
    event_context: bool = True
    """Add each history event's context to its token (else context enters only at request time)."""
    context_dropout: float = 0.3
    """Training-time probability of hiding a position's whole context vector (robustness to noise)."""
    context_head: bool = True
    """Fit a context prior P_ctx(item | context) after training (``context_head.py``: its own field
    embeddings and MLP against the fixed item table, the network frozen) and answer requests with no
    history, no profile and no text query with it; every other answer is unchanged. Without it such a
    request gets the BOS state modulated by the context view, which trains only on each user's first
    event (frappe anonymous NDCG@10: 0.19, below per-context popularity's 0.22)."""
    context_prior_weight: float | None = None
    """With ``context_head``: weight w of the context prior in every answer that has a history,
    (1 - w) P(i | x, c) + w P_ctx(i | c); 0 = only context-only requests use it; None = chosen on the
    validation cases from ``context_head.PRIOR_WEIGHTS``."""
    use_profile: bool = True
    """The profile view from user fields / user text, where the dataset has them."""
    mixture: bool | Literal["auto"] = "auto"
    """The seed's mixture of per-view softmaxes, P(i) = sum_j w_j softmax_j(i); False = one softmax over
    the gate-weighted sum of the views; ``"auto"`` (default): decided on validation like ``use_text``, and
    taken only when it leads by ``auto.AUTO_MARGIN``. At d 64 on ml-1m a mixture training step costs 2.1x one
    softmax's (3.3 against 1.6 s per 128 users at one thread; 3.2x before the loss became a fused
    cross-entropy per view row). Its cost, measured on ml-1m (three views, d 256,
    benchmarks/results/ml-1m/ablations/ABLATIONS.md): 1.5x slower per epoch, +0.5% validation NDCG@10 at
    equal epochs, -5.8% test NDCG@10 at equal time (10 minutes), so the ml-1m benchmark turns it off.
    Where it helps: at equal epochs it is slightly ahead (ml-1m), and the per-view shares of each item's
    probability that ``explain`` returns decompose the scored probability exactly only under the mixture.
    With one view (amazon-scientific: no context fields, no profile) both give the same figures (+0.0%),
    the mixture at 1.2x the time per epoch (5.78 vs 4.92 s)."""
    auto_epochs: int = 3
    """Epochs of each pilot run that decides the ``"auto"`` fields (one pilot per combination)."""
    id_dropout: float | Literal["auto"] = "auto"
    """Probability, per training step and item, of hiding the item's ID embedding, so that the text and
    attribute part of an item vector learns to stand alone (items without training events have only that
    part). ``"auto"`` (default): 0.8 when at least ``auto.COLD_CATALOGUE_SHARE`` (1%) of the catalogue has no
    training events -- items the model must rank from their content -- else 0.1, decided with
    ``temperature`` and ``cold_ids`` (``auto.COLD_SETTINGS``); ``fit_info["auto"]["cold_start"]`` says which
    and why. Measured on amazon-scientific with 10% of the items cold
    (benchmarks/results/amazon-scientific/COLD_START.md): 0.8 against 0.1 raised cold-target Recall@10 from
    0.034 to 0.060 (cold/warm 0.25 -> 0.45) with warm-target NDCG@10 unchanged (0.0890 / 0.0891). The
    leave-one-out benchmarks have 0-0.3% of the catalogue without training events and keep the warm settings.
    A model that will receive new items at serving time (``POST /v1/items``) and has none in its training
    catalogue should set the three itself (``id_dropout=0.8``, ``temperature=0.07``, ``cold_ids="neighbours"``)."""
    id_scale: float = 1.0
    """Multiplier of the ID part of item vectors at inference (training always uses 1). Below 1 pulls warm
    items towards their text/attribute vectors, which items without an ID embedding have alone (with a
    high ``id_dropout`` the model mostly trained on such vectors). ``FusionRecommender.set_inference``
    changes it on a fitted model without retraining; ``benchmarks/cold_start.py --id-scales`` measures it.
    Measured on amazon-scientific (id_dropout 0.8): scales 0.25-0.75 raised warm-target recall and lowered
    cold-target recall; 0 (no ID part) gave the highest cold/warm ratio at a 4% warm cost."""
    cold_ids: Literal["auto", "none", "neighbours"] = "auto"
    """Inference-time ID part for items without an ID embedding (no training events, or added at serving
    time). ``neighbours``: the similarity-weighted mean ID part of the ``cold_id_neighbours`` items with one
    whose frozen text vectors are closest (cosine), so a new item borrows the collaborative signal of the
    items its text resembles. Set when fitting, training builds the same rows: an item whose ID part
    ``id_dropout`` drops takes its text neighbours' mean ID part instead of none (never its own), so the model
    learns to rank exactly what a cold item will be (amazon-scientific, 10% cold, 3 training seeds: cold/warm
    Recall@10 0.71 +- 0.12 -> 0.75 +- 0.05, cold 0.090 -> 0.098, warm unchanged; about 10 ms per step at 4.4k
    items on one core; catalogues above ``net.TRAIN_NEIGHBOURS_MAX_ITEMS`` train with none).
    ``FusionRecommender.set_inference`` switches it on a fitted model (inference only). ``"auto"`` (default):
    ``neighbours`` where the catalogue has cold items (as ``id_dropout``). It pays with cosine scoring (library
    defaults + ``temperature=0.07``: cold/warm Recall@10 0.64 -> 0.82, one model) and not with raw dot products
    (id_dropout 0.8: 0.45 -> 0.33), so the two are switched on together."""
    cold_id_neighbours: int = 10
    """Neighbours of ``cold_ids="neighbours"``. amazon-scientific: 3 keeps warm items nearly as they were
    (cold/warm Recall@10 0.77, warm -1.7%), 10 lifts cold items most (0.94, warm -6%), 30 is like 10."""
    unseen_negatives: bool = False
    """Score catalogue items that have no training events as negatives in the training softmax. Off by
    default: nobody could choose an item that was not yet on offer, so its absence is no evidence against
    it, and pushing such items down at every step teaches the text projection that their kind of text is
    never chosen -- which is exactly what cold start must not learn."""
    text: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    item_text: TextTemplateConfig = field(default_factory=TextTemplateConfig)
    user_text: TextTemplateConfig = field(default_factory=TextTemplateConfig)
    context: ContextConfig = field(default_factory=ContextConfig)
    item_vectors: str | None = None
    """Precomputed item vectors (image embeddings, for instance) joining as one more modality: a Parquet
    file with ``item_id`` and ``vector`` (list) columns, or an ``.npz`` with ``ids`` and ``vectors``."""
    lexical_dim: int = 0
    """Lexical item vectors of this many dimensions (0 = none): TF-IDF over the rendered item text's word 1-2
    and character 3-5 grams, reduced by a truncated SVD (``ctxrec.text.lexical``), fitted on the catalogue's
    text at fit time and joining the item table like ``item_vectors``; items added at serving time get theirs
    from the saved n-grams and projection. They keep the exact tokens a sentence encoder blurs (model numbers,
    sizes, brand spellings). amazon-scientific, headline config, 3 seeds: NDCG@10 0.0918 with 256 against
    0.0895 with MiniLM alone (+2.6%) and 0.0869 without text. Off by default until measured on more than that
    one catalogue; the saved model holds the SVD components (about 58 MB for amazon-scientific's 56k n-grams
    at 256 dimensions)."""
    temperature: float | Literal["auto"] | None = "auto"
    """Score items by cosine similarity / temperature (e.g. 0.07) instead of raw dot products (None).
    ``"auto"`` (default): 0.07 where the catalogue has cold items (as ``id_dropout``), else None. Unit vectors
    keep an ID-less item's vector on the scale of the trained ones: with 10% of amazon-scientific cold,
    cold/warm Recall@10 0.45 -> 0.64 at warm-target NDCG@10 -4.7% (0.0890 -> 0.0848), and validation Recall@10
    -3.3%: the price of reaching the cold items, paid only where there are some. Where every item is warm, raw
    dot products measured best (leave-one-out amazon-scientific: cosine -7% NDCG@10)."""
    query_weight: float = 0.5
    """A request with a text query is scored ``P(i) = (1 - query_weight) P_model(i) + query_weight
    P_text(i)``: the model's distribution (every view, as without text) mixed with a text-match distribution
    over the catalogue (``query_temperature``)."""
    query_temperature: float = 0.05
    """``P_text(i) = softmax_i(cos(q, t_i) / query_temperature)``, cosine between the query's and item i's
    frozen language-model vectors. At 0.05 a cosine lead of 0.15 is a factor e^3 = 20: an exact title
    outranks near matches, while many similar matches (a vague query) leave the model's preference to
    order them."""
    loss: Literal["auto", "ce", "sampled"] = "auto"
    sampled_above: int = 50_000
    """With ``loss="auto"``: full softmax up to this catalogue size, sampled softmax above it."""
    n_negatives: int = 2048
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        check_transformer_shape(d_model=self.d_model, n_layers=self.n_layers, n_heads=self.n_heads,
                                max_len=self.max_len, dropout=self.dropout)
        for name in ("use_text", "mixture"):
            if getattr(self, name) not in (True, False, "auto"):
                raise ConfigError(f"{name} must be true, false or \"auto\", got {getattr(self, name)!r}")
        if self.attention_dropout is not None and not 0.0 <= self.attention_dropout < 1.0:
            raise ConfigError(f"attention_dropout must be in [0, 1) or None (the same as dropout), got {self.attention_dropout}")
        if self.auto_epochs < 1:
            raise ConfigError(f"auto_epochs must be >= 1, got {self.auto_epochs}")
        drop: object = self.id_dropout  # a TOML/CLI value may be any type
        if drop != "auto" and not (isinstance(drop, (int, float)) and not isinstance(drop, bool) and 0.0 <= drop < 1.0):
            raise ConfigError(f'id_dropout must be in [0, 1) or "auto", got {self.id_dropout!r}')
        if not 0.0 <= self.id_scale <= 1.0:
            raise ConfigError(f"id_scale must be in [0, 1] (1 = the ID part as trained), got {self.id_scale}")
        if self.cold_ids not in ("auto", "none", "neighbours"):
            raise ConfigError(f"cold_ids must be 'auto', 'none' or 'neighbours', got {self.cold_ids!r}")
        t: object = self.temperature
        if not (t is None or t == "auto" or (isinstance(t, (int, float)) and not isinstance(t, bool) and t > 0)):
            raise ConfigError(f'temperature must be > 0 (e.g. 0.07, cosine scoring), None (dot products) or "auto", got {t!r}')
        if self.context_prior_weight is not None and not 0.0 <= self.context_prior_weight < 1.0:
            raise ConfigError(f"context_prior_weight must be in [0, 1) or None (chosen on validation), got {self.context_prior_weight}")
        if self.lexical_dim < 0:
            raise ConfigError(f"lexical_dim must be >= 0 (0 = no lexical vectors, e.g. 256), got {self.lexical_dim}")
        if self.cold_id_neighbours < 1:
            raise ConfigError(f"cold_id_neighbours must be >= 1, got {self.cold_id_neighbours}")
        if not 0.0 <= self.query_weight <= 1.0:
            raise ConfigError(f"query_weight must be in [0, 1] (a mixture weight), got {self.query_weight}")
        if not self.query_temperature > 0.0:
            raise ConfigError(f"query_temperature must be > 0 (e.g. 0.05), got {self.query_temperature}")

    @property
    def id_dropout_value(self) -> float:
        """``id_dropout`` once fit has decided it (``"auto"`` is resolved from the catalogue before training)."""
        if self.id_dropout == "auto":
            raise ConfigError('id_dropout="auto" is decided when the model is fitted; fit it first')
        return float(self.id_dropout)

    @property
    def temperature_value(self) -> float | None:
        """``temperature`` once fit has decided it (``"auto"`` is resolved from the catalogue before training)."""
        if self.temperature == "auto":
            raise ConfigError('temperature="auto" is decided when the model is fitted; fit it first')
        return None if self.temperature is None else float(self.temperature)

    @property
    def mixture_on(self) -> bool:
        """``mixture`` once fit has decided it (a fitted or loaded model never holds ``"auto"``)."""
        if self.mixture == "auto":
            raise ConfigError('mixture="auto" is decided when the model is fitted; fit it first')
        return self.mixture


RETIRED_OPTIONS: dict[str, object] = {
    "label_smoothing": 0.0, "contrastive": 0.0, "contrastive_temperature": 0.1, "cold_prior": "none",
    "cold_prior_min_cases": 20, "text_adapter": "linear", "n_experts": 4,
    "window": "last",  # removed in session 27 (random training windows: no gain over 3 paired ml-1m seeds)
}
"""Options removed because they measured no gain (the redesign of issue 17, and later), with the value that
meant "off" (the behaviour that stayed). A model saved before then names them in its config.json;
``FusionRecommender.load`` says which to delete."""
