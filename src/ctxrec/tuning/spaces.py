"""Search spaces: what ``ctxrec tune`` varies, one typed declaration per model kind.

A :class:`Param` names a (dotted) key of the model's config (``d_model``, ``train.lr``) and how to
draw it; a :class:`SearchSpace` is the params plus ``fixed`` settings every trial shares. The defaults
below are ranges that the hand-tuned benchmark configs fall inside. A TOML file edits them:

    drop = ["use_text"]          # stop searching a default param (top-level keys come first in TOML)
    [params."train.lr"]          # change one field of a default param (the rest is kept)
    high = 3e-3
    [params.n_layers]            # or declare a param in full
    kind = "int"
    low = 1
    high = 4
    [fixed]                      # model config shared by every trial (like --set)
    "train.max_epochs" = 30

Unknown keys anywhere, and param names the model's config does not have, are errors.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ctxrec.config import flatten
from ctxrec.errors import ConfigError

if TYPE_CHECKING:
    import optuna

Kind = Literal["float", "int", "categorical"]


@dataclass(frozen=True, kw_only=True)
class Param:
    """One searched hyperparameter: a dotted model-config key and its range or choices."""

    name: str
    kind: Kind
    low: float | None = None
    high: float | None = None
    log: bool = False
    """Draw uniformly in log space (learning rates, penalties)."""
    step: float | None = None
    """Grid step of an int/float range (None = continuous, or 1 for ints)."""
    choices: tuple[Any, ...] = ()

    def __post_init__(self) -> None:
        where = f"search space param {self.name!r}"
        if self.kind not in ("float", "int", "categorical"):
            raise ConfigError(f"{where}: kind must be 'float', 'int' or 'categorical', got {self.kind!r}")
        if self.kind == "categorical":
            if not self.choices:
                raise ConfigError(f"{where}: a categorical param needs choices = [...]")
            if self.low is not None or self.high is not None or self.log or self.step is not None:
                raise ConfigError(f"{where}: a categorical param takes only choices (not low/high/log/step)")
            bad = [c for c in self.choices if not isinstance(c, (bool, int, float, str)) and c is not None]
            if bad:
                raise ConfigError(f"{where}: choices must be numbers, strings, booleans or null, got {bad!r}")
            return
        if self.choices:
            raise ConfigError(f"{where}: choices are for kind = 'categorical'; a {self.kind} param takes low/high")
        if self.low is None or self.high is None or not self.low <= self.high:
            raise ConfigError(f"{where}: needs low <= high, got low={self.low!r}, high={self.high!r}")
        if self.log and self.low <= 0:
            raise ConfigError(f"{where}: log = true needs low > 0, got {self.low!r}")
        if self.log and self.step is not None:
            raise ConfigError(f"{where}: log = true and step cannot be combined (optuna draws one or the other)")
        if self.kind == "int" and (self.low != int(self.low) or self.high != int(self.high)):
            raise ConfigError(f"{where}: an int param needs whole low/high, got {self.low!r}, {self.high!r}")

    def suggest(self, trial: optuna.Trial) -> Any:
        """Draw this param's value for ``trial``."""
        if self.kind == "categorical":
            return trial.suggest_categorical(self.name, list(self.choices))
        assert self.low is not None and self.high is not None
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.name, float(self.low), float(self.high), step=self.step, log=self.log)

    def contains(self, value: Any) -> bool:
        """Whether ``value`` is a point of this param (a choice, or inside [low, high])."""
        if self.kind == "categorical":
            return any(value == c and type(value) is type(c) for c in self.choices)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        assert self.low is not None and self.high is not None
        return self.low <= value <= self.high and (self.kind == "float" or value == int(value))

    def sample_value(self) -> Any:
        """A value inside the range (the low end or first choice), to type-check the key."""
        if self.kind == "categorical":
            return self.choices[0]
        assert self.low is not None
        return int(self.low) if self.kind == "int" else float(self.low)


