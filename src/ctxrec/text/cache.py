"""On-disk embedding cache: encode each (encoder, text) once, reuse it across runs and processes.

Layout under the cache root (default ``$CTXREC_CACHE/embeddings``, else ``~/.cache/ctxrec/embeddings``)::

    <encoder-name>-<sha256(cache_key)[:16]>/
        index.json                   # format, encoder name, cache_key, dim, dtype
        shard-<uuid>.safetensors     # "digests": (n, 32) uint8 sha256 of each text (utf-8)
                                     # "vectors": (n, dim) float32, row i belongs to digests[i]

Shards are immutable and written to a temp file then renamed, so readers never see half a shard and
concurrent writers never overwrite each other (the set of shards *is* the index; ``index.json`` only
describes the directory). Two processes encoding the same miss at once just store it twice, which is
harmless. No pickle anywhere.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ctxrec.errors import CtxrecError
from ctxrec.text.encoders import TextEncoder, TextEncoderConfig, _as_texts

__all__ = [
    "CacheStats",
    "EmbeddingCache",
    "cache_key_of",
    "default_cache_dir",
    "encode_cached",
    "text_digest",
]

FORMAT = "ctxrec-embeddings/1"
_SHARD_GLOB = "shard-*.safetensors"


def default_cache_dir() -> Path:
    """``$CTXREC_CACHE/embeddings`` when set, else ``~/.cache/ctxrec/embeddings``."""
    root = os.environ.get("CTXREC_CACHE")
    return (Path(root).expanduser() if root else Path.home() / ".cache" / "ctxrec") / "embeddings"


def text_digest(text: str) -> bytes:
    """The cache key of one text: sha256 of its utf-8 bytes (32 bytes)."""
    return hashlib.sha256(text.encode("utf-8")).digest()


def cache_key_of(encoder: TextEncoder) -> str:
    """What identifies an encoder's vectors: its ``cache_key`` (model identity + vector-changing settings)."""
    key = getattr(encoder, "cache_key", None)
    return str(key) if key else f"name:{encoder.name}"


@dataclass(frozen=True)
class CacheStats:
    """What one :meth:`EmbeddingCache.encode_cached` call did."""

    texts: int
    unique: int
    hits: int
    encoded: int


