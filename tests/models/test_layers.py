"""The Transformer shape check shared by the SASRec and fusion configs: bad values fail when the config
is built, with the value and the fix in the message (not as a tensor-size error in the first step)."""

from __future__ import annotations

import pytest

from ctxrec.errors import ConfigError
from ctxrec.models import build_model


@pytest.mark.parametrize("kind", ["sasrec", "fusion"])
@pytest.mark.parametrize(("override", "message"), [
    ({"max_len": 0}, "max_len must be >= 1, got 0"),
    ({"d_model": 0}, "d_model must be >= 1, got 0"),
    ({"n_layers": 0}, "n_layers must be >= 1, got 0"),
    ({"n_heads": 0}, "n_heads must be >= 1, got 0"),
    ({"d_model": 64, "n_heads": 3}, r"d_model \(64\) must be divisible by n_heads \(3\); with d_model 64, n_heads can be 1, 2, 4, 8, 16"),
    ({"dropout": 1.0}, r"dropout must be in \[0, 1\), got 1.0"),
    ({"dropout": -0.1}, r"dropout must be in \[0, 1\), got -0.1"),
])
def test_a_bad_transformer_shape_fails_when_the_config_is_built(kind: str, override: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_model(kind, override)


def test_good_shapes_build() -> None:
    assert build_model("sasrec", {"d_model": 48, "n_heads": 3, "d_ff": 96}).config.n_heads == 3
    assert build_model("fusion", {"d_model": 128, "n_heads": 4, "max_len": 1, "dropout": 0.0}).config.max_len == 1
    with pytest.raises(ConfigError, match="d_ff must be >= 1"):
        build_model("sasrec", {"d_ff": 0})


def test_state_chunks_group_similar_lengths_and_bound_the_positions() -> None:
    from ctxrec.models.layers import state_chunks

    lengths = [199, 3, 40, 0, 42, 180, 5, 41]
    # length groups [[3, 1, 6], [2, 7, 4], [5, 0]]; at most 100 padded positions (+1 BOS each) per chunk
    assert state_chunks(lengths, max_tokens=100) == [[3, 1, 6], [2, 7], [4], [5], [0]]
    assert state_chunks(lengths, max_tokens=10_000) == [[3, 1, 6], [2, 7, 4], [5, 0]]
    assert state_chunks([], max_tokens=100) == []
    for chunk in state_chunks(lengths, max_tokens=100):
        assert len(chunk) == 1 or len(chunk) * (max(lengths[i] for i in chunk) + 1) <= 100