@dataclass(frozen=True, kw_only=True)
class SearchSpace:
    """The params a study searches and the model-config settings every trial shares."""

    model: str
    params: tuple[Param, ...]
    fixed: dict[str, Any] = field(default_factory=dict)
    """Dotted model-config keys set in every trial (the space's own and ``--set``)."""

    def names(self) -> list[str]:
        return [p.name for p in self.params]

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        """``{dotted key: value}`` for one trial."""
        return {p.name: p.suggest(trial) for p in self.params}

    def model_config(self, values: dict[str, Any]) -> dict[str, Any]:
        """Nested model-config dict of ``fixed`` plus a trial's ``values`` (dotted keys)."""
        out: dict[str, Any] = {}
        for key, value in {**self.fixed, **values}.items():
            node = out
            *parents, leaf = key.split(".")
            for part in parents:
                node = node.setdefault(part, {})
                if not isinstance(node, dict):
                    raise ConfigError(f"search space key {key!r}: {part!r} is both a value and a table")
            node[leaf] = value
        return out

    def with_fixed(self, overrides: dict[str, Any]) -> tuple[SearchSpace, list[str]]:
        """Fix more keys (``--set``); a searched param that gets fixed stops being searched.
        Returns the new space and a note per param dropped that way (said to the user)."""
        dropped = [p.name for p in self.params if p.name in overrides]
        space = dataclasses.replace(self, params=tuple(p for p in self.params if p.name not in overrides),
                                    fixed={**self.fixed, **overrides})
        return space, [f"{n} is fixed by --set to {overrides[n]!r}, so it is not searched" for n in dropped]

    def default_point(self) -> tuple[dict[str, Any], list[str]]:
        """The model's default config as a point of this space (``{dotted key: value}``), to run as the
        study's first trial, so the tuned result is never below the defaults on validation. A param whose
        default lies outside its range or choices (``use_text="auto"``) is left to the sampler; the second
        value says which."""
        from ctxrec.models import get_model_class

        node_default: Any = get_model_class(self.model).config_class()
        point: dict[str, Any] = {}
        left: list[str] = []
        for p in self.params:
            value = node_default
            for part in p.name.split("."):
                value = getattr(value, part)
            if p.contains(value):
                point[p.name] = value
            else:
                left.append(p.name)
        return point, left

    def check(self) -> None:
        """Build the model's config from every param's low end / first choice: unknown keys and wrong
        types fail here, before any data is read."""
        from ctxrec.config import from_dict
        from ctxrec.models import get_model_class

        if not self.params:
            raise ConfigError(f"the search space of {self.model!r} has no params left; add some under [params]")
        seen: set[str] = set()
        for p in self.params:
            if p.name in seen:
                raise ConfigError(f"search space param {p.name!r} is declared twice")
            seen.add(p.name)
        cls = get_model_class(self.model).config_class
        try:
            from_dict(cls, self.model_config({p.name: p.sample_value() for p in self.params}))
            for p in self.params:  # every choice, and the high end, must be a valid value too
                others: list[Any] = list(p.choices[1:]) if p.kind == "categorical" else [p.high]
                for v in others:
                    from_dict(cls, self.model_config({p.name: int(v) if p.kind == "int" else v}))
        except ConfigError as exc:
            raise ConfigError(f"search space for {self.model!r} does not fit its config: {exc}") from None


def _p(name: str, kind: Kind, **kw: Any) -> Param:
    return Param(name=name, kind=kind, **kw)


_LR = _p("train.lr", "float", low=1e-4, high=1e-2, log=True)
_WD = _p("train.weight_decay", "categorical", choices=(0.0, 1e-4, 1e-2))
_BATCH = _p("train.batch_size", "categorical", choices=(32, 64, 128, 256))
"""32: the hand-tuned ml-100k rows' batch (a small log has few steps per epoch at 128)."""
_MAX_LEN = _p("max_len", "categorical", choices=(50, 100, 200))
"""Sparse logs (amazon-scientific, amazon-beauty) measured best at 50, long ones (MovieLens) at 200."""

DEFAULT_SPACES: dict[str, SearchSpace] = {
    "sasrec": SearchSpace(model="sasrec", params=(
        _p("d_model", "categorical", choices=(32, 64, 128, 256)),
        _p("n_layers", "int", low=1, high=3),
        _p("n_heads", "categorical", choices=(1, 2)),
        _p("dropout", "float", low=0.0, high=0.5),
        _MAX_LEN, _LR, _WD,
        _BATCH,
    )),
    "fusion": SearchSpace(model="fusion", params=(
        _p("d_model", "categorical", choices=(32, 64, 128, 256)),
        _p("n_layers", "int", low=1, high=3),
        _p("dropout", "float", low=0.0, high=0.5),
        _MAX_LEN,
        _p("context_dropout", "float", low=0.0, high=0.6),
        _p("id_dropout", "categorical", choices=("auto", 0.0, 0.1, 0.3, 0.5, 0.8)),  # "auto": the default (config.py)
        _p("use_text", "categorical", choices=(True, False)),
        _p("mixture", "categorical", choices=(True, False)),
        _LR, _WD, _BATCH,
    )),
    "pointwise": SearchSpace(model="pointwise", params=(
        _p("d_field", "categorical", choices=(8, 16, 32)),
        _p("head", "categorical", choices=("fm", "deepfm", "dcn")),
        _p("dropout", "float", low=0.0, high=0.5),
        _p("n_negatives", "int", low=1, high=8),
        _p("use_history", "categorical", choices=(True, False)),
        _p("history_pooling", "categorical", choices=("mean", "target")),
        _p("emb_l2", "categorical", choices=(0.0, 1e-6, 1e-5, 1e-4)),
        _LR,
        _p("train.batch_size", "categorical", choices=(256, 512, 1024)),
    )),
    "ease": SearchSpace(model="ease", params=(
        _p("l2", "float", low=1.0, high=1e4, log=True),
    )),
}

