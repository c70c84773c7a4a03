"""Lexical item vectors: n-gram TF-IDF + truncated SVD, saved without pickle, applied to new texts."""

from __future__ import annotations

import numpy as np
import pytest

from ctxrec.errors import ConfigError
from ctxrec.text.lexical import LexicalEncoder

TEXTS = [
    "nitrile gloves size M powder free", "nitrile gloves size L powder free", "latex gloves size M",
    "soldering station 60W adjustable", "soldering iron tips 0.5mm", "digital multimeter auto range",
    "pH meter pen with buffer", "pH test strips 0-14", "3D printer filament PLA 1.75mm",
    "3D printer filament PETG 1.75mm", "magnetic stirrer hot plate", "beaker set borosilicate glass",
]


def test_rows_are_unit_length_and_near_texts_are_near() -> None:
    enc = LexicalEncoder(6)
    v = enc.fit_transform(TEXTS)
    assert v.shape == (len(TEXTS), 6) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-5)
    sim = v @ v.T
    # the two nitrile gloves differ in one size token: closer to each other than to the soldering station
    assert sim[0, 1] > sim[0, 3] and sim[8, 9] > sim[8, 5]


def test_transform_of_catalogue_text_matches_the_fit_and_survives_a_save() -> None:
    enc = LexicalEncoder(6)
    v = enc.fit_transform(TEXTS)
    np.testing.assert_allclose(enc.transform(TEXTS), v, atol=1e-5)
    again = LexicalEncoder.from_saved(enc.to_meta(), enc.to_state())
    np.testing.assert_array_equal(again.transform([*TEXTS[:3], "nitrile gloves size XL"]),
                                  enc.transform([*TEXTS[:3], "nitrile gloves size XL"]))
    new = enc.transform(["nitrile gloves size XL powder free"])[0]
    assert int(np.argmax(v @ new)) in (0, 1)  # a new item lands beside its catalogue twins


def test_small_catalogue_lowers_the_dimension_and_bad_input_is_said() -> None:
    enc = LexicalEncoder(256)
    assert enc.fit_transform(TEXTS[:4]).shape == (4, 3) and enc.dim == 3
    with pytest.raises(ConfigError, match="need item text"):
        LexicalEncoder(8).fit_transform(["", "  "])
    with pytest.raises(ConfigError, match="dim >= 1"):
        LexicalEncoder(0)
    with pytest.raises(ConfigError, match="not fitted"):
        LexicalEncoder(4).transform(["x"])
