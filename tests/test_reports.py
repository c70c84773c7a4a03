"""The one-line summary of what a fit decided on the user's behalf."""

from __future__ import annotations

from ctxrec.reports import auto_decisions


def test_auto_decisions_names_each_choice_and_the_cold_start_settings() -> None:
    info = {"auto": {"chosen": {"use_text": True, "mixture": False},
                     "cold_start": {"id_dropout": 0.8, "temperature": 0.07, "cold_ids": "neighbours",
                                    "cold_items": 40, "catalogue": 400, "why": "..."}}}
    assert auto_decisions(info) == ("decided on your data: use_text=true, mixture=false, id_dropout=0.8, "
                                    "temperature=0.07, cold_ids=neighbours (fit_info.auto in metrics.json says why)")
    warm = {"auto": {"cold_start": {"id_dropout": 0.1, "temperature": None, "cold_ids": "none"}}}
    assert auto_decisions(warm) == ("decided on your data: id_dropout=0.1, temperature=none, cold_ids=none "
                                    "(fit_info.auto in metrics.json says why)")


def test_nothing_decided_prints_nothing() -> None:
    assert auto_decisions(None) == ""
    assert auto_decisions({"best_epoch": 3}) == ""
    assert auto_decisions({"auto": {"chosen": {}}}) == ""
