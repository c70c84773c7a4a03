"""The fusion model's input encoders, fitted on the training data, or taken from the model a warm start
continues (``fit(encoders_from=...)``): the item inputs (text vectors, attribute ids, extra vectors),
the context encoder, user profiles and event types."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ctxrec.context import ContextEncoder
from ctxrec.models.features import attribute_matrix, item_text_vectors, load_item_vectors, profile_matrix

if TYPE_CHECKING:
    from ctxrec.data.dataset import Dataset


def fit_encoders(m: Any, data: Dataset, src: Any | None) -> tuple[np.ndarray | None, np.ndarray, int, np.ndarray | None]:
    """Set ``m``'s encoders (``attr_vocab``, ``lexical``, ``ctx_encoder``, ``user_profile``, ``profile_vocabs``,
    ``user_text_vectors``, ``event_types``) for ``data``, and return its item inputs ``(text vectors,
    attribute ids, number of attribute ids, extra vectors)``. With ``src`` (the fitted fusion model a warm
    start continues) its encoders read the data, so the weights' shapes stay: a value it never saw is
    unknown, as when served."""
    cfg, tc = m.config, m.config.train
    text = item_text_vectors(data, m._text_encoder_instance(), cfg.text, cfg.item_text,
                             progress=tc.progress) if cfg.use_text else None
    if src is not None:  # continue src: read the data with its encoders (the weights' shapes)
        m.attr_vocab = dict(src.attr_vocab)
    if cfg.use_attributes:
        attrs, n_attr = attribute_matrix(data, m.attr_vocab, frozen=src is not None,
                                         width=src.spec.attr_width if src is not None and src.spec is not None else None)
    else:
        attrs, n_attr = np.zeros((data.n_items + 1, 1), np.int64), 0
    extra = load_item_vectors(cfg.item_vectors, data.item_vocab.ids) if cfg.item_vectors else None
    m.lexical = None
    if cfg.lexical_dim:  # the lexical vectors join the item_vectors file's (one projection of both)
        from ctxrec.text.lexical import LexicalEncoder
        from ctxrec.text.templates import item_texts

        texts = item_texts(data, cfg.item_text)
        if src is not None and src.lexical is not None:
            m.lexical, lex = src.lexical, src.lexical.transform(texts)
        else:
            m.lexical = LexicalEncoder(cfg.lexical_dim)
            lex = m.lexical.fit_transform(texts)
        extra = lex if extra is None else np.hstack([extra, lex])
    m.ctx_encoder = ContextEncoder.from_dict(src.ctx_encoder.to_dict()) if src is not None and src.ctx_encoder \
        else ContextEncoder(cfg.context).fit(data)
    m.user_profile, m.profile_vocabs = profile_matrix(data, cfg.use_profile,
                                                      vocabs=src.profile_vocabs if src is not None else None)
    m.user_text_vectors = None
    if cfg.use_profile and data.schema.user_text_fields:
        from ctxrec.text.templates import user_texts

        m.user_text_vectors = m._encode_texts(user_texts(data, cfg.user_text))
    types = sorted(data.interactions["event_type"].astype(str).unique())
    m.event_types = dict(src.event_types) if src is not None else \
        ({t: i + 1 for i, t in enumerate(types)} if len(types) > 1 else {})
    return text, attrs, n_attr, extra
