"""benchmarks/lexical_vectors.py: TF-IDF n-gram rows reduced by SVD, unit length, zero for an empty text."""

from __future__ import annotations

import numpy as np
import pytest


def test_same_text_same_vector_and_shared_tokens_are_closer(load_bench) -> None:
    lex = load_bench("lexical_vectors")
    texts = ["Sanding roll 80 grit PORTER-CABLE", "Sanding roll 120 grit PORTER-CABLE", "Gorilla glue 8 ounce bottle",
             "Gorilla glue 4 ounce bottle", "Sanding roll 80 grit PORTER-CABLE", "Nitrile gloves large box of 100",
             "Nitrile gloves medium box of 100", ""]
    v = lex.lexical_vectors(texts, dim=4)
    assert v.shape == (8, 4) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v[:7], axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(v[7], 0.0)  # no text: no lexical vector
    np.testing.assert_allclose(v[0], v[4], atol=1e-6)
    sim = v @ v.T
    assert sim[0, 1] > sim[0, 2] and sim[2, 3] > sim[2, 5] and sim[5, 6] > sim[5, 0]


def test_a_dimension_above_the_data_is_refused_with_the_limit(load_bench) -> None:
    lex = load_bench("lexical_vectors")
    with pytest.raises(SystemExit, match="must be below"):
        lex.lexical_vectors(["red apple pie", "green apple pie", "red cherry pie"], dim=64)
