"""Item/user text templates: default "field: value; ..." form, {field} templates, value formatting."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ctxrec.config import from_dict
from ctxrec.data.dataset import Dataset, DatasetSchema
from ctxrec.errors import ConfigError
from ctxrec.text.templates import (
    TextTemplateConfig,
    format_column,
    item_texts,
    render_item_texts,
    render_user_texts,
    user_texts,
)


def _items() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "title": ["Kettle", "Mug", None, "  "],
            "genres": [["kitchen", "tea"], [], np.nan, np.array(["a", None, "b"], dtype=object)],
            "brand": ["Acme", np.nan, "Zed", ""],
            "year": [1995.0, np.nan, 2001.5, 3.0],
            "stock": [1, 2, 3, 4],
        },
        index=pd.Index(["i1", "i2", "i3", "i4"], name="item_id"),
    )


def test_default_form_skips_empty_joins_lists_and_prints_integral_floats_as_ints() -> None:
    texts = render_item_texts(_items(), ["title", "genres", "brand", "year"])
    assert texts == [
        "title: Kettle; genres: kitchen, tea; brand: Acme; year: 1995",
        "title: Mug",
        "brand: Zed; year: 2001.5",
        "genres: a, b; year: 3",  # whitespace-only title and "" brand are empty; None inside a list dropped
    ]


def test_default_form_field_order_and_separators() -> None:
    texts = render_item_texts(_items().iloc[:1], ["brand", "genres"], sep=" | ", list_sep="/")
    assert texts == ["brand: Acme | genres: kitchen/tea"]


def test_template_with_placeholders_and_the_index_name() -> None:
    texts = render_item_texts(_items(), (), "{title} ({year}) by {brand} [{item_id}]")
    assert texts[0] == "Kettle (1995) by Acme [i1]"
    assert texts[1] == "Mug () by  [i2]"  # a template renders missing values as empty, it does not skip


def test_template_with_format_spec_and_literal_braces() -> None:
    texts = render_item_texts(_items().iloc[:2], (), "{{{title:>7}}} #{stock}")
    assert texts == ["{ Kettle} #1", "{    Mug} #2"]


def test_missing_template_field_names_field_and_available_columns() -> None:
    with pytest.raises(ConfigError, match=r"'colour'.*available: title, genres, brand, year, stock, item_id"):
        render_item_texts(_items(), (), "{title} in {colour}")


def test_bad_templates_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="positional placeholder"):
        render_item_texts(_items(), (), "{} and {}")
    with pytest.raises(ConfigError, match="malformed"):
        render_item_texts(_items(), (), "{title")


def test_missing_default_field_errors_or_is_skipped() -> None:
    with pytest.raises(ConfigError, match=r"'titel' is not a column; available: title"):
        render_item_texts(_items(), ["titel"])
    assert render_item_texts(_items().iloc[:1], ["titel", "brand"], missing="skip") == ["brand: Acme"]


def test_typed_columns_format_column_wise() -> None:
    frame = pd.DataFrame(
        {
            "cat": pd.Series(["x", None, "y"], dtype="category"),
            "s": pd.Series(["a ", pd.NA, "c"], dtype="string"),
            "i": pd.Series([1, pd.NA, 3], dtype="Int64"),
            "b": [True, False, True],
            "f": [np.inf, -2.0, 0.25],
        }
    )
    assert format_column(frame["cat"]).tolist() == ["x", "", "y"]
    assert format_column(frame["s"]).tolist() == ["a", "", "c"]
    assert format_column(frame["i"]).tolist() == ["1", "", "3"]
    assert format_column(frame["b"]).tolist() == ["True", "False", "True"]
    assert format_column(frame["f"]).tolist() == ["inf", "-2", "0.25"]
    assert format_column(frame["s"].iloc[:0]).tolist() == []


def test_empty_frame_gives_no_texts() -> None:
    assert render_item_texts(_items().iloc[:0], ["title"]) == []
    assert render_item_texts(_items().iloc[:0], (), "{title}") == []


def test_user_texts_profiles_and_review_lists() -> None:
    users = pd.DataFrame(
        {"user_id": ["u1", "u2"], "bio": ["likes tea", None], "reviews": [["great kettle", "ok mug"], []]}
    ).set_index("user_id")
    assert render_user_texts(users, ["bio", "reviews"]) == [
        "bio: likes tea; reviews: great kettle, ok mug",
        "",
    ]
    with pytest.raises(ConfigError, match="user text template"):
        render_user_texts(users, (), "{age}")


def _dataset() -> Dataset:
    inter = pd.DataFrame({"user_id": ["u2", "u1", "u3"], "item_id": ["i2", "i1", "i9"]})
    items = _items().reset_index()
    users = pd.DataFrame({"user_id": ["u1", "u2"], "bio": ["likes tea", "hates mugs"]})
    schema = DatasetSchema(item_text_fields=("title", "brand", "colour"), user_text_fields=("bio",))
    return Dataset.from_frames(inter, items=items, users=users, schema=schema)


def test_dataset_item_text_is_aligned_with_the_vocab_and_skips_absent_schema_fields() -> None:
    data = _dataset()
    texts = data.item_text()
    assert data.item_vocab.ids == ["i1", "i2", "i3", "i4", "i9"]  # i9 only in the log
    assert texts == ["title: Kettle; brand: Acme", "title: Mug", "brand: Zed", "", ""]
    assert data.item_text("{title}/{stock}") == ["Kettle/1", "Mug/2", "/3", "/4", "/"]
    assert item_texts(data) == texts
    assert item_texts(data, TextTemplateConfig(fields=("year",))) == [
        "year: 1995",
        "",
        "year: 2001.5",
        "year: 3",
        "",
    ]
    with pytest.raises(ConfigError, match="colour"):
        item_texts(data, TextTemplateConfig(fields=("colour",)))


def test_dataset_user_texts_cover_every_user() -> None:
    data = _dataset()
    assert data.user_vocab.ids == ["u1", "u2", "u3"]
    assert user_texts(data) == ["bio: likes tea", "bio: hates mugs", ""]
    assert user_texts(data, TextTemplateConfig(template="{user_id}: {bio}")) == [
        "u1: likes tea",
        "u2: hates mugs",
        "u3: ",
    ]


def test_template_config_round_trips_through_from_dict() -> None:
    cfg = from_dict(TextTemplateConfig, {"fields": ["title", "genres"], "list_sep": " / "})
    assert cfg == TextTemplateConfig(fields=("title", "genres"), list_sep=" / ")
    with pytest.raises(ConfigError, match="unknown config key 'field'"):
        from_dict(TextTemplateConfig, {"field": ["title"]})


def test_many_rows_render_column_wise() -> None:
    n = 20_000
    frame = pd.DataFrame(
        {"title": [f"item {i}" for i in range(n)], "genres": [["a", "b"]] * n, "price": np.arange(n) / 4}
    )
    texts = render_item_texts(frame, ["title", "genres", "price"])
    assert len(texts) == n and texts[5] == "title: item 5; genres: a, b; price: 1.25"
