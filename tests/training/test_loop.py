"""The training loop: best weights kept, early stopping, learning-rate decay on plateau."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch

from ctxrec.errors import ConfigError
from ctxrec.training.loop import MIN_PATIENCE_STEPS, TrainConfig, cosine_lr, train_loop


def _run(scores: list[float], **cfg: float) -> tuple[torch.nn.Module, object]:
    """Fit a 1-parameter model while ``evaluate`` returns the given validation scores in turn."""
    torch.manual_seed(0)
    module = torch.nn.Linear(1, 1, bias=False)
    x = torch.ones(4, 1)
    seen: list[float] = []

    def batches(rng: np.random.Generator) -> Iterator[dict[str, torch.Tensor]]:
        yield {"x": x}

    def loss_fn(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return (module(batch["x"]) - 3.0).pow(2).mean()

    def evaluate() -> dict[str, float]:
        seen.append(module.weight.item())
        return {"auc": scores[len(seen) - 1]}

    tc = TrainConfig(max_epochs=len(scores), patience=len(scores) + 1, valid_metric="auc", progress=False, **cfg)
    result = train_loop(module, batches=batches, loss_fn=loss_fn, evaluate=evaluate, cfg=tc)
    return module, (result, seen)


def test_lr_decays_after_each_evaluation_without_a_new_best() -> None:
    _, (result, _) = _run([0.5, 0.6, 0.55, 0.58, 0.7, 0.65], lr=0.1, lr_decay=0.5, min_lr=0.02)
    lrs = [h["lr"] for h in result.history]
    # epochs 0-1 improve; 2 and 3 do not (0.1 -> 0.05 -> 0.025); 4 improves (no change); 5 does not (floor 0.02)
    assert lrs == pytest.approx([0.1, 0.1, 0.1, 0.05, 0.025, 0.025])
    assert result.best_epoch == 4


@pytest.mark.parametrize(("steps", "epochs"), [(1, 1 + MIN_PATIENCE_STEPS), (2, 1 + MIN_PATIENCE_STEPS // 2),
                                               (MIN_PATIENCE_STEPS, 1 + 3)])
def test_early_stopping_waits_patience_epochs_and_a_floor_of_steps(steps: int, epochs: int) -> None:
    """No new best after epoch 0, patience 3: with one or two steps per epoch (a small log) the loop waits
    MIN_PATIENCE_STEPS steps, not 3; with enough steps per epoch, patience epochs as before."""
    module = torch.nn.Linear(1, 1, bias=False)

    def batches(rng: np.random.Generator) -> Iterator[dict[str, torch.Tensor]]:
        for _ in range(steps):
            yield {"x": torch.ones(2, 1)}

    tc = TrainConfig(max_epochs=500, patience=3, lr=0.01, valid_metric="auc", progress=False)
    result = train_loop(module, batches=batches, loss_fn=lambda b: module(b["x"]).pow(2).mean(),
                        evaluate=lambda: {"auc": 0.5}, cfg=tc)
    assert (result.stopped_by, result.best_epoch, result.epochs_run) == ("early_stopping", 0, epochs)
    assert all(h["steps"] == steps for h in result.history)


def test_constant_lr_by_default_and_best_weights_restored() -> None:
    module, (result, seen) = _run([0.9, 0.1, 0.2], lr=0.1)
    assert [h["lr"] for h in result.history] == pytest.approx([0.1] * 3)
    assert result.best_epoch == 0
    assert module.weight.item() == pytest.approx(seen[0])  # weights of the best evaluation, not the last


def test_cosine_schedule_sets_the_lr_of_every_step_by_hand_values() -> None:
    """Two epochs of two steps, lr 0.1 -> min_lr 0: the steps run at fractions 0, 1/4, 1/2, 3/4 of the
    schedule, i.e. 0.05 (1 + cos(pi f)) = 0.1, 0.08536, 0.05, 0.01464; read inside the loss."""
    module = torch.nn.Linear(1, 1, bias=False)
    optimizer_lrs: list[float] = []

    def batches(rng: np.random.Generator) -> Iterator[dict[str, torch.Tensor]]:
        for _ in range(2):
            yield {"x": torch.ones(2, 1)}

    tc = TrainConfig(max_epochs=2, patience=5, lr=0.1, min_lr=0.0, lr_schedule="cosine", valid_metric="auc",
                     progress=False)
    real_step = torch.optim.AdamW.step

    def step(self: torch.optim.AdamW, *a: object, **k: object) -> object:
        optimizer_lrs.append(self.param_groups[0]["lr"])
        return real_step(self, *a, **k)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.optim.AdamW, "step", step)
        train_loop(module, batches=batches, loss_fn=lambda b: module(b["x"]).pow(2).mean(),
                   evaluate=lambda: {"auc": 0.5}, cfg=tc, n_batches=2)
    assert optimizer_lrs == pytest.approx([0.1, 0.0853553, 0.05, 0.0146447], rel=1e-5)
    assert cosine_lr(tc, 2.0) == 0.0 and cosine_lr(tc, 5.0) == 0.0  # past the horizon: min_lr


def test_cosine_schedule_refuses_a_second_lr_rule_and_a_floor_above_lr() -> None:
    with pytest.raises(ConfigError, match="lr_decay"):
        TrainConfig(lr_schedule="cosine", lr_decay=0.5)
    with pytest.raises(ConfigError, match="min_lr"):
        TrainConfig(lr_schedule="cosine", lr=1e-3, min_lr=1e-2)


@pytest.mark.parametrize("bad", [0.0, 1.5, -0.1])
def test_lr_decay_outside_unit_interval_is_refused(bad: float) -> None:
    with pytest.raises(ConfigError, match="lr_decay"):
        TrainConfig(lr_decay=bad)


def test_ema_validates_and_keeps_the_moving_average_and_trains_on_raw_weights() -> None:
    """Three steps per epoch; the raw weight before each step is read inside the loss. Validation must see
    the hand-computed average s_t = s_(t-1) + (1 - d)(w_t - s_(t-1)), s_0 = w_0, and training must go on
    from the raw weights (the first step of epoch 1 starts where epoch 0's last step ended)."""
    torch.manual_seed(0)
    module = torch.nn.Linear(1, 1, bias=False)
    raw: list[float] = []

    def batches(rng: np.random.Generator) -> Iterator[dict[str, torch.Tensor]]:
        for _ in range(3):
            yield {"x": torch.ones(2, 1)}

    def loss_fn(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        raw.append(module.weight.item())
        return (module(batch["x"]) - 3.0).pow(2).mean()

    seen: list[float] = []

    def evaluate() -> dict[str, float]:
        seen.append(module.weight.item())
        return {"auc": [0.9, 0.1][len(seen) - 1]}  # epoch 0 is the best

    decay = 0.5
    tc = TrainConfig(max_epochs=2, patience=5, lr=0.1, valid_metric="auc", progress=False, ema=decay)
    train_loop(module, batches=batches, loss_fn=loss_fn, evaluate=evaluate, cfg=tc)
    # raw[0..2] = w_0..w_2 (before the steps of epoch 0), raw[3] = w_3 (after its last step): training resumed raw
    s = raw[0]
    for w in raw[1:4]:
        s = s + (1 - decay) * (w - s)
    assert seen[0] == pytest.approx(s, rel=1e-6)
    assert raw[3] != pytest.approx(seen[0])  # epoch 1 trained from the raw weights, not the average
    assert module.weight.item() == pytest.approx(seen[0])  # the kept best weights are the average


@pytest.mark.parametrize("bad", [1.0, -0.1])
def test_ema_outside_its_range_is_refused(bad: float) -> None:
    with pytest.raises(ConfigError, match="ema"):
        TrainConfig(ema=bad)


def test_ema_restarts_from_the_resumed_weights(tmp_path) -> None:
    """After a resume the average starts from the checkpoint's raw weights, not from a fresh module's."""
    raw: list[float] = []
    seen: list[float] = []

    def make() -> torch.nn.Module:
        torch.manual_seed(0)
        return torch.nn.Linear(1, 1, bias=False)

    def run(module: torch.nn.Module, epochs: int, resume: bool) -> None:
        def batches(rng: np.random.Generator) -> Iterator[dict[str, torch.Tensor]]:
            for _ in range(2):
                yield {"x": torch.ones(2, 1)}

        def loss_fn(batch: dict[str, torch.Tensor]) -> torch.Tensor:
            raw.append(module.weight.item())
            return (module(batch["x"]) - 3.0).pow(2).mean()

        def evaluate() -> dict[str, float]:
            seen.append(module.weight.item())
            return {"auc": float(len(seen))}  # every epoch a new best

        tc = TrainConfig(max_epochs=epochs, patience=5, lr=0.1, valid_metric="auc", progress=False, ema=0.5, resume=resume)
        train_loop(module, batches=batches, loss_fn=loss_fn, evaluate=evaluate, cfg=tc, run_dir=tmp_path)

    run(make(), 1, resume=False)  # epoch 0; its last raw weights go to the "last" checkpoint
    raw.clear()
    module = make()  # a fresh module, as a restarted process would build
    run(module, 2, resume=True)  # epoch 1 only
    # raw[0] = the resumed weights w_2, raw[1] = w_3; w_4 (after the last step) is what the "last" checkpoint holds
    from ctxrec.training.checkpoint import load_checkpoint

    probe = make()
    load_checkpoint(tmp_path / "checkpoints" / "last", probe, None)
    s = raw[0]
    for w in (raw[1], probe.weight.item()):
        s = s + 0.5 * (w - s)
    assert seen[-1] == pytest.approx(s, rel=1e-6)


def _line_fit(module: torch.nn.Module, cfg: TrainConfig, **kw: object) -> list[float]:
    """Train ``module`` towards w = 3 for ``cfg.max_epochs`` epochs (2 steps each, every epoch a new best);
    returns the weight seen before each step."""
    before: list[float] = []

    def batches(rng: np.random.Generator) -> Iterator[dict[str, torch.Tensor]]:
        for scale in (1.0, 4.0):  # gradients of different sizes, so that AdamW's moments matter
            yield {"x": torch.full((2, 1), scale)}

    def loss_fn(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        before.append(module.weight.item())
        return (module(batch["x"]) - 3.0).pow(2).mean()

    n_evals = [0]

    def evaluate() -> dict[str, float]:
        n_evals[0] += 1
        return {"auc": float(n_evals[0])}

    train_loop(module, batches=batches, loss_fn=loss_fn, evaluate=evaluate, cfg=cfg, **kw)  # type: ignore[arg-type]  # kw: run_dir / initial
    return before


def _linear(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Linear(1, 1, bias=False)


def test_an_initial_state_continues_a_run(tmp_path) -> None:
    """One epoch, then a second started from the first's weights and optimizer state (read back from its
    checkpoint) ends on the weight of two epochs in one go."""
    from ctxrec.training.checkpoint import load_checkpoint
    from ctxrec.training.loop import TrainState

    tc = {"patience": 5, "lr": 0.1, "valid_metric": "auc", "progress": False}
    straight = _linear(0)
    _line_fit(straight, TrainConfig(max_epochs=2, **tc))

    _line_fit(_linear(0), TrainConfig(max_epochs=1, **tc), run_dir=tmp_path)
    first = _linear(1)
    opt = torch.optim.AdamW(first.parameters(), lr=0.1)
    load_checkpoint(tmp_path / "checkpoints" / "last", first, opt)
    state = TrainState(weights=first.state_dict(), optimizer=opt.state_dict(), epoch=1)

    resumed = _linear(7)  # other initial weights: the state replaces them
    assert resumed.weight.item() != pytest.approx(first.weight.item(), rel=1e-3)
    before = _line_fit(resumed, TrainConfig(max_epochs=2, **tc), initial=state)
    assert len(before) == 2  # epoch 1 only
    assert before[0] == first.weight.item()
    assert resumed.weight.item() == pytest.approx(straight.weight.item(), rel=1e-6)


def test_the_initial_optimizer_state_is_used() -> None:
    """AdamW moves a weight by about lr per step from a fresh state; from a state whose second moment is
    huge (1e12) its first step is lr * m / sqrt(v) ~ 0 instead."""
    from ctxrec.training.loop import TrainState

    module = _linear(0)
    opt = torch.optim.AdamW(module.parameters(), lr=0.1)
    module(torch.ones(1, 1)).sum().backward()
    opt.step()  # creates the state tensors
    sd = opt.state_dict()
    sd["state"][0].update(exp_avg=torch.zeros(1, 1), exp_avg_sq=torch.full((1, 1), 1e12), step=torch.tensor(1000.0))
    tc = TrainConfig(max_epochs=1, patience=5, lr=0.1, weight_decay=0.0, valid_metric="auc", progress=False)
    start = {k: v.clone() for k, v in module.state_dict().items()}
    before = _line_fit(_linear(3), tc, initial=TrainState(weights=start, optimizer=sd))
    assert abs(before[1] - before[0]) < 1e-3
    fresh = _line_fit(_linear(3), tc, initial=TrainState(weights=start))
    assert abs(fresh[1] - fresh[0]) == pytest.approx(0.1, rel=1e-3)  # first AdamW step: lr * sign(g)


def test_an_initial_state_of_other_shapes_or_beside_a_resume_is_refused(tmp_path) -> None:
    from ctxrec.training.loop import TrainState

    tc = {"patience": 5, "lr": 0.1, "valid_metric": "auc", "progress": False}
    with pytest.raises(RuntimeError, match="weight"):
        _line_fit(_linear(0), TrainConfig(max_epochs=1, **tc),
                  initial=TrainState(weights={"weight": torch.zeros(2, 1)}))
    _line_fit(_linear(0), TrainConfig(max_epochs=1, **tc), run_dir=tmp_path)  # leaves checkpoints/last
    with pytest.raises(ConfigError, match=r"train.resume=false"):
        _line_fit(_linear(0), TrainConfig(max_epochs=2, resume=True, **tc), run_dir=tmp_path,
                  initial=TrainState(weights=_linear(3).state_dict()))


@pytest.mark.parametrize("native", [True, False])
def test_bf16_on_a_cpu_without_bf16_instructions_is_said(monkeypatch: pytest.MonkeyPatch, native: bool) -> None:
    """Emulated bf16 is several times slower than float32: asking for it there gets a warning, not a quiet slowdown."""
    import warnings

    from ctxrec.training import loop

    monkeypatch.setattr(loop, "cpu_has_bf16", lambda: native)
    tc = TrainConfig(max_epochs=1, patience=5, lr=0.1, valid_metric="auc", progress=False, bf16=True, device="cpu")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        _line_fit(_linear(0), tc)
    said = [str(w.message) for w in seen if "bf16" in str(w.message)]
    assert bool(said) is not native
    if said:
        assert "set train.bf16=false" in said[0] and "emulated" in said[0]


@pytest.mark.parametrize(("key", "bad", "message"), [
    ("batch_size", -5, "batch_size must be >= 1, got -5"),
    ("batch_size", 0, "batch_size must be >= 1, got 0"),
    ("max_epochs", 0, "max_epochs must be >= 1"),
    ("patience", 0, "patience must be >= 1"),
    ("lr", 0.0, "lr must be > 0"),
    ("weight_decay", -0.1, "weight_decay must be >= 0"),
    ("max_seconds", 0.0, "max_seconds must be > 0"),
    ("num_threads", 0, "num_threads must be >= 1"),
])
def test_a_bad_training_setting_fails_when_the_config_is_built(key: str, bad: float, message: str) -> None:
    from ctxrec.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        TrainConfig(**{key: bad})  # type: ignore[arg-type]


def test_a_bad_training_setting_from_the_cli_fails_before_any_data_loads(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """``ctxrec train --set train.batch_size=-5`` (a user's typo): one line naming the value, no traceback,
    before the dataset is read (the data directory here holds no data at all)."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "ctxrec", "train", "--dataset", "ml-100k", "--data-dir", str(tmp_path),
                          "--model", "fusion", "--set", "train.batch_size=-5"], capture_output=True, text=True, timeout=120,
                         check=False)
    assert out.returncode != 0
    assert "batch_size must be >= 1, got -5" in out.stderr and "Traceback" not in out.stderr, out.stderr
