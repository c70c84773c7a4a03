"""ctxrec: context-aware recommendation with pretrained language models.

The public API is small and batch-first::

    from ctxrec import load_dataset, RecQuery, load_model
    data = load_dataset("ml-100k")
    model = build_model("sasrec").fit(split.train, valid=split.valid)
    model.recommend([RecQuery(user_id="42", context={"hour": 9})], k=10)

Heavy dependencies (torch, pandas) are imported lazily, so ``import ctxrec`` is cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "Dataset": "ctxrec.data.dataset",
    "DatasetSchema": "ctxrec.data.dataset",
    "load_dataset": "ctxrec.data.datasets",
    "RecQuery": "ctxrec.models.base",
    "Recommendations": "ctxrec.models.base",
    "Recommender": "ctxrec.models.base",
    "build_model": "ctxrec.models",
    "load_model": "ctxrec.models",
    "Evaluator": "ctxrec.evaluation.evaluator",
}

# Spelled out (not `[*_LAZY]`) so linters and type checkers see the public names; tests/test_public_api.py
# keeps the two in step.
__all__ = [
    "Dataset",
    "DatasetSchema",
    "Evaluator",
    "RecQuery",
    "Recommendations",
    "Recommender",
    "__version__",
    "build_model",
    "load_dataset",
    "load_model",
]

if TYPE_CHECKING:  # pragma: no cover
    from ctxrec.data.dataset import Dataset, DatasetSchema
    from ctxrec.data.datasets import load_dataset
    from ctxrec.evaluation.evaluator import Evaluator
    from ctxrec.models import build_model, load_model
    from ctxrec.models.base import Recommendations, Recommender, RecQuery


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ctxrec' has no attribute {name!r}")
