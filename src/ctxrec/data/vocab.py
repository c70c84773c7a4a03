"""Mapping between external ids (strings, at the edges) and dense indices (everywhere inside)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from ctxrec.errors import UnknownIdError

_VECTORISED_LOOKUP = 10_000  # lookups of at least this many ids are factorised first


class Vocab:
    """An ordered set of external string ids; index ``i`` is the dense id of ``ids[i]``."""

    def __init__(self, ids: Iterable[object], *, kind: str = "id") -> None:
        self.kind = kind
        self._ids: list[str] = [str(x) for x in ids]
        self._index: dict[str, int] = {x: i for i, x in enumerate(self._ids)}
        if len(self._index) != len(self._ids):
            raise ValueError(f"duplicate {kind} ids in vocabulary")

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, ext: object) -> bool:
        return str(ext) in self._index

    @property
    def ids(self) -> list[str]:
        return self._ids

    def index(self, ext: object) -> int:
        """Dense index of one external id; unknown ids raise :class:`UnknownIdError`."""
        try:
            return self._index[str(ext)]
        except KeyError:
            fix = (
                "pass the user's recent items as `history` instead of the id"
                if self.kind == "user"
                else "check the id, or add the item to the catalogue and retrain"
            )
            raise UnknownIdError(
                f"unknown {self.kind} id {ext!r}: it is not among the {len(self)} {self.kind}s the model knows ({fix})"
            ) from None

    def get(self, ext: object, default: int = -1) -> int:
        return self._index.get(str(ext), default)

    def lookup(self, ext: Sequence[object] | np.ndarray, *, strict: bool = True) -> np.ndarray:
        """Dense indices of many ids (``-1`` for unknown ones when ``strict=False``)."""
        if len(ext) >= _VECTORISED_LOOKUP:
            return self._lookup_many(ext, strict=strict)
        if strict:
            return np.fromiter((self.index(x) for x in ext), dtype=np.int64, count=len(ext))
        return np.fromiter((self._index.get(str(x), -1) for x in ext), dtype=np.int64, count=len(ext))

    def _lookup_many(self, ext: Sequence[object] | np.ndarray, *, strict: bool) -> np.ndarray:
        """Factorise first, then map each distinct id once: logs repeat ids many times (10M events over
        1M items), and hashing native ints/strings in pandas is far cheaper than ``str()`` per row."""
        import pandas as pd

        if isinstance(ext, pd.Series | pd.Index):
            values = ext.to_numpy()
        else:
            values = ext if isinstance(ext, np.ndarray) else np.asarray(list(ext), dtype=object)
        codes, uniques = pd.factorize(values, use_na_sentinel=False)
        get = self._index.get
        mapped = np.fromiter((get(str(x), -1) for x in uniques), dtype=np.int64, count=len(uniques))
        idx = mapped[codes]
        if strict and (idx < 0).any():
            self.index(uniques[int(np.argmax(mapped < 0))])  # raises UnknownIdError naming the id
        return idx

    def external(self, idx: Iterable[int]) -> list[str]:
        return [self._ids[int(i)] for i in idx]

    def extend(self, new_ids: Iterable[object]) -> np.ndarray:
        """Append unseen ids (used for new items at serving time); returns their indices."""
        out = []
        for x in new_ids:
            s = str(x)
            if s not in self._index:
                self._index[s] = len(self._ids)
                self._ids.append(s)
            out.append(self._index[s])
        return np.asarray(out, dtype=np.int64)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps({"kind": self.kind, "ids": self._ids}))

    @classmethod
    def load(cls, path: str | Path) -> Vocab:
        obj = json.loads(Path(path).read_text())
        return cls(obj["ids"], kind=obj.get("kind", "id"))
