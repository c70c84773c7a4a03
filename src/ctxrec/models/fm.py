"""Factorisation-machine baselines: FM (Rendle 2010) and DeepFM (Guo et al. 2017), one config switch.

Plain ID features only -- user, item, the request context fields (and, for ranking a catalogue from a
given history, the mean of the history items' embeddings; ``use_history``). No text and no item
attributes: these are the CTR-literature baselines the pointwise scorer (``ctxrec.models.pointwise``)
is compared with. Same training (binary log loss on positives + sampled negatives, or
``fit_labelled`` on an explicit labelled table), same inference and persistence.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

from ctxrec.context import ContextConfig
from ctxrec.errors import ConfigError
from ctxrec.models.pointwise import PointwiseConfig, PointwiseRecommender, refuse_length_pool
from ctxrec.training.loop import TrainConfig


@dataclass(frozen=True, kw_only=True)
class FMConfig:
    """FM / DeepFM on ID features."""

    variant: Literal["fm", "deepfm"] = "fm"
    """``fm``: first order + pairwise factorised interactions; ``deepfm``: FM + an MLP over the fields."""
    d_field: int = 10
    mlp: tuple[int, ...] = (400, 400, 400)
    dropout: float = 0.2
    batch_norm: bool = False
    use_user: bool = True
    use_history: bool = True
    max_history: int = 50
    use_profile: bool = True
    use_context: bool = True
    n_negatives: int = 4
    emb_l2: float = 0.0
    emb_l2_scope: Literal["batch", "table"] = "batch"
    init_std: float = 0.01
    context: ContextConfig = field(default_factory=ContextConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        if self.variant not in ("fm", "deepfm"):
            raise ConfigError(f"FMConfig.variant must be 'fm' or 'deepfm', got {self.variant!r}")
        refuse_length_pool(self.train)


class FMRecommender(PointwiseRecommender):
    """FM or DeepFM (``variant``) on user, item and context IDs."""

    kind = "fm"
    config_class: ClassVar[type] = FMConfig

    def _opts(self) -> PointwiseConfig:
        c = self.config
        assert isinstance(c, FMConfig)
        return PointwiseConfig(
            d_field=c.d_field, head=c.variant, mlp=c.mlp, dropout=c.dropout, batch_norm=c.batch_norm,
            use_user=c.use_user, use_history=c.use_history, max_history=c.max_history, use_profile=c.use_profile,
            use_context=c.use_context, use_id=True, use_text=False, use_attributes=False,
            n_negatives=c.n_negatives, emb_l2=c.emb_l2, emb_l2_scope=c.emb_l2_scope, init_std=c.init_std, context=c.context, train=c.train,
        )
