"""Context encoders: vocabularies with an unknown id, numeric buckets, cyclic time, JSON round trip."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ctxrec.context import ContextConfig, ContextEncoder, time_features
from ctxrec.data.dataset import ContextField, Dataset, DatasetSchema
from ctxrec.errors import ConfigError


def _data() -> Dataset:
    frame = pd.DataFrame({
        "user_id": ["u1", "u1", "u2", "u2"],
        "item_id": ["a", "b", "a", "c"],
        "timestamp": [0.0, 3600.0 * 6, 86_400.0, 86_400.0 + 3600],
        "device": ["tv", "mobile", "tv", None],
        "temp": [10.0, 20.0, np.nan, 30.0],
    })
    schema = DatasetSchema(context=(ContextField(name="device"), ContextField(name="temp", kind="numeric")))
    return Dataset.from_frames(frame, schema=schema)


def test_categorical_vocab_with_unknown_bucket() -> None:
    enc = ContextEncoder().fit(_data())
    assert enc.vocabs["device"] == {"mobile": 1, "tv": 2}
    ids, _ = enc.encode([{"device": "tv"}, {"device": "car"}, {}])
    assert ids[:, 0].tolist() == [2, 0, 0]  # unseen and missing values -> 0
    assert enc.cardinalities[0] == 3


def test_repeated_values_are_looked_up_once_but_each_type_as_itself() -> None:
    """encode() looks each distinct value up once per call; True, 1, 1.0 and "1" are still different
    categories (str() of each), and NaN and unhashable values still encode."""
    frame = pd.DataFrame({"user_id": ["u"] * 4, "item_id": list("abcd"), "timestamp": [0.0, 1.0, 2.0, 3.0],
                          "flag": ["True", "1", "1.0", "x"]})
    enc = ContextEncoder().fit(Dataset.from_frames(frame, schema=DatasetSchema(context=(ContextField(name="flag"),))))
    values = [True, 1, 1.0, "1", "x", True, float("nan"), ["x"], None, 1]
    ids, _ = enc.encode([{"flag": v} for v in values])
    assert ids[:, 0].tolist() == [enc._cat_id("flag", v) for v in values]
    v = enc.vocabs["flag"]
    assert ids[:4, 0].tolist() == [v["True"], v["1"], v["1.0"], v["1"]] and len(set(ids[:3, 0])) == 3


def test_numeric_standardised_and_bucketed() -> None:
    enc = ContextEncoder(ContextConfig(numeric_buckets=2)).fit(_data())
    ids, dense = enc.encode([{"temp": 20.0}, {"temp": None}], timestamps=np.array([np.nan, np.nan]))
    assert dense[0, 0] == pytest.approx(0.0, abs=1e-6)  # mean of 10, 20, 30
    assert ids[1, 1] == 0 and dense[1, 0] == 0.0  # missing -> bucket 0, value 0
    assert ids[0, 1] >= 1


def test_hashing_is_stable_and_never_zero_for_known_values() -> None:
    enc = ContextEncoder(ContextConfig(hash_buckets=16)).fit(_data())
    a, _ = enc.encode([{"device": "never-seen"}])
    b, _ = enc.encode([{"device": "never-seen"}])
    assert a[0, 0] == b[0, 0] and 1 <= a[0, 0] <= 16


def test_decode_gives_back_what_the_model_reads() -> None:
    """Known categories and numeric values come back (numbers to 6 significant digits, from float32);
    missing and unseen values, and hashed fields, are left out rather than guessed."""
    enc = ContextEncoder().fit(_data())
    ctxs = [{"device": "tv", "temp": 12.345678}, {"device": "car", "temp": None}, {}, {"temp": -1e6 / 3}]
    ids, dense = enc.encode(ctxs, timestamps=np.array([0.0, 1.0, np.nan, 2.0]))
    assert enc.decode(ids, dense) == [{"device": "tv", "temp": 12.3457}, {}, {}, {"temp": -333333.0}]
    hashed = ContextEncoder(ContextConfig(hash_buckets=16)).fit(_data())
    ids, dense = hashed.encode([{"device": "tv", "temp": 10.0}])
    assert hashed.decode(ids, dense) == [{"temp": 10.0}]


def test_time_features_are_cyclic_and_flag_missing() -> None:
    f = time_features(np.array([0.0, 86_400.0 * 7, 6 * 3600.0, np.nan]), np.array([np.nan, 0.0, 0.0, 0.0]))
    np.testing.assert_allclose(f[0], f[1][[0, 1, 2, 3, 4, 5]] * [1, 1, 1, 1, 0, 1] + [0, 0, 0, 0, f[0, 4], 0], atol=1e-5)
    assert f[2, 0] == pytest.approx(1.0) and f[2, 1] == pytest.approx(0.0, abs=1e-6)  # 06:00 -> quarter turn
    assert f[1, 4] == pytest.approx(np.log1p(24 * 7))
    assert f[3].tolist() == [0.0] * 6


def test_columns_match_dict_encoding_and_json_round_trip() -> None:
    data = _data()
    enc = ContextEncoder().fit(data)
    rows = np.arange(data.n_events)
    ids_cols, dense_cols = enc.encode_columns(data.interactions, rows)
    ctx = data.interactions[["device", "temp"]].to_dict("records")
    ids_dict, dense_dict = enc.encode(ctx, data.interactions["timestamp"].to_numpy())
    np.testing.assert_array_equal(ids_cols, ids_dict)
    np.testing.assert_allclose(dense_cols, dense_dict)
    again = ContextEncoder.from_dict(json.loads(json.dumps(enc.to_dict())))
    np.testing.assert_array_equal(again.encode(ctx)[0], ids_dict)


def test_unknown_field_is_an_error() -> None:
    with pytest.raises(ConfigError, match="weather"):
        ContextEncoder(ContextConfig(fields=("weather",))).fit(_data())


def test_render_text_skips_missing() -> None:
    assert ContextEncoder.render_text({"daypart": "evening", "device": None, "city": "Berlin"}) == \
        "daypart: evening; city: Berlin"
