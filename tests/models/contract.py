"""The contract every Recommender must honour, as a mixin test class (implicit/lkpy/RecTools style).

A model's test module subclasses :class:`RecommenderContract` in a ``Test*`` class and supplies
``make_model()`` with a tiny config::

    class TestEASEContract(RecommenderContract):
        exact_checkerboard = True

        def make_model(self):
            return EASERecommender(EASEConfig(l2=1.0))

The known-answer fixture is a "checkerboard": users and items split in two groups, each user has
interacted with every item of its own group except one withheld item (a different one per user).
Models opt into stronger checks with class attributes (see the ClassVars below);
tests/models/test_registry.py fails if a registered model kind has no such class.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest

from ctxrec.config import from_dict, to_dict
from ctxrec.data.dataset import Dataset
from ctxrec.data.splits import EvalSet, leave_one_out
from ctxrec.errors import ConfigError, NotFittedError, QueryError, UnknownIdError, UnknownQueryIdError
from ctxrec.evaluation.evaluator import EvalConfig, Evaluator
from ctxrec.models import MODELS, get_model_class, load_model
from ctxrec.models.base import Recommendations, Recommender, RecQuery

GROUPS = ("a", "b")
ITEMS_PER_GROUP = 5
USERS_PER_GROUP = {"a": 10, "b": 15}  # unequal, so popularity ranks group b first
COLD_ITEM = "cold-item"  # in the catalogue, never interacted with
DAY = 86_400.0
CONTEXT_AWARE = {"fusion", "pointwise", "fm", "context_popularity", "ensemble"}
"""Kinds whose scores depend on the request context (the others must say they ignore it)."""
PICKLE_SUFFIXES = {".pkl", ".pickle", ".pt", ".pth", ".bin", ".joblib", ".npy", ".npz"}


@dataclass(frozen=True)
class _Event:
    """An event recorded after training, as a service's event store returns it."""

    item_id: str
    timestamp: float
    context: dict[str, str]
    event_type: str = "view"


@dataclass(frozen=True)
class Checkerboard:
    """The checkerboard dataset and its known answers (all in external ids)."""

    data: Dataset
    group_of_user: dict[str, str]
    group_items: dict[str, list[str]]
    withheld: dict[str, str]  # user -> the one item of its group it never interacted with

    @property
    def users(self) -> list[str]:
        return list(self.group_of_user)

    def history(self, user: str) -> list[str]:
        g = self.group_of_user[user]
        return [i for i in self.group_items[g] if i != self.withheld[user]]


def checkerboard() -> Checkerboard:
    """Build the checkerboard in code: groups a (10 users) and b (15 users) of 5 items each, plus one
    cold catalogue item.

    Ids are non-numeric strings so a dense index can never pass for an external id. User ``k`` of a
    group withholds item ``k mod 5`` of its group, so items of one group have the same train count
    (a: 8, b: 12, cold: 0) and only the group structure separates a user's candidates. Events are one
    hour apart within a user, users one day apart.
    """
    group_items = {g: [f"{g}-item-{j}" for j in range(ITEMS_PER_GROUP)] for g in GROUPS}
    group_of_user: dict[str, str] = {}
    withheld: dict[str, str] = {}
    rows = []
    for gi, g in enumerate(GROUPS):
        for k in range(USERS_PER_GROUP[g]):
            user = f"{g}-user-{k}"
            group_of_user[user] = g
            withheld[user] = group_items[g][k % ITEMS_PER_GROUP]
            day = gi * 100 + k
            hist = [i for i in group_items[g] if i != withheld[user]]
            # rotate so sequence models see every item in every position
            hist = hist[k % len(hist) :] + hist[: k % len(hist)]
            for pos, item in enumerate(hist):
                rows.append({"user_id": user, "item_id": item, "timestamp": 1.7e9 + day * DAY + pos * 3600.0})
    catalogue = [i for g in GROUPS for i in group_items[g]] + [COLD_ITEM]
    data = Dataset.from_frames(
        pd.DataFrame(rows), items=pd.DataFrame({"item_id": catalogue}), name="checkerboard"
    )
    return Checkerboard(data=data, group_of_user=group_of_user, group_items=group_items, withheld=withheld)


