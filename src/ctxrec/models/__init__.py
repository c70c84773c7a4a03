"""Model registry: the one place a model kind string is resolved to a class.

Entries are ``kind -> (module, class)`` and are imported on first use, so ``import ctxrec.models``
does not import torch.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ctxrec.errors import ConfigError

if TYPE_CHECKING:
    from ctxrec.models.base import Recommender

MODELS: dict[str, tuple[str, str]] = {
    "popularity": ("ctxrec.models.popularity", "PopularityRecommender"),
    "context_popularity": ("ctxrec.models.context_popularity", "ContextPopularityRecommender"),
    "ease": ("ctxrec.models.ease", "EASERecommender"),
    "sasrec": ("ctxrec.models.sasrec", "SASRecRecommender"),
    "fusion": ("ctxrec.models.fusion", "FusionRecommender"),
    "ensemble": ("ctxrec.models.ensemble", "EnsembleRecommender"),
    "pointwise": ("ctxrec.models.pointwise", "PointwiseRecommender"),
    "fm": ("ctxrec.models.fm", "FMRecommender"),
}


def get_model_class(kind: str) -> type[Recommender]:
    """The Recommender class registered under ``kind``."""
    try:
        module, name = MODELS[kind]
    except KeyError:
        raise ConfigError(f"unknown model kind {kind!r}; registered kinds: {sorted(MODELS)}") from None
    cls: type[Recommender] = getattr(importlib.import_module(module), name)
    return cls


def build_model(kind: str, config: dict[str, Any] | None = None) -> Recommender:
    """Instantiate a model from its kind and a (validated) config dict."""
    from ctxrec.config import from_dict

    cls = get_model_class(kind)
    cfg: object = from_dict(cls.config_class, config or {})
    return cls(cfg)


def load_model(path: str | Path) -> Recommender:
    """Load any saved model folder: ``config.json`` names the kind, the registry gives the class."""
    p = Path(path)
    if (p / "model" / "config.json").exists():  # a run folder written by `ctxrec train`
        p = p / "model"
    cfg = p / "config.json"
    if not cfg.exists():
        raise FileNotFoundError(
            f"{str(p)!r} is not a saved ctxrec model (no config.json); pass a folder written by "
            "model.save() or `ctxrec train`"
        )
    kind = json.loads(cfg.read_text()).get("kind")
    return get_model_class(kind).load(p)
