"""The seed ensemble: the contract, the averaging it promises, and its persistence."""

from __future__ import annotations

import numpy as np
import pytest
from contract import RecommenderContract
from test_fusion import context_dataset, tiny

from ctxrec.errors import ConfigError
from ctxrec.models.base import RecQuery
from ctxrec.models.ensemble import EnsembleConfig, EnsembleRecommender
from ctxrec.models.fusion import FusionRecommender
from ctxrec.training.loop import TrainConfig


class TestEnsembleContract(RecommenderContract):
    # Members are fusion models: as for them, no order signal after a user's last checkerboard item.
    learns_groups = False
    batch_rtol = 1e-4

    def make_model(self) -> EnsembleRecommender:
        return EnsembleRecommender(EnsembleConfig(member=tiny(), seeds=(1, 2)))


@pytest.fixture(scope="module")
def ensemble() -> EnsembleRecommender:
    member = tiny(train=TrainConfig(max_epochs=10, lr=1e-2, batch_size=16, progress=False))
    return EnsembleRecommender(EnsembleConfig(member=member, seeds=(3, 4, 5))).fit(context_dataset(n_users=40))


def test_members_differ_only_by_seed_and_their_probabilities_are_averaged(ensemble: EnsembleRecommender) -> None:
    assert [m.config.train.seed for m in ensemble.members] == [3, 4, 5]
    batch = ensemble.encode_queries([RecQuery(history=["A1", "A2"], context={"device": "tv"}),
                                     RecQuery(history=["B3"], context={"device": "mobile"})])
    probs = np.stack([np.exp(m.score(batch)) for m in ensemble.members])  # (M, B, V)
    assert not np.allclose(probs[0], probs[1])  # different seeds, different models
    np.testing.assert_allclose(np.exp(ensemble.score(batch)), probs.mean(0), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(np.exp(ensemble.score(batch)).sum(1), 1.0, rtol=1e-5)


def test_ensemble_round_trips_with_every_member(ensemble: EnsembleRecommender, tmp_path) -> None:
    ensemble.save(tmp_path / "e")
    again = EnsembleRecommender.load(tmp_path / "e")
    q = [RecQuery(history=["A1"], context={"device": "tv"})]
    a, b = ensemble.recommend(q, k=5)[0], again.recommend(q, k=5)[0]
    assert a.item_ids == b.item_ids
    np.testing.assert_allclose(a.scores, b.scores, rtol=1e-5)
    assert len(again.fit_info["members"]) == 3 and "best_valid" not in again.fit_info  # fitted without valid


@pytest.mark.parametrize("seeds", [(1,), (2, 2), ()])
def test_seeds_must_be_two_or_more_different(seeds: tuple[int, ...]) -> None:
    with pytest.raises(ConfigError, match="seeds"):
        EnsembleConfig(seeds=seeds)


def _member(seed: int, **kw: object) -> FusionRecommender:
    return FusionRecommender(tiny(train=TrainConfig(max_epochs=10, lr=1e-2, batch_size=16, progress=False, seed=seed), **kw))


def test_members_trained_apart_make_the_ensemble_fit_trains(ensemble: EnsembleRecommender, tmp_path) -> None:
    """Three fusion models trained one by one (as parallel processes would) average to the fitted
    ensemble of the same seeds, and the result saves and loads as any ensemble."""
    data = context_dataset(n_users=40)
    apart = EnsembleRecommender.from_members([_member(s).fit(data) for s in (3, 4, 5)])
    assert apart.config.seeds == (3, 4, 5) and len(apart.fit_info["members"]) == 3
    batch = ensemble.encode_queries([RecQuery(history=["A1", "A2"], context={"device": "tv"}),
                                     RecQuery(user_id=ensemble.user_vocab.ids[0])])
    np.testing.assert_allclose(apart.score(batch), ensemble.score(batch), rtol=1e-4, atol=1e-5)
    apart.save(tmp_path / "e")
    np.testing.assert_allclose(EnsembleRecommender.load(tmp_path / "e").score(batch), apart.score(batch), rtol=1e-5)


def test_members_that_are_not_one_config_on_one_data_are_refused() -> None:
    from ctxrec.models.popularity import PopularityRecommender

    data = context_dataset(n_users=40)
    a, b = _member(3).fit(data), _member(4).fit(data)
    with pytest.raises(ConfigError, match="at least two members"):
        EnsembleRecommender.from_members([a])
    with pytest.raises(ConfigError, match=r"member 1 is a 'popularity' model"):
        EnsembleRecommender.from_members([a, PopularityRecommender().fit(data)])
    with pytest.raises(ConfigError, match=r"member 1's config differs from member 0's in d_model \(16 against 8\)"):
        EnsembleRecommender.from_members([a, _member(4, d_model=8).fit(data)])
    with pytest.raises(ConfigError, match="member 2 was trained on other data"):
        EnsembleRecommender.from_members([a, b, _member(5).fit(context_dataset(n_users=40, seed=1))])
    with pytest.raises(ConfigError, match=r"members \[0, 1\] have the same train.seed 3"):  # one model twice
        EnsembleRecommender.from_members([a, _member(3).fit(data)])


def test_members_trained_with_another_loss_join_and_keep_their_own_config(tmp_path) -> None:
    """One network trained two ways (full softmax, sampled softmax) is an ensemble; each member's own
    training config survives a save and load, and the network still may not differ."""
    data = context_dataset(n_users=40)
    ce = _member(3, loss="ce").fit(data)
    sampled = FusionRecommender(tiny(loss="sampled", n_negatives=4,
                                     train=TrainConfig(max_epochs=6, lr=1e-2, batch_size=16, progress=False, seed=4))).fit(data)
    ens = EnsembleRecommender.from_members([ce, sampled])
    batch = ens.encode_queries([RecQuery(history=["A1", "A2"], context={"device": "tv"})])
    probs = np.stack([np.exp(m.score(batch)) for m in (ce, sampled)])
    np.testing.assert_allclose(np.exp(ens.score(batch)), probs.mean(0), rtol=1e-5, atol=1e-7)
    ens.save(tmp_path / "e")
    again = EnsembleRecommender.load(tmp_path / "e")
    assert [(m.config.loss, m.config.n_negatives, m.config.train.max_epochs) for m in again.members] == [
        ("ce", ce.config.n_negatives, 10), ("sampled", 4, 6)]
    np.testing.assert_allclose(again.score(batch), ens.score(batch), rtol=1e-5)
    with pytest.raises(ConfigError, match=r"differs from member 0's in n_layers"):
        EnsembleRecommender.from_members([ce, _member(4, loss="ce", n_layers=2).fit(data)])


def test_a_folder_saved_before_members_kept_their_own_config_still_loads(ensemble: EnsembleRecommender, tmp_path) -> None:
    """Older ensemble folders have no per-member config in state.json: members are config.member with their seed."""
    import json

    ensemble.save(tmp_path / "e")
    meta = json.loads((tmp_path / "e" / "state.json").read_text())
    assert all("config" in m for m in meta["members"])
    for m in meta["members"]:
        del m["config"]
    (tmp_path / "e" / "state.json").write_text(json.dumps(meta))
    again = EnsembleRecommender.load(tmp_path / "e")
    assert [m.config.train.seed for m in again.members] == [3, 4, 5]
    batch = ensemble.encode_queries([RecQuery(history=["A1"], context={"device": "tv"})])
    np.testing.assert_allclose(again.score(batch), ensemble.score(batch), rtol=1e-5)
