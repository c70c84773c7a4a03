"""The training loop's per-epoch report hook that feeds a study's pruner (no model code involved)."""

from __future__ import annotations

import pytest

from ctxrec.models import build_model
from ctxrec.training.loop import epoch_reporter
from ctxrec.tuning.objective import TrialData, load_trial_data

CFG = {"d_model": 16, "n_layers": 1, "train": {"batch_size": 256, "max_epochs": 3, "patience": 5, "progress": False}}


@pytest.fixture(scope="module")
def trial_data() -> TrialData:
    return load_trial_data("synthetic", None, "leave-one-out")


def test_every_validation_is_reported_and_a_raise_stops_training(trial_data: TrialData) -> None:
    calls: list[tuple[int, float]] = []
    model = build_model("sasrec", CFG)
    with epoch_reporter(lambda epoch, score: calls.append((epoch, score))):
        model.fit(trial_data.train, valid=trial_data.valid)
    assert calls == [(h["epoch"], h["valid_ndcg@10"]) for h in model.fit_info["history"]]
    assert [e for e, _ in calls] == [0, 1, 2]

    class Stop(Exception):
        pass

    def stop(epoch: int, score: float) -> None:
        raise Stop(f"epoch {epoch}")

    with pytest.raises(Stop, match="epoch 0"), epoch_reporter(stop):
        build_model("sasrec", CFG).fit(trial_data.train, valid=trial_data.valid)
    # Outside the blocks nothing is reported any more: the first reporter saw its three epochs only.
    build_model("sasrec", {**CFG, "train": {**CFG["train"], "max_epochs": 1}}).fit(trial_data.train, valid=trial_data.valid)
    assert len(calls) == 3
