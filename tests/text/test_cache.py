"""Embedding cache: misses only are encoded, hits are reused across calls, instances and (on disk) runs."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from ctxrec.errors import CtxrecError
from ctxrec.text import (
    EmbeddingCache,
    HashingTextEncoder,
    TextEncoderConfig,
    default_cache_dir,
    encode_cached,
)


class CountingEncoder(HashingTextEncoder):
    """A real hashing encoder that records every call it gets."""

    def __init__(self, dim: int = 32, **kw: object) -> None:
        super().__init__(dim, **kw)  # type: ignore[arg-type]
        self.calls: list[list[str]] = []

    def encode(
        self, texts: Sequence[str], *, batch_size: int | None = None, progress: bool = True
    ) -> np.ndarray:
        self.calls.append(list(texts))
        return super().encode(texts, batch_size=batch_size, progress=progress)

    @property
    def n_encoded(self) -> int:
        return sum(len(c) for c in self.calls)


TEXTS = [f"title: item {i}; genres: g{i % 3}" for i in range(10)]


def test_second_call_encodes_nothing_and_returns_the_same_matrix(tmp_path: Path) -> None:
    enc, cache = CountingEncoder(), EmbeddingCache(tmp_path)
    texts = TEXTS + TEXTS[:3]  # duplicates are encoded once
    first = cache.encode_cached(enc, texts, batch_size=4, progress=False)
    assert first.shape == (13, 32) and first.dtype == np.float32
    np.testing.assert_array_equal(first, HashingTextEncoder(32).encode(texts))
    assert enc.n_encoded == 10 and len(enc.calls) == 3  # 10 unique misses in batches of 4
    assert cache.last_stats is not None and (cache.last_stats.hits, cache.last_stats.encoded) == (0, 10)

    second = cache.encode_cached(enc, texts, progress=False)
    assert len(enc.calls) == 3  # no new encoder call
    np.testing.assert_array_equal(first, second)
    assert (cache.last_stats.hits, cache.last_stats.encoded) == (13, 0)


def test_reuse_across_instances_and_partial_overlap(tmp_path: Path) -> None:
    EmbeddingCache(tmp_path).encode_cached(CountingEncoder(), TEXTS, progress=False)
    enc = CountingEncoder()  # a "new run": fresh encoder and cache objects on the same directory
    mixed = ["brand new text", TEXTS[4], "another new one", TEXTS[0]]
    out = EmbeddingCache(tmp_path).encode_cached(enc, mixed, progress=False)
    assert sorted(t for c in enc.calls for t in c) == ["another new one", "brand new text"]
    np.testing.assert_array_equal(out, HashingTextEncoder(32).encode(mixed))  # order preserved


def test_all_hits_never_touch_the_model(tmp_path: Path) -> None:
    EmbeddingCache(tmp_path).encode_cached(HashingTextEncoder(32), TEXTS, progress=False)

    class Unloadable(HashingTextEncoder):
        @property
        def dim(self) -> int:
            raise AssertionError("dim read: the model would load")

        def encode(self, texts: Sequence[str], **kw: object) -> np.ndarray:
            raise AssertionError("encode called on a full cache hit")

    out = EmbeddingCache(tmp_path).encode_cached(Unloadable(32), TEXTS[::-1], progress=False)
    np.testing.assert_array_equal(out, HashingTextEncoder(32).encode(TEXTS[::-1]))


def test_different_vector_settings_use_different_entries(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path)
    a = cache.encode_cached(HashingTextEncoder(32), TEXTS[:2], progress=False)
    unnorm = CountingEncoder(32, normalize=False)
    b = cache.encode_cached(unnorm, TEXTS[:2], progress=False)
    assert unnorm.n_encoded == 2 and not np.allclose(a, b)
    c = cache.encode_cached(HashingTextEncoder(16), TEXTS[:2], progress=False)
    assert c.shape == (2, 16)
    assert len([p for p in tmp_path.iterdir() if p.is_dir()]) == 3


def test_on_disk_layout_is_safetensors_plus_json_and_no_pickle(tmp_path: Path) -> None:
    from safetensors.numpy import load_file

    enc = HashingTextEncoder(32)
    cache = EmbeddingCache(tmp_path, shard_rows=4)
    cache.encode_cached(enc, TEXTS, batch_size=2, progress=False)
    d = cache.directory(enc)
    assert d.parent == tmp_path and d.name.startswith("hashing_32-")
    meta = json.loads((d / "index.json").read_text())
    assert (
        meta["cache_key"] == enc.cache_key and meta["dim"] == 32 and meta["format"] == "ctxrec-embeddings/1"
    )
    shards = sorted(d.glob("shard-*.safetensors"))
    assert len(shards) == 3  # flushed every 4 rows: 4 + 4 + 2
    assert {p.suffix for p in d.iterdir()} == {".json", ".safetensors"}  # no temp files, no pickles
    tensors = load_file(str(shards[0]))
    assert tensors["digests"].dtype == np.uint8 and tensors["digests"].shape[1] == 32
    assert tensors["vectors"].dtype == np.float32 and tensors["vectors"].shape[1] == 32
    assert cache.size(enc) == 10


def test_compact_merges_shards_and_keeps_every_vector(tmp_path: Path) -> None:
    enc = HashingTextEncoder(32)
    cache = EmbeddingCache(tmp_path, shard_rows=3)
    before = cache.encode_cached(enc, TEXTS, batch_size=3, progress=False)
    assert len(list(cache.directory(enc).glob("shard-*"))) == 4
    assert cache.compact(enc) == 10
    assert len(list(cache.directory(enc).glob("shard-*"))) == 1
    counting = CountingEncoder(32)
    np.testing.assert_array_equal(
        EmbeddingCache(tmp_path).encode_cached(counting, TEXTS, progress=False), before
    )
    assert counting.calls == []
    cache.clear(enc)
    assert not cache.directory(enc).exists()


def test_a_failed_run_keeps_the_batches_already_encoded(tmp_path: Path) -> None:
    class FailsOnSecondBatch(CountingEncoder):
        def encode(self, texts: Sequence[str], **kw: object) -> np.ndarray:
            if self.calls:
                raise RuntimeError("out of memory")
            return super().encode(texts, **kw)  # type: ignore[arg-type]

    with pytest.raises(RuntimeError, match="out of memory"):
        EmbeddingCache(tmp_path).encode_cached(FailsOnSecondBatch(), TEXTS, batch_size=4, progress=False)
    enc = CountingEncoder()
    EmbeddingCache(tmp_path).encode_cached(enc, TEXTS, batch_size=4, progress=False)
    assert enc.n_encoded == 6  # the first 4 were kept


def test_concurrent_writers_share_one_directory(tmp_path: Path) -> None:
    texts = [f"text {i}" for i in range(60)]
    errors: list[Exception] = []

    def work(k: int) -> None:
        try:
            mine = texts[k * 15 : k * 15 + 30]  # overlapping slices
            out = EmbeddingCache(tmp_path, shard_rows=5).encode_cached(
                HashingTextEncoder(32), mine, batch_size=5, progress=False
            )
            np.testing.assert_array_equal(out, HashingTextEncoder(32).encode(mine))
        except Exception as exc:  # noqa: BLE001 - re-raised below, in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    enc = CountingEncoder(32)
    EmbeddingCache(tmp_path).encode_cached(enc, texts, progress=False)
    assert enc.n_encoded == 0


def test_dim_mismatch_under_one_cache_key_is_an_error(tmp_path: Path) -> None:
    EmbeddingCache(tmp_path).encode_cached(HashingTextEncoder(32), ["a"], progress=False)

    class Liar(HashingTextEncoder):
        @property
        def cache_key(self) -> str:  # claims to be the 32-d encoder
            return HashingTextEncoder(32).cache_key

        @property
        def name(self) -> str:
            return "hashing:32"

    with pytest.raises(CtxrecError, match="dim 16"):
        EmbeddingCache(tmp_path).encode_cached(Liar(16), ["b"], progress=False)


def test_empty_input_and_progress_bar(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cache = EmbeddingCache(tmp_path)
    assert cache.encode_cached(HashingTextEncoder(8), [], progress=False).shape == (0, 8)
    cache.encode_cached(HashingTextEncoder(8), ["x", "y"], progress=True)
    assert "encoding (hashing:8)" in capsys.readouterr().err


def test_default_directory_and_helpers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CTXREC_CACHE", str(tmp_path / "root"))
    assert default_cache_dir() == tmp_path / "root" / "embeddings"
    assert EmbeddingCache().root == tmp_path / "root" / "embeddings"
    monkeypatch.delenv("CTXREC_CACHE")
    assert default_cache_dir() == Path.home() / ".cache" / "ctxrec" / "embeddings"
    assert EmbeddingCache.from_config(TextEncoderConfig(cache_dir=str(tmp_path))).root == tmp_path
    out = encode_cached(HashingTextEncoder(8), ["a b"], cache=tmp_path, progress=False)
    np.testing.assert_array_equal(out, HashingTextEncoder(8).encode(["a b"]))


def test_a_full_disk_costs_the_cache_not_the_vectors(small_disk: Path, fill_disk) -> None:
    """On a real filesystem that is full, encoding still returns every vector (with a warning that nothing
    was cached) and leaves no temporary file; once space is freed the next call caches them."""
    enc = CountingEncoder()
    cache = EmbeddingCache(small_disk / "cache", shard_rows=4)  # several shard writes in one call
    texts = [f"item {n} with a long description" for n in range(10)]
    filler = fill_disk(small_disk)
    with pytest.warns(UserWarning, match=r"text vectors not cached in .*No space left on device.*used from memory"):
        got = cache.encode_cached(enc, texts, progress=False)
    np.testing.assert_array_equal(got, HashingTextEncoder(32).encode(texts, progress=False))
    assert not [p for p in small_disk.rglob("*") if p.name.startswith(".tmp-")]
    filler.unlink()
    again = cache.encode_cached(enc, texts, progress=False)  # not cached: encoded again, now written
    np.testing.assert_array_equal(again, got)
    fresh = EmbeddingCache(small_disk / "cache")
    np.testing.assert_array_equal(fresh.encode_cached(enc, texts, progress=False), got)
    assert fresh.last_stats is not None and fresh.last_stats.hits == len(texts)  # from disk this time
