"""The top-level names: `__all__` lists exactly the lazily loaded names, and each one resolves."""

from __future__ import annotations

import importlib

import ctxrec


def test_all_matches_the_lazy_table() -> None:
    assert set(ctxrec.__all__) == {*ctxrec._LAZY, "__version__"}
    assert len(ctxrec.__all__) == len(set(ctxrec.__all__))


def test_every_public_name_resolves_to_its_module() -> None:
    for name, module in ctxrec._LAZY.items():
        assert getattr(ctxrec, name) is getattr(importlib.import_module(module), name)
