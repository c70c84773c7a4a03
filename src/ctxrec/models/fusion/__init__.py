"""The ctxrec fusion recommender: text + behaviour + context in one Transformer, with attention over views.

Per event, a token is the item's representation (a learned projection of its frozen language-model
text embedding + its attribute embeddings + an ID embedding when it has one) plus the event's context
(categorical/numeric fields and cyclic time features) and its position. A causal Transformer reads the
sequence, which starts with a learned BOS token so that an empty history (a new user) still has a state.

At the position that predicts the next item, several *views* of the user each score the whole catalogue
through the same item table ``E`` (g(H) = H E^T):

* ``sequence``: the Transformer state H_t;
* ``context``: H_t fused with the request-time context c (context and time of the request);
* ``profile``: the user's profile fields (demographics, user text) when the data has them;
* ``query``: a free-text query embedded by the same language model, when a request gives one.

An attention gate conditioned on the request-time context (and H_t) gives weights w_j, and the model is
the mixture ``P(y | x, c) = sum_j w_j softmax(H_j E^T)`` (or one softmax over the weighted views,
``mixture=False``), trained with cross-entropy (full softmax, or a sampled softmax with log-Q correction
above ``sampled_above`` items). The weights w_j and each view's share of an item's probability are
returned as explanations. Every part has an ablation switch.

A request with nothing but a context (no history, no profile, no text query) is answered by a context
prior P_ctx(i | c) fitted after the network on the frozen item table (``context_head``), which answers
with a history also mix in at a weight chosen on validation (``context_prior_weight``).

Items never seen in training are recommendable from their text and attributes alone: ID embeddings are
dropped at random in training (``id_dropout``) so the text/attribute part of an item vector carries the
signal on its own.

Layout: ``config`` (FusionConfig), ``net`` (NetSpec, FusionNet, the heads and losses), ``batches``
(events and queries -> tensors, the one context encoding), ``context_head`` (the context prior: its
module, fit and the anonymous-request rule), ``recommender`` (FusionRecommender: fit,
score, add_items, persistence), ``explain`` (view shares, context and history attribution). Item and
user features shared with the pointwise model are in ``ctxrec.models.features``.
"""

from ctxrec.models.fusion.config import FusionConfig
from ctxrec.models.fusion.net import (
           FusionNet,
           NetSpec,
           TextAdapter,
           mixture_log_probs,
           mixture_nll,
           sampled_mixture_nll,
)
from ctxrec.models.fusion.recommender import FusionRecommender

__all__ = ["FusionConfig", "FusionNet", "FusionRecommender", "NetSpec", "TextAdapter", "mixture_log_probs",
           "mixture_nll", "sampled_mixture_nll"]