LABELLED_IGNORED = ("n_negatives",)
"""Pointwise settings of sampled training that training on labelled CTR tables (an AUC study) has no use for."""
LABELLED_FIXED: dict[str, Any] = {"train.patience": 3}
"""Fixed in an AUC study: CTR models peak within a few epochs (the frappe benchmark stops after 2-3 bad ones)."""

_TOP_KEYS = {"params", "fixed", "drop"}
_PARAM_KEYS = {f.name for f in dataclasses.fields(Param)} - {"name"}


def default_space(model: str, labelled: bool = False) -> SearchSpace:
    """The kind's default space; ``labelled`` (an AUC study): without :data:`LABELLED_IGNORED`, with
    :data:`LABELLED_FIXED`."""
    try:
        space = DEFAULT_SPACES[model]
    except KeyError:
        raise ConfigError(f"no search space for model kind {model!r}; tunable kinds: {sorted(DEFAULT_SPACES)} "
                          "(or declare every param in a --space TOML file)") from None
    if not labelled:
        return space
    return dataclasses.replace(space, params=tuple(p for p in space.params if p.name not in LABELLED_IGNORED),
                               fixed={**LABELLED_FIXED, **space.fixed})


def space_from_dict(model: str, data: dict[str, Any], base: SearchSpace | None = None, labelled: bool = False
                    ) -> SearchSpace:
    """Apply a parsed TOML table (``params``, ``fixed``, ``drop``) to ``base`` (the kind's default)."""
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise ConfigError(f"unknown search space key(s) {sorted(unknown)}; known: {sorted(_TOP_KEYS)}")
    if base is None:
        base = default_space(model, labelled) if model in DEFAULT_SPACES else SearchSpace(model=model, params=())
    params = {p.name: p for p in base.params}
    drop = data.get("drop", [])
    if not isinstance(drop, list) or not all(isinstance(d, str) for d in drop):
        raise ConfigError(f"search space 'drop' must be a list of param names, got {drop!r}")
    for name in drop:
        if name not in params:
            raise ConfigError(f"search space drops {name!r}, which is not searched; searched: {sorted(params)}")
        del params[name]
    table = data.get("params", {})
    if not isinstance(table, dict):
        raise ConfigError(f"search space 'params' must be a table of params, got {table!r}")
    for name, spec in table.items():
        if not isinstance(spec, dict):
            raise ConfigError(f"search space param {name!r} must be a table (kind, low, high, ...), got {spec!r}")
        bad = set(spec) - _PARAM_KEYS
        if bad:
            raise ConfigError(f"unknown key(s) {sorted(bad)} in search space param {name!r}; known: {sorted(_PARAM_KEYS)}")
        old = params.get(name)
        if old is not None and spec.get("kind", old.kind) == old.kind:
            fields = {**dataclasses.asdict(old), **spec}  # edit the default param field by field
        elif "kind" not in spec:
            raise ConfigError(f"search space param {name!r} is new: give its kind ('float', 'int' or 'categorical')")
        else:
            fields = {"name": name, **spec}
        fields["choices"] = tuple(fields.get("choices", ()))
        params[name] = Param(**fields)
    fixed = data.get("fixed", {})
    if not isinstance(fixed, dict):
        raise ConfigError(f"search space 'fixed' must be a table of model-config keys, got {fixed!r}")
    return SearchSpace(model=model, params=tuple(params.values()), fixed={**base.fixed, **flatten(fixed)})


def load_space(model: str, path: str | Path | None = None, overrides: dict[str, Any] | None = None,
               labelled: bool = False) -> tuple[SearchSpace, list[str]]:
    """The kind's default space, edited by a TOML file and fixed by ``--set`` overrides, checked
    against the model's config. Returns the space and notes to show the user. ``labelled``: the trials
    train on labelled CTR tables (an AUC study), see :func:`default_space`."""
    from ctxrec.config import load_file

    space = default_space(model, labelled) if path is None else space_from_dict(model, load_file(path), labelled=labelled)
    notes: list[str] = []
    if overrides:
        space, notes = space.with_fixed(overrides)
    if labelled:
        _check_labelled(space)
    space.check()
    return space, notes


def _check_labelled(space: SearchSpace) -> None:
    """An AUC study searches nothing that labelled training ignores and leaves the epoch metric to the task."""
    ignored = [n for n in space.names() if n in LABELLED_IGNORED]
    if ignored:
        raise ConfigError(f"search space param(s) {ignored} only apply to sampled (ranking) training; an AUC study "
                          "trains on the labelled CTR tables, so searching them changes nothing: remove them")
    given = space.fixed.get("train.valid_metric", "auc")
    if given != "auc":
        raise ConfigError(f"train.valid_metric = {given!r} in an AUC study: the CTR task selects epochs on validation "
                          "AUC itself; drop train.valid_metric from --set / the space file")
