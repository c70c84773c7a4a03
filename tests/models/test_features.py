"""Item attribute and user profile matrices: known answers, and reading with a fitted model's vocabularies."""

from __future__ import annotations

import pandas as pd

from ctxrec.data.dataset import Dataset, DatasetSchema
from ctxrec.models.features import attribute_matrix, profile_matrix


def _data(genres: list[object], homes: list[str]) -> Dataset:
    frame = pd.DataFrame({"user_id": [f"u{n}" for n in range(len(homes))], "item_id": [f"i{n}" for n in range(len(homes))],
                          "timestamp": [float(n) for n in range(len(homes))]})
    items = pd.DataFrame({"item_id": [f"i{n}" for n in range(len(genres))], "genre": genres})
    users = pd.DataFrame({"user_id": [f"u{n}" for n in range(len(homes))], "home": homes})
    schema = DatasetSchema(item_attribute_fields=("genre",), user_attribute_fields=("home",))
    return Dataset.from_frames(frame, items=items, users=users, schema=schema, name="f")


def test_attribute_ids_grow_the_vocabulary_unless_frozen() -> None:
    vocab: dict[str, int] = {}
    mat, n = attribute_matrix(_data([["a", "b"], ["b"], ["c"]], ["x", "y", "z"]), vocab)
    assert vocab == {"genre=a": 1, "genre=b": 2, "genre=c": 3} and n == 3
    assert mat.tolist() == [[0, 0], [1, 2], [2, 0], [3, 0]]
    # a fitted model's vocabulary, read only: "d" is left out, and the width is the model's (extra ids cut)
    mat, n = attribute_matrix(_data([["d", "a"], ["b", "c", "a"], []], ["x", "y", "z"]), dict(vocab), frozen=True, width=2)
    assert n == 3 and mat.tolist() == [[0, 0], [1, 0], [2, 3], [0, 0]]


def test_profile_ids_with_given_vocabularies_read_unseen_values_as_unknown() -> None:
    mat, vocabs = profile_matrix(_data(["a", "b", "c"], ["x", "y", "x"]), True)
    assert vocabs == {"home": {"x": 1, "y": 2}} and mat[:, 0].tolist() == [1, 2, 1]
    mat, again = profile_matrix(_data(["a", "b", "c"], ["y", "w", "x"]), True, vocabs=vocabs)
    assert again == vocabs and mat[:, 0].tolist() == [2, 0, 1]
