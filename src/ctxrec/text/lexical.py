"""Lexical item vectors: what a bag of word and character n-grams keeps of an item's text.

A sentence encoder reads meaning and blurs exact tokens -- model numbers, grit sizes, pack counts, brand
spellings -- which are what tells two near-identical catalogue items apart. TF-IDF over the rendered item
text's word 1-2 grams and character 3-5 grams (sublinear tf, terms in at least 2 items), reduced by a
truncated SVD and L2-normalised, keeps them. Measured on amazon-scientific (headline config, 3 seeds,
benchmarks/results/amazon-scientific/text_gain.json): NDCG@10 0.0918 with MiniLM + these vectors against
0.0895 with MiniLM alone and 0.0869 without text.

Fitted on the catalogue's text only (unsupervised, no interaction is read). The fitted encoder saves as
JSON (the n-gram vocabularies) and arrays (idf weights, SVD components), no pickle, so a served model
gives items added later their vectors from the same n-grams and projection.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ctxrec.errors import ConfigError

if TYPE_CHECKING:
    from sklearn.feature_extraction.text import TfidfVectorizer

_WORDS: dict[str, Any] = {"ngram_range": (1, 2), "sublinear_tf": True}
_CHARS: dict[str, Any] = {"analyzer": "char_wb", "ngram_range": (3, 5), "sublinear_tf": True}
MIN_DF = 2


class LexicalEncoder:
    """``fit`` on the catalogue's texts, ``transform`` any text (a new item's) with the same n-grams and SVD."""

    def __init__(self, dim: int) -> None:
        if dim < 1:
            raise ConfigError(f"lexical vectors need dim >= 1 (e.g. 256), got {dim}")
        self.dim = dim
        self.words: TfidfVectorizer | None = None
        self.chars: TfidfVectorizer | None = None
        self.components: np.ndarray | None = None  # (dim, n_word_terms + n_char_terms)

    def fit_transform(self, texts: Sequence[str], seed: int = 0) -> np.ndarray:
        """(n, dim) vectors of ``texts``. ``dim`` is lowered to fit a small catalogue (below the number of
        texts and of n-grams; ``self.dim`` says what was used)."""
        from scipy.sparse import hstack
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfVectorizer

        texts = list(texts)
        if not any(t.strip() for t in texts):
            raise ConfigError("lexical vectors need item text: the catalogue's rendered texts are all empty; map text "
                              "fields (title, description, ...) or turn the lexical vectors off")
        min_df = MIN_DF if len(texts) >= 2 * MIN_DF else 1  # a catalogue of a few items keeps every term
        self.words = TfidfVectorizer(min_df=min_df, **_WORDS)
        self.chars = TfidfVectorizer(min_df=min_df, **_CHARS)
        x = hstack([self.words.fit_transform(texts), self.chars.fit_transform(texts)]).tocsr()
        self.dim = max(1, min(self.dim, min(x.shape) - 1))
        svd = TruncatedSVD(self.dim, random_state=seed)
        vecs = svd.fit_transform(x).astype(np.float32)
        self.components = svd.components_.astype(np.float32)
        return _unit_rows(vecs)

    def transform(self, texts: Sequence[str]) -> np.ndarray:
        """(n, dim) vectors of new texts; a text sharing no n-gram with the catalogue gives a zero row."""
        from scipy.sparse import hstack

        if self.words is None or self.chars is None or self.components is None:
            raise ConfigError("the lexical encoder is not fitted: call fit_transform on the catalogue's texts first")
        x = hstack([self.words.transform(list(texts)), self.chars.transform(list(texts))]).tocsr()
        return _unit_rows(np.asarray(x @ self.components.T, dtype=np.float32))

    # ------------------------------------------------------------------------------ persistence
    def to_meta(self) -> dict[str, Any]:
        """The JSON part: dimension and n-gram vocabularies (term -> column)."""
        assert self.words is not None and self.chars is not None
        return {"dim": self.dim, "words": {k: int(v) for k, v in self.words.vocabulary_.items()},
                "chars": {k: int(v) for k, v in self.chars.vocabulary_.items()}}

    def to_state(self) -> dict[str, np.ndarray]:
        """The array part: idf weights of each vocabulary and the SVD components."""
        assert self.words is not None and self.chars is not None and self.components is not None
        return {"idf_words": self.words.idf_.astype(np.float64), "idf_chars": self.chars.idf_.astype(np.float64),
                "components": self.components}

    @classmethod
    def from_saved(cls, meta: dict[str, Any], state: dict[str, np.ndarray]) -> LexicalEncoder:
        from sklearn.feature_extraction.text import TfidfVectorizer

        enc = cls(int(meta["dim"]))
        enc.words = TfidfVectorizer(vocabulary=dict(meta["words"]), **_WORDS)
        enc.chars = TfidfVectorizer(vocabulary=dict(meta["chars"]), **_CHARS)
        enc.words.idf_ = np.asarray(state["idf_words"], dtype=np.float64)
        enc.chars.idf_ = np.asarray(state["idf_chars"], dtype=np.float64)
        enc.components = np.asarray(state["components"], dtype=np.float32)
        return enc


def _unit_rows(v: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1; an all-zero row (no known n-gram) stays zero."""
    out: np.ndarray = v / np.linalg.norm(v, axis=1, keepdims=True).clip(1e-12)
    return out