class EmbeddingCache:
    """Vectors of (encoder, text) pairs on disk; see the module docstring for the layout.

    ``shard_rows`` bounds the work lost to an interrupted run: new vectors are flushed every that many rows.
    """

    def __init__(self, root: str | Path | None = None, *, shard_rows: int = 8192) -> None:
        self.root = Path(root).expanduser() if root is not None else default_cache_dir()
        if shard_rows < 1:
            raise ValueError(f"shard_rows must be >= 1, got {shard_rows}")
        self.shard_rows = shard_rows
        self.last_stats: CacheStats | None = None
        # per encoder directory: shard file name -> its digests, read once per process
        self._digests: dict[Path, dict[str, np.ndarray]] = {}

    @classmethod
    def from_config(cls, cfg: TextEncoderConfig) -> EmbeddingCache:
        return cls(cfg.cache_dir)

    # ---------------------------------------------------------------------------------- layout
    def directory(self, encoder: TextEncoder) -> Path:
        """Where ``encoder``'s vectors live (created on first write)."""
        key = cache_key_of(encoder)
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", encoder.name).strip("._-")[:60] or "encoder"
        return self.root / f"{slug}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"

    def _check_index(self, d: Path, encoder: TextEncoder, dim: int | None) -> int | None:
        """The stored dim (None if the directory is new); errors if it belongs to another encoder."""
        f = d / "index.json"
        if not f.exists():
            return None
        try:
            meta = json.loads(f.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise CtxrecError(
                f"embedding cache index {f} is unreadable ({exc}); delete the directory {d} to rebuild it"
            ) from None
        key = cache_key_of(encoder)
        if meta.get("format") != FORMAT or meta.get("cache_key") != key:
            raise CtxrecError(
                f"embedding cache directory {d} holds {meta.get('cache_key')!r} ({meta.get('format')}), "
                f"not {key!r}; "
                "delete it to rebuild"
            )
        stored = int(meta["dim"])
        if dim is not None and stored != dim:
            raise CtxrecError(
                f"embedding cache {d} has dim {stored} but encoder {encoder.name!r} gives {dim}; delete it"
            )
        return stored

    def _write_index(self, d: Path, encoder: TextEncoder, dim: int) -> None:
        if (d / "index.json").exists():
            return
        meta = {
            "format": FORMAT,
            "encoder": encoder.name,
            "cache_key": cache_key_of(encoder),
            "dim": dim,
            "dtype": "float32",
            "digest": "sha256(utf-8 text)",
        }
        _atomic_write(d / "index.json", (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode())

    def _scan(self, d: Path) -> dict[str, np.ndarray]:
        """Refresh the in-memory digest table of ``d`` from the shards now on disk."""
        from safetensors import safe_open

        known = self._digests.setdefault(d, {})
        present = {p.name for p in d.glob(_SHARD_GLOB)} if d.is_dir() else set()
        for name in list(known):
            if name not in present:  # removed by compact() elsewhere
                del known[name]
        for name in sorted(present - set(known)):
            try:
                with safe_open(str(d / name), framework="np") as fh:
                    known[name] = fh.get_tensor("digests")
            except FileNotFoundError:
                continue
        return known

    # ---------------------------------------------------------------------------------- lookup
    def lookup(self, encoder: TextEncoder, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray | None]:
        """``(found, vectors)``: a bool mask over ``texts`` and a ``(n, dim)`` matrix filled where found
        (``vectors`` is None when nothing is cached for this encoder). Never loads the model."""
        texts = _as_texts(texts)
        d = self.directory(encoder)
        found = np.zeros(len(texts), dtype=bool)
        dim = self._check_index(d, encoder, None)
        if dim is None or not texts:
            return found, None
        want: dict[bytes, list[int]] = {}
        for i, t in enumerate(texts):
            want.setdefault(text_digest(t), []).append(i)
        vectors = np.zeros((len(texts), dim), dtype=np.float32)
        for _ in range(2):  # a second pass if a shard vanished under us (compacted elsewhere)
            try:
                self._fill(d, want, found, vectors)
                break
            except FileNotFoundError:
                self._digests.pop(d, None)
                found[:] = False
        return found, vectors

    def _fill(self, d: Path, want: dict[bytes, list[int]], found: np.ndarray, vectors: np.ndarray) -> None:
        from safetensors import safe_open

        remaining = dict(want)
        for name, digests in self._scan(d).items():
            if not remaining:
                break
            rows: list[int] = []
            targets: list[list[int]] = []
            for r, dg in enumerate(digests):
                idx = remaining.pop(dg.tobytes(), None)
                if idx is not None:
                    rows.append(r)
                    targets.append(idx)
            if not rows:
                continue
            with safe_open(str(d / name), framework="np") as fh:
                block = fh.get_tensor("vectors")
            for r, idx in zip(rows, targets, strict=True):
                vectors[idx] = block[r]
                found[idx] = True

    # ---------------------------------------------------------------------------------- encode
    def encode_cached(
        self,
        encoder: TextEncoder,
        texts: Sequence[str],
        *,
        batch_size: int | None = None,
        progress: bool = True,
    ) -> np.ndarray:
        """``(len(texts), dim)`` float32 for ``texts``, encoding only the texts not cached yet.

        Misses are de-duplicated, sorted by length (less padding per batch), encoded ``batch_size`` at a
        time under a progress bar, and flushed to disk every ``shard_rows`` rows. A call whose texts are
        all cached never loads the model.
        """
        texts = _as_texts(texts)
        found, vectors = self.lookup(encoder, texts)
        miss_idx = np.flatnonzero(~found)
        uniq: dict[str, list[int]] = {}
        for i in miss_idx.tolist():
            uniq.setdefault(texts[i], []).append(i)
        n_unique = len(set(texts))
        self.last_stats = CacheStats(
            texts=len(texts), unique=n_unique, hits=int(found.sum()), encoded=len(uniq)
        )
        if not uniq:
            if vectors is None:  # no texts at all and nothing cached
                return np.zeros((0, encoder.dim), dtype=np.float32)
            return vectors

        d = self.directory(encoder)
        todo = sorted(uniq, key=len, reverse=True)
        bs = batch_size or int(getattr(encoder, "batch_size", 64) or 64)
        pending_txt: list[str] = []
        pending_vec: list[np.ndarray] = []
        out = vectors
        writable = True  # until a write fails (a full disk): then the rest of this call stays in memory
        bar = _progress(len(todo), f"encoding ({encoder.name})", progress)
        try:
            for start in range(0, len(todo), bs):
                chunk = todo[start : start + bs]
                emb = np.asarray(encoder.encode(chunk, batch_size=bs, progress=False), dtype=np.float32)
                if emb.ndim != 2 or emb.shape[0] != len(chunk):
                    raise CtxrecError(
                        f"encoder {encoder.name!r} returned shape {emb.shape} for {len(chunk)} texts; "
                        "expected (n, dim)"
                    )
                if out is None:
                    self._check_index(d, encoder, emb.shape[1])
                    out = np.zeros((len(texts), emb.shape[1]), dtype=np.float32)
                elif emb.shape[1] != out.shape[1]:
                    raise CtxrecError(
                        f"encoder {encoder.name!r} gives dim {emb.shape[1]} but its cache {d} has "
                        f"{out.shape[1]}; "
                        "its cache_key should change when its vectors do (delete the directory to rebuild)"
                    )
                for t, v in zip(chunk, emb, strict=True):
                    out[uniq[t]] = v
                pending_txt.extend(chunk)
                pending_vec.append(emb)
                if len(pending_txt) >= self.shard_rows:
                    writable = writable and self._try_flush(d, encoder, pending_txt, pending_vec)
                    pending_txt, pending_vec = [], []
                bar.update(len(chunk))
        finally:
            bar.close()
            if pending_txt and writable:  # keep what was encoded even if a later batch failed
                self._try_flush(d, encoder, pending_txt, pending_vec)
        assert out is not None  # `todo` is not empty, so the first batch allocated it
        return out

    def _try_flush(self, d: Path, encoder: TextEncoder, texts: list[str], vecs: list[np.ndarray]) -> bool:
        """:meth:`_flush`, where a write error (a full disk) costs the cache, not the caller: the vectors are
        in memory already. False (with a warning) when the shard could not be written."""
        try:
            self._flush(d, encoder, texts, vecs)
        except OSError as exc:
            warnings.warn(f"text vectors not cached in {d} ({exc}): they are used from memory and will be encoded "
                          "again by the next run; free space there, or move the cache (text.cache_dir, $CTXREC_CACHE)", stacklevel=3)
            return False
        return True

    def _flush(self, d: Path, encoder: TextEncoder, texts: list[str], vecs: list[np.ndarray]) -> None:
        from safetensors.numpy import save

        mat = np.ascontiguousarray(np.concatenate(vecs), dtype=np.float32)
        digests = np.frombuffer(b"".join(text_digest(t) for t in texts), dtype=np.uint8).reshape(
            len(texts), 32
        )
        d.mkdir(parents=True, exist_ok=True)
        self._write_index(d, encoder, int(mat.shape[1]))
        data = save({"digests": digests.copy(), "vectors": mat}, metadata={"format": FORMAT})
        name = f"shard-{uuid.uuid4().hex}.safetensors"
        _atomic_write(d / name, data)
        self._digests.setdefault(d, {})[name] = digests

    # ---------------------------------------------------------------------------------- upkeep
    def compact(self, encoder: TextEncoder) -> int:
        """Merge ``encoder``'s shards into one (dropping duplicate texts); returns the number of rows kept."""
        from safetensors import safe_open
        from safetensors.numpy import save

        d = self.directory(encoder)
        names = sorted(self._scan(d))
        if len(names) <= 1:
            return sum(len(x) for x in self._digests.get(d, {}).values())
        seen: set[bytes] = set()
        digs: list[np.ndarray] = []
        vecs: list[np.ndarray] = []
        for name in names:
            with safe_open(str(d / name), framework="np") as fh:
                dg, vc = fh.get_tensor("digests"), fh.get_tensor("vectors")
            keep = []
            for r, row in enumerate(dg):
                b = row.tobytes()
                if b not in seen:
                    seen.add(b)
                    keep.append(r)
            digs.append(dg[keep])
            vecs.append(vc[keep])
        all_d, all_v = np.concatenate(digs), np.ascontiguousarray(np.concatenate(vecs))
        new = f"shard-{uuid.uuid4().hex}.safetensors"
        _atomic_write(d / new, save({"digests": all_d, "vectors": all_v}, metadata={"format": FORMAT}))
        for name in names:  # new shard is in place first, so readers always see every vector
            (d / name).unlink(missing_ok=True)
        self._digests[d] = {new: all_d}
        return len(all_d)

    def size(self, encoder: TextEncoder) -> int:
        """Rows stored for ``encoder`` (duplicates across shards counted)."""
        return sum(len(x) for x in self._scan(self.directory(encoder)).values())

    def clear(self, encoder: TextEncoder) -> None:
        """Delete ``encoder``'s cached vectors."""
        import shutil

        d = self.directory(encoder)
        shutil.rmtree(d, ignore_errors=True)
        self._digests.pop(d, None)


def encode_cached(
    encoder: TextEncoder,
    texts: Sequence[str],
    *,
    cache: EmbeddingCache | str | Path | None = None,
    batch_size: int | None = None,
    progress: bool = True,
) -> np.ndarray:
    """:meth:`EmbeddingCache.encode_cached` with a cache given as an object or a root directory."""
    c = cache if isinstance(cache, EmbeddingCache) else EmbeddingCache(cache)
    return c.encode_cached(encoder, texts, batch_size=batch_size, progress=progress)


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex}-{path.name}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _progress(total: int, desc: str, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="text", disable=not enabled, mininterval=1.0, leave=False)
