"""Mapping between external ids (strings, at the edges) and dense indices (everywhere inside)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from ctxrec.errors import UnknownIdError


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

    def lookup(self, ext: Sequence[object], *, strict: bool = True) -> np.ndarray:
        """Dense indices of many ids (``-1`` for unknown ones when ``strict=False``)."""
        if strict:
            return np.fromiter((self.index(x) for x in ext), dtype=np.int64, count=len(ext))
        return np.fromiter((self._index.get(str(x), -1) for x in ext), dtype=np.int64, count=len(ext))

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
