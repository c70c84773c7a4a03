"""A seed ensemble of fusion models: P(i | x, c) = mean_m P_m(i | x, c).

The fusion model's scores are log-probabilities, so members trained from different random seeds average
as a proper mixture. Averaging removes the part of each member's error that is seed noise; on sparse
catalogues (amazon-scientific: 7 events per user) that noise is a few percent of Recall@10, and three
members recover most of it (benchmarks/results/amazon-scientific/). The price is the members' count in
training time, memory and scoring time, which is why this is its own model kind, not a fusion default.

Members share the vocabularies and histories of the ensemble; each keeps its own config (its seed) and
weights, saved side by side in the one ``model.safetensors`` (``m0.*``, ``m1.*``, ...). Members trained
apart (:meth:`EnsembleRecommender.from_members`) may also differ in how they were trained (the loss, its
negatives, the schedule: :func:`training_only`), never in the network they compute with; each member's
own config is then saved with it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ctxrec.config import flatten, to_dict
from ctxrec.errors import ConfigError
from ctxrec.models.base import QueryBatch, Recommender
from ctxrec.models.fusion import FusionConfig, FusionRecommender

if TYPE_CHECKING:
    from ctxrec.data.dataset import Dataset
    from ctxrec.data.splits import EvalSet


@dataclass(frozen=True, kw_only=True)
class EnsembleConfig:
    """The members: one fusion config, trained once per seed."""

    member: FusionConfig = field(default_factory=FusionConfig)
    seeds: tuple[int, ...] = (42, 43, 44)
    """One member per seed (``member.train.seed`` is replaced by each); at least two, all different."""

    def __post_init__(self) -> None:
        if len(self.seeds) < 2 or len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"EnsembleConfig.seeds needs at least two different seeds, got {list(self.seeds)}; "
                              "for one model use kind 'fusion'")


class EnsembleRecommender(Recommender):
    """Averages the catalogue probabilities of fusion members trained from different seeds."""

    kind: ClassVar[str] = "ensemble"
    config_class: ClassVar[type] = EnsembleConfig
    config: EnsembleConfig

    def __init__(self, config: EnsembleConfig | None = None) -> None:
        super().__init__(config)
        self.members: list[FusionRecommender] = []

    def _member_configs(self) -> list[FusionConfig]:
        m = self.config.member
        return [dataclasses.replace(m, train=dataclasses.replace(m.train, seed=s)) for s in self.config.seeds]

    def _fit(self, data: Dataset, *, valid: EvalSet | None, run_dir: Path | None) -> None:
        from ctxrec.models.fusion.auto import resolve

        member_cfg, auto = resolve(self.config.member, data, valid, FusionRecommender)  # "auto" fields decided once, for every member
        self.config = dataclasses.replace(self.config, member=member_cfg)
        self.members = []
        for i, cfg in enumerate(self._member_configs()):
            member = FusionRecommender(cfg).fit(data, valid=valid, monitor=self._monitor,
                                                run_dir=None if run_dir is None else run_dir / f"member{i}")
            self.members.append(member)
        infos = [m.fit_info for m in self.members]
        self.fit_info = {
            "members": [{k: v for k, v in fi.items() if k != "history"} for fi in infos],
            "epochs_run": sum(fi.get("epochs_run", 0) for fi in infos),
            "train_seconds": sum(fi.get("train_seconds", 0.0) for fi in infos),
        }
        if auto is not None:
            self.fit_info["auto"] = auto
        if valid is not None and len(valid):
            from ctxrec.evaluation.evaluator import EvalConfig, Evaluator

            key = self.config.member.train.valid_metric
            self.fit_info["best_valid"] = Evaluator(EvalConfig(exclude_seen=not self.keeps_seen)).evaluate(self, valid).get(key)
            self.fit_info["valid_metric"] = key

    @classmethod
    def from_members(cls, members: Sequence[Recommender]) -> EnsembleRecommender:
        """The ensemble of fusion models trained apart (in parallel processes, or on several machines) from
        one config but ``train.seed``, on the same data: what :meth:`fit` would have trained one after the
        other. Anything else (another kind, another config, other data) is a :class:`ConfigError` naming it."""
        if len(members) < 2:
            raise ConfigError(f"an ensemble needs at least two members, got {len(members)}")
        for i, m in enumerate(members):
            if not isinstance(m, FusionRecommender) or not m.is_fitted:
                what = f"a {m.kind!r} model" if not isinstance(m, FusionRecommender) else "an unfitted fusion model"
                raise ConfigError(f"member {i} is {what}; an ensemble's members are fitted fusion models")
        fusion = [m for m in members if isinstance(m, FusionRecommender)]
        first = fusion[0]
        base = flatten(to_dict(first.config))
        for i, m in enumerate(fusion[1:], 1):
            flat = flatten(to_dict(m.config))
            differ = sorted(k for k in base.keys() | flat.keys() if not training_only(k) and base.get(k) != flat.get(k))
            if differ:
                shown = ", ".join(f"{k} ({base.get(k)!r} against {flat.get(k)!r})" for k in differ[:5])
                raise ConfigError(f"member {i}'s config differs from member 0's in {shown}; members are one network "
                                  "trained with different train.seed values (and, if you like, another loss, "
                                  "n_negatives or train.* schedule)")
            if not _same_data(m, first):
                raise ConfigError(f"member {i} was trained on other data than member 0 (its items, users or histories "
                                  "differ); train every member on the same data and split")
        seeds = [m.config.train.seed for m in fusion]
        twice = sorted({s for s in seeds if seeds.count(s) > 1})
        if twice:
            raise ConfigError(f"members {[i for i, s in enumerate(seeds) if s == twice[0]]} have the same train.seed "
                              f"{twice[0]}: the same model twice (or one run given twice), or one network trained "
                              "two ways from the same initial weights and batch order, which averages away little; "
                              "give runs of different seeds")
        ens = cls(EnsembleConfig(member=first.config, seeds=tuple(seeds)))
        ens.item_vocab, ens.user_vocab, ens.schema = first.item_vocab, first.user_vocab, first.schema
        ens._hist_indptr, ens._hist_items, ens.item_titles = first._hist_indptr, first._hist_items, dict(first.item_titles)
        ens.members = list(fusion)
        for m in ens.members:
            ens._adopt(m)
        ens.fit_info = {"members": [{k: v for k, v in m.fit_info.items() if k != "history"} for m in fusion],
                        "epochs_run": sum(m.fit_info.get("epochs_run", 0) for m in fusion),
                        "train_seconds": sum(m.fit_info.get("train_seconds", 0.0) for m in fusion)}
        return ens

    def _adopt(self, member: FusionRecommender) -> None:
        """Give a member the ensemble's vocabularies and histories (they are not saved per member)."""
        member.item_vocab, member.user_vocab, member.schema = self.item_vocab, self.user_vocab, self.schema
        member._hist_indptr, member._hist_items = self._hist_indptr, self._hist_items
        member.item_titles = self.item_titles

    def context_schema(self) -> dict[str, dict[str, Any]]:
        """The members' (one fusion config, so one schema)."""
        self._check_fitted()
        return self.members[0].context_schema() if self.members else {}

    def _score(self, batch: QueryBatch) -> np.ndarray:
        # Each member returns log P_m over the catalogue; log mean_m P_m, computed stably.
        log_ps = np.stack([np.asarray(m.score(batch), dtype=np.float64) for m in self.members])  # (M, B, V)
        out = np.logaddexp.reduce(log_ps, axis=0) - np.log(len(self.members))
        return out.astype(np.float32)

    # ------------------------------------------------------------------ persistence
    def _meta(self) -> dict[str, Any]:
        # Each member's own config: members trained apart may differ from config.member in training fields.
        return {"members": [{"config": to_dict(m.config), **m._meta()} for m in self.members]}

    def _load_meta(self, meta: dict[str, Any]) -> None:
        from ctxrec.config import from_dict

        metas = meta.get("members", [])
        cfgs = self._member_configs()
        if len(metas) != len(cfgs):
            raise ConfigError(f"saved ensemble has {len(metas)} members but its config lists {len(cfgs)} seeds")
        self.members = []
        for derived, m_meta in zip(cfgs, metas, strict=True):
            # The config the member's weights were saved with; folders saved before members could differ in
            # training fields lack it, and their members are config.member with their seed.
            cfg = from_dict(FusionConfig, m_meta["config"]) if "config" in m_meta else derived
            member = FusionRecommender(cfg)
            member._load_meta({k: v for k, v in m_meta.items() if k != "config"})
            self.members.append(member)

    def _state(self) -> dict[str, np.ndarray]:
        return {f"m{i}.{k}": v for i, m in enumerate(self.members) for k, v in m._state().items()}

    def _load_state(self, state: dict[str, np.ndarray]) -> None:
        for i, member in enumerate(self.members):
            self._adopt(member)  # histories are set by now (load() reads them before the state)
            prefix = f"m{i}."
            member._load_state({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})


TRAINING_FIELDS = frozenset({"loss", "n_negatives", "sampled_above"})
"""FusionConfig fields that only shape training (the loss and its negatives), besides every ``train.*``."""


def training_only(key: str) -> bool:
    """Whether a flattened FusionConfig key says how a member was trained rather than what it computes:
    members trained apart may differ in these (their seed, their loss, their schedule), not in the network."""
    return key.startswith("train.") or key in TRAINING_FIELDS


def _same_data(a: Recommender, b: Recommender) -> bool:
    """Fitted on the same items, users and histories (so on the same data and split)."""
    assert a.item_vocab is not None and a.user_vocab is not None and b.item_vocab is not None and b.user_vocab is not None
    assert a._hist_indptr is not None and a._hist_items is not None and b._hist_indptr is not None and b._hist_items is not None
    return (a.item_vocab.ids == b.item_vocab.ids and a.user_vocab.ids == b.user_vocab.ids
            and np.array_equal(a._hist_indptr, b._hist_indptr) and np.array_equal(a._hist_items, b._hist_items))