def context_checkerboard() -> Dataset:
    """The checkerboard with request context: ``weather`` (categorical, values "2" and "sun": a number-like
    category) follows the item's position in its group, ``temp`` (numeric) the hour of the event."""
    from ctxrec.data.dataset import ContextField, DatasetSchema

    data = checkerboard().data
    inter = data.interactions.copy()
    inter["weather"] = ["2" if int(i.rsplit("-", 1)[1]) % 2 == 0 else "sun" for i in inter["item_id"]]
    inter["temp"] = (inter["timestamp"] % DAY) / 3600.0 + 5.0
    schema = DatasetSchema(context=(ContextField(name="weather"), ContextField(name="temp", kind="numeric")))
    return Dataset.from_frames(inter, items=data.items, schema=schema, name="checkerboard-context")


class RecommenderContract:
    """Mixin of contract tests. Subclasses must define ``make_model()`` (tiny, fast config)."""

    learns_groups: ClassVar[bool] = True
    """Top-1 (exclude_seen) of every checkerboard user, and of an anonymous history of two group
    items, is an item of that group. Only non-personalised baselines set this False."""
    exact_checkerboard: ClassVar[bool] = False
    """Item-item models: top-1 is exactly the withheld item, for known users and for an anonymous
    history of "all the group but one"."""
    cold_start_is_popularity: ClassVar[bool] = False
    """Queries with no history are ranked exactly like PopularityRecommender ranks them."""
    batch_rtol: ClassVar[float] = 1e-5
    """Tolerance of the batch-vs-one-by-one score comparison (0 = bit-identical)."""
    refit_rtol: ClassVar[float] = 0.0
    """Tolerance of the fit-twice-from-the-same-config comparison (0 = bit-identical)."""

    def make_model(self) -> Recommender:
        raise NotImplementedError(
            f"{type(self).__name__} must define make_model() returning an unfitted model"
        )

    # ------------------------------------------------------------------ fixtures (fit once per class)
    @pytest.fixture(scope="class")
    @classmethod
    def board(cls) -> Checkerboard:
        return checkerboard()

    @pytest.fixture(scope="class")
    @classmethod
    def fitted(cls, board: Checkerboard) -> Recommender:
        return cls().make_model().fit(board.data)

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _queries(board: Checkerboard) -> list[RecQuery]:
        """A mix of every query shape: known users, anonymous histories, a new user, a cold query."""
        a, b = board.group_items["a"], board.group_items["b"]
        return [
            RecQuery(user_id="a-user-0"),
            RecQuery(user_id="b-user-3"),
            RecQuery(history=a[:2]),
            RecQuery(user_id="brand-new-user", history=[b[4], b[1]]),
            RecQuery(user_id="brand-new-user"),
            RecQuery(),
            RecQuery(user_id="a-user-7", history=[b[0]]),  # explicit history overrides the stored one
        ]

    @staticmethod
    def _full_scores(model: Recommender, queries: Sequence[RecQuery]) -> list[Recommendations]:
        return model.recommend(queries, k=model.n_items, exclude_seen=False)

    def _assert_same(self, got: Recommendations, want: Recommendations, rtol: float) -> None:
        if rtol == 0:
            assert got.item_ids == want.item_ids
            np.testing.assert_array_equal(got.scores, want.scores)
        else:
            # Compare scores by item so near-ties that swap under float noise do not fail the test.
            assert sorted(got.item_ids) == sorted(want.item_ids)
            w = dict(zip(want.item_ids, want.scores, strict=True))
            np.testing.assert_allclose(got.scores, [w[i] for i in got.item_ids], rtol=rtol, atol=rtol)

    # ------------------------------------------------------------------ registry / config
    def test_kind_is_registered(self) -> None:
        model = self.make_model()
        assert model.kind in MODELS
        assert get_model_class(model.kind) is type(model)

    def test_config_round_trip(self) -> None:
        cfg = self.make_model().config
        assert from_dict(type(cfg), to_dict(cfg)) == cfg
        assert from_dict(type(cfg), json.loads(json.dumps(to_dict(cfg)))) == cfg
        with pytest.raises(ConfigError, match="no_such_key"):
            from_dict(type(cfg), {**to_dict(cfg), "no_such_key": 1})

    # ------------------------------------------------------------------ lifecycle
    def test_recommend_before_fit_raises(self, tmp_path: Path) -> None:
        model = self.make_model()
        assert not model.is_fitted
        with pytest.raises(NotFittedError):
            model.recommend([RecQuery(user_id="a-user-0")])
        with pytest.raises(NotFittedError):
            model.save(tmp_path / "m")

    def test_fit_returns_self(self, fitted: Recommender, board: Checkerboard) -> None:
        assert fitted.is_fitted
        assert fitted.n_items == board.data.n_items

    # ------------------------------------------------------------------ results
    def test_returns_external_ids(self, fitted: Recommender, board: Checkerboard) -> None:
        catalogue = set(board.data.item_vocab.ids)
        for rec in fitted.recommend([RecQuery(user_id=u) for u in board.users], k=3):
            assert len(rec.item_ids) == 3
            assert all(isinstance(i, str) and i in catalogue for i in rec.item_ids)
            assert rec.scores.dtype == np.float32 and rec.scores.shape == (3,)
            assert np.all(np.isfinite(rec.scores))
            assert np.all(np.diff(rec.scores) <= 0), "scores must be sorted best first"

    def test_checkerboard_groups(self, fitted: Recommender, board: Checkerboard) -> None:
        if not self.learns_groups:
            pytest.skip(f"{type(self).__name__}.learns_groups is False (see that class for why)")
        recs = fitted.recommend([RecQuery(user_id=u) for u in board.users], k=1)
        wrong = {
            u: r.item_ids[0]
            for u, r in zip(board.users, recs, strict=True)
            if r.item_ids[0] not in board.group_items[board.group_of_user[u]]
        }
        assert not wrong, f"top-1 outside the user's group: {wrong}"
        for g, items in board.group_items.items():
            (rec,) = fitted.recommend([RecQuery(history=items[:2])], k=1)
            assert rec.item_ids[0] in items[2:], f"anonymous {g}-history got {rec.item_ids}"

    def test_checkerboard_exact(self, fitted: Recommender, board: Checkerboard) -> None:
        if not self.exact_checkerboard:
            pytest.skip(f"{type(self).__name__}.exact_checkerboard is False")
        recs = fitted.recommend([RecQuery(user_id=u) for u in board.users], k=1)
        got = {u: r.item_ids[0] for u, r in zip(board.users, recs, strict=True)}
        assert got == board.withheld
        for items in board.group_items.values():
            for j, target in enumerate(items):
                (rec,) = fitted.recommend([RecQuery(history=items[:j] + items[j + 1 :])], k=1)
                assert rec.item_ids == [target]

    def test_exclude_seen(self, fitted: Recommender, board: Checkerboard) -> None:
        n = fitted.n_items
        for u in board.users:
            (rec,) = fitted.recommend([RecQuery(user_id=u)], k=n)
            seen = set(board.history(u))
            assert not seen & set(rec.item_ids)
            assert len(rec.item_ids) == n - len(seen)
        hist = [board.group_items["a"][0], board.group_items["b"][0]]
        (rec,) = fitted.recommend([RecQuery(history=hist)], k=n)
        assert not set(hist) & set(rec.item_ids) and len(rec.item_ids) == n - 2
        (rec,) = fitted.recommend([RecQuery(user_id="a-user-0")], k=n, exclude_seen=False)
        assert sorted(rec.item_ids) == sorted(board.data.item_vocab.ids)

    def test_candidates_restrict_results(self, fitted: Recommender, board: Checkerboard) -> None:
        user = "a-user-0"
        seen_item = board.history(user)[0]
        cands = [seen_item, board.group_items["b"][2], COLD_ITEM]
        (full,) = self._full_scores(fitted, [RecQuery(user_id=user)])
        full_score = dict(zip(full.item_ids, full.scores, strict=True))
        (rec,) = fitted.recommend([RecQuery(user_id=user)], k=10, candidates=cands, exclude_seen=False)
        assert sorted(rec.item_ids) == sorted(cands)
        np.testing.assert_array_equal(rec.scores, [full_score[i] for i in rec.item_ids])
        (rec,) = fitted.recommend([RecQuery(user_id=user)], k=10, candidates=cands)
        assert sorted(rec.item_ids) == sorted(cands[1:])
        (rec,) = fitted.recommend([RecQuery(user_id=user)], k=1, candidates=cands[1:])
        assert len(rec.item_ids) == 1 and rec.item_ids[0] in cands[1:]
        with pytest.raises(UnknownIdError, match="no-such-item"):
            fitted.recommend([RecQuery(user_id=user)], candidates=["no-such-item"])

    def test_k_larger_than_catalogue(self, fitted: Recommender, board: Checkerboard) -> None:
        user = "b-user-2"
        (rec,) = fitted.recommend([RecQuery(user_id=user)], k=10 * fitted.n_items)
        expected = set(board.data.item_vocab.ids) - set(board.history(user))
        assert len(rec.item_ids) == len(expected) and set(rec.item_ids) == expected
        (rec,) = fitted.recommend([RecQuery(user_id=user)], k=10 * fitted.n_items, exclude_seen=False)
        assert len(rec.item_ids) == fitted.n_items
        with pytest.raises(ValueError, match="k must be a positive integer"):
            fitted.recommend([RecQuery(user_id=user)], k=0)

    def test_top_k_is_a_prefix_of_a_longer_list(self, fitted: Recommender, board: Checkerboard) -> None:
        queries = self._queries(board)
        full = fitted.recommend(queries, k=fitted.n_items)
        for k in (1, 3, 7):
            for short, long in zip(fitted.recommend(queries, k=k), full, strict=True):
                assert short.item_ids == long.item_ids[:k]
                np.testing.assert_array_equal(short.scores, long.scores[:k])

    def test_batch_equals_one_by_one(self, fitted: Recommender, board: Checkerboard) -> None:
        queries = self._queries(board)
        for exclude_seen in (True, False):
            batch = fitted.recommend(queries, k=fitted.n_items, exclude_seen=exclude_seen)
            assert len(batch) == len(queries)
            for q, got in zip(queries, batch, strict=True):
                (single,) = fitted.recommend([q], k=fitted.n_items, exclude_seen=exclude_seen)
                self._assert_same(got, single, self.batch_rtol)

    def test_unknown_user_without_history_falls_back(self, fitted: Recommender, board: Checkerboard) -> None:
        """Documented cold-start policy: an unknown user id with no history is not an error; it is
        ranked like a query with no user at all (context/popularity fallback)."""
        unknown, empty = fitted.recommend([RecQuery(user_id="never-seen"), RecQuery()], k=5)
        assert len(unknown.item_ids) == 5 and np.all(np.isfinite(unknown.scores))
        assert unknown.item_ids == empty.item_ids
        np.testing.assert_array_equal(unknown.scores, empty.scores)
        (again,) = fitted.recommend([RecQuery(user_id="never-seen")], k=5)
        assert again.item_ids == unknown.item_ids
        if self.cold_start_is_popularity:
            from ctxrec.models.popularity import PopularityRecommender

            (pop,) = PopularityRecommender().fit(board.data).recommend([RecQuery()], k=5)
            assert unknown.item_ids == pop.item_ids

    def test_history_query_for_new_user(self, fitted: Recommender, board: Checkerboard) -> None:
        hist = board.group_items["b"][:3]
        named, anonymous = fitted.recommend(
            [RecQuery(user_id="new", history=hist), RecQuery(history=hist)], k=4
        )
        assert named.item_ids == anonymous.item_ids and len(named.item_ids) == 4
        assert not set(hist) & set(named.item_ids)
        with pytest.raises(UnknownIdError, match="no-such-item"):
            fitted.recommend([RecQuery(history=["no-such-item"])])

    def test_single_query_must_be_wrapped(self, fitted: Recommender) -> None:
        with pytest.raises(TypeError, match="wrap a single query"):
            fitted.recommend(RecQuery(user_id="a-user-0"))  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="wrap a single query"):
            fitted.recommend("a-user-0")

    def test_user_ids_are_queries(self, fitted: Recommender) -> None:
        """``recommend(["u"])`` is ``recommend([RecQuery(user_id="u")])``; anything else is refused by name."""
        by_id = fitted.recommend(["a-user-0"], k=4)[0]
        assert by_id.item_ids == fitted.recommend([RecQuery(user_id="a-user-0")], k=4)[0].item_ids
        with pytest.raises(TypeError, match=r"query 1 is a int .*RecQuery or a user id"):
            fitted.recommend(["a-user-0", 7])  # type: ignore[list-item]

    def test_evaluator_runs(self, fitted: Recommender, board: Checkerboard) -> None:
        cases = leave_one_out(board.data).test
        res = Evaluator(EvalConfig(ks=(1, 5))).evaluate(fitted, cases)
        assert res["n_cases"] == len(board.users)
        assert all(0.0 <= v <= 1.0 for k, v in res.items() if k != "n_cases")

    def test_evaluator_metrics_have_the_known_values(self, fitted: Recommender, board: Checkerboard) -> None:
        """One case per user: its stored history, target its withheld item, the only unseen item of its
        group. Where the model learns the groups (top-1 in the user's group) every case is a hit at
        rank 1, so HR, recall, NDCG, MRR and MAP are 1 and precision@k is 1/k. For every model the
        figures equal those worked out from the rank ``recommend`` gives each target: the evaluator's
        batch path and the public path rank alike."""
        ks = (1, 3, 5)
        users = board.users
        assert fitted.user_vocab is not None and fitted.item_vocab is not None
        dense = fitted.user_vocab.lookup(users)
        hists = [fitted.known_history(int(u)) for u in dense]
        cases = EvalSet(users=dense, histories=hists, history_times=[np.full(len(h), np.nan) for h in hists],
                        targets=[fitted.item_vocab.lookup([board.withheld[u]]) for u in users],
                        contexts=[{} for _ in users], timestamps=np.full(len(users), np.nan))
        res = Evaluator(EvalConfig(ks=ks)).evaluate(fitted, cases)
        full = fitted.recommend([RecQuery(user_id=u) for u in users], k=fitted.n_items)
        rank = np.array([rec.item_ids.index(board.withheld[u]) for u, rec in zip(users, full, strict=True)])  # 0-based
        if self.learns_groups:
            assert rank.tolist() == [0] * len(users)
        for k in ks:
            hit = rank < k
            want = {"hr": hit.mean(), "recall": hit.mean(), "precision": hit.mean() / k,
                    "ndcg": np.where(hit, 1 / np.log2(rank + 2), 0).mean(),
                    "mrr": np.where(hit, 1 / (rank + 1), 0).mean(), "map": np.where(hit, 1 / (rank + 1), 0).mean(),
                    "f1": np.where(hit, 2 * (1 / k) / (1 / k + 1), 0).mean()}
            for name, value in want.items():
                assert res[f"{name}@{k}"] == pytest.approx(value, abs=1e-12), (name, k)
        if self.learns_groups:
            assert res["ndcg@5"] == res["mrr@5"] == res["hr@1"] == 1.0 and res["precision@5"] == pytest.approx(0.2)

    # ------------------------------------------------------------------ query encoding
    def test_invalid_queries_name_the_query_and_field(self, fitted: Recommender, board: Checkerboard) -> None:
        a = board.group_items["a"]
        with pytest.raises(UnknownQueryIdError, match="no-such-item") as exc:
            fitted.encode_queries([RecQuery(), RecQuery(history=[a[0], "no-such-item"])])
        assert (exc.value.query, exc.value.field) == (1, "history.1")
        bad = [
            (RecQuery(history_timestamps=[1.0]), "history_timestamps", "needs history"),
            (RecQuery(history=a[:2], history_timestamps=[1.0]), "history_timestamps", "1 values but history has 2"),
            (RecQuery(history=a[:1], history_contexts=[{}, {}]), "history_contexts", "2 values but history has 1"),
        ]
        for q, field, message in bad:
            with pytest.raises(QueryError, match=message) as err:
                fitted.encode_queries([q])
            assert (err.value.query, err.value.field) == (0, field)

    def test_new_events_extend_the_known_history(self, fitted: Recommender, board: Checkerboard) -> None:
        """Events recorded after training (a service's store) follow the user's stored history, which
        stays marked as the trained part (``known_prefix``: a model reads its stored contexts); a new user
        has them alone; events of items the model does not know are skipped; the kept events' types come
        along. A new user's events rank like the same history given explicitly."""
        user, extra = "a-user-0", board.withheld["a-user-0"]
        events = [_Event(extra, 1.9e9, {}), _Event("not-in-the-catalogue", 1.9e9 + 1, {})]
        batch = fitted.encode_queries([RecQuery(user_id=user), RecQuery(user_id="brand-new"), RecQuery(user_id=user)],
                                      new_events=[events, events, []])
        assert fitted.item_vocab is not None
        stored = fitted.item_vocab.external(fitted.known_history(fitted.user_vocab.index(user)))  # type: ignore[union-attr]
        assert fitted.item_vocab.external(batch.histories[0]) == [*stored, extra]
        assert fitted.item_vocab.external(batch.histories[1]) == [extra]
        assert fitted.item_vocab.external(batch.histories[2]) == stored and batch.history_contexts[2] is None  # type: ignore[index]
        assert batch.history_times[0][-1] == 1.9e9 and np.isnan(batch.history_times[0][0])
        assert batch.known_prefix == [len(stored), 0, len(stored)]
        assert batch.history_event_types == [["view"], ["view"], None]
        idx, _ = fitted.recommend_indices(batch, 3)
        explicit_query = RecQuery(history=[extra], history_contexts=[{}], history_timestamps=[1.9e9])
        (explicit,) = fitted.recommend([explicit_query], k=3)
        assert fitted.item_vocab.external(idx[1]) == explicit.item_ids
        with pytest.raises(QueryError, match="takes no new events"):
            fitted.encode_queries([RecQuery(history=[extra])], new_events=[events])

    # ------------------------------------------------------------------ request context
    def test_context_schema_is_truthful(self) -> None:
        """context_schema() lists the fields the model reads (with their training values), check_context()
        types values by it and rejects unknown keys, and the scores change with the context exactly when
        the schema says the model uses it."""
        model = self.make_model().fit(context_checkerboard())
        schema = model.context_schema()
        assert bool(schema) == (model.kind in CONTEXT_AWARE), schema
        for name, spec in schema.items():
            assert spec["kind"] == {"weather": "categorical", "temp": "numeric"}[name]
            if name == "weather" and spec["values"] is not None:
                assert spec["values"] == ["2", "sun"]
        with pytest.raises(QueryError, match=r"unknown context field 'Weather'.*did you mean 'weather'.*temp, weather"):
            model.check_context({"Weather": "2"})
        checked = model.check_context({"weather": "2", "temp": "7.5"})
        assert checked.used == bool(schema) and checked.unknown_values == {}
        assert sorted(checked.unused_fields) == sorted({"weather", "temp"} - set(schema))
        if "weather" in schema:
            assert checked.context["weather"] == "2"  # a number-like category stays a string
            assert model.check_context({"weather": "zzz"}).unknown_values == {"weather": "zzz"}
            assert model.check_context({"weather": "NULL"}).context == {"weather": None}
        if "temp" in schema:
            assert checked.context["temp"] == 7.5
            with pytest.raises(QueryError, match="'warm' is not a number"):
                model.check_context({"temp": "warm"})
        two = [RecQuery(user_id="a-user-0", context={"weather": "2", "temp": 6.0}),
               RecQuery(user_id="a-user-0", context={"weather": "sun", "temp": 20.0})]
        first, second = self._full_scores(model, two)
        by_item = dict(zip(second.item_ids, second.scores, strict=True))
        changed = not np.allclose(first.scores, [by_item[i] for i in first.item_ids], rtol=1e-6, atol=1e-7)
        assert changed == bool(schema), "scores must change with the context exactly when the model uses it"

    # ------------------------------------------------------------------ persistence / determinism
    def test_save_load_round_trip(self, fitted: Recommender, board: Checkerboard, tmp_path: Path) -> None:
        path = tmp_path / "model"
        fitted.save(path)
        for rel in ("config.json", "model.safetensors", "vocab/items.json"):
            assert (path / rel).is_file(), f"saved model lacks {rel}"
        self._assert_no_pickle(path)
        queries = self._queries(board)
        want = self._full_scores(fitted, queries)
        for loaded in (type(fitted).load(path), load_model(path)):
            assert type(loaded) is type(fitted)
            assert loaded.config == fitted.config
            assert loaded.item_vocab is not None and loaded.item_vocab.ids == board.data.item_vocab.ids
            for got, exp in zip(self._full_scores(loaded, queries), want, strict=True):
                self._assert_same(got, exp, 0.0)

    @staticmethod
    def _assert_no_pickle(path: Path) -> None:
        from safetensors import safe_open

        for f in path.rglob("*"):
            if not f.is_file():
                continue
            assert f.suffix not in PICKLE_SUFFIXES, f"{f} looks like a pickle/torch.save file"
            if f.suffix == ".safetensors":
                with safe_open(str(f), framework="numpy") as st:  # parses, so it is a real safetensors file
                    assert list(st.keys())
                continue
            head = f.read_bytes()[:2]
            assert head[:1] != b"\x80", f"{f} starts with a pickle protocol header"
            assert head != b"PK", f"{f} is a zip archive (torch.save format)"

    def test_same_config_same_scores(self, board: Checkerboard) -> None:
        """Two fits from the same config (hence the same seed) give the same scores."""
        queries = self._queries(board)
        first = self._full_scores(self.make_model().fit(board.data), queries)
        second = self._full_scores(self.make_model().fit(board.data), queries)
        for a, b in zip(first, second, strict=True):
            self._assert_same(a, b, self.refit_rtol)
