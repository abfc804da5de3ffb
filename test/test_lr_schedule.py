"""The learning-rate schedule (`lr_schedule`, `warmup_iterations`): rates by hand, wiring."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_resume import _interrupt_after_rows
from test_train_helpers import read_tensors, tiny_config, tiny_set

from mtl_perception.settings import SettingsError
from training.train.schedule import LrScheduler, lr_factor
from training.train.trainer import stored_config, train


@pytest.fixture(scope="module")
def set_yaml(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_set(tmp_path_factory)


def test_cosine_factors_by_hand() -> None:
    # 5 steps, no warm-up: (1 + cos(pi k / 5)) / 2 for k = 0..4
    expected = [1.0, 0.9045084972, 0.6545084972, 0.3454915028, 0.0954915028]
    got = [lr_factor(i, 5, "cosine") for i in range(5)]
    assert got == pytest.approx(expected, abs=1e-9)


def test_warmup_then_cosine_by_hand() -> None:
    # 6 steps, 2 of warm-up (1/2, 2/2), then cosine over the 4 left: k = 0..3 of 4
    expected = [0.5, 1.0, 1.0, 0.8535533906, 0.5, 0.1464466094]
    got = [lr_factor(i, 6, "cosine", warmup=2) for i in range(6)]
    assert got == pytest.approx(expected, abs=1e-9)


def test_constant_is_one_after_its_warmup() -> None:
    assert [lr_factor(i, 4, "constant", warmup=3) for i in range(4)] == pytest.approx(
        [1 / 3, 2 / 3, 1.0, 1.0])
    assert [lr_factor(i, 3, "constant") for i in range(3)] == [1.0, 1.0, 1.0]


def test_factor_refuses_a_step_outside_the_run_and_an_unknown_schedule() -> None:
    with pytest.raises(ValueError, match="outside"):
        lr_factor(5, 5, "cosine")
    with pytest.raises(ValueError, match="lr_schedule"):
        lr_factor(0, 5, "linear")  # type: ignore[arg-type]


def test_scheduler_scales_each_group_from_its_own_base_rate() -> None:
    """Two groups at different rates (as SPS's cross-stitch multiplier makes them); Adam's
    first step moves a parameter by the rate (|g| >> eps), so the move shows the rate used."""
    a, b = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.Adam([{"params": [a], "lr": 0.1}, {"params": [b], "lr": 0.4}])
    scheduler = LrScheduler(optimizer, iterations=4, schedule="cosine")
    assert scheduler.set(2) == pytest.approx(0.5)  # (1 + cos(pi / 2)) / 2
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([0.05, 0.2])
    (a.sum() + b.sum()).backward()
    optimizer.step()
    assert float(a.detach()) == pytest.approx(-0.05, rel=1e-5)
    assert float(b.detach()) == pytest.approx(-0.2, rel=1e-5)
    scheduler.set(0)  # back to the base rates, not a product of factors
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([0.1, 0.4])


def test_config_refuses_a_warmup_as_long_as_the_run_and_an_unknown_schedule(
        set_yaml: Path) -> None:
    with pytest.raises(SettingsError, match="warmup_iterations"):
        tiny_config(set_yaml, "iterations=10", "warmup_iterations=10")
    with pytest.raises(SettingsError, match="lr_schedule"):
        tiny_config(set_yaml, "lr_schedule=linear")


def test_cosine_run_trains_with_its_rates_and_resumes_bitwise(
        set_yaml: Path, tmp_path: Path) -> None:
    """A 4-step cosine run differs from the constant one (its rates reach Adam), and a run
    stopped by Ctrl-C and resumed ends with the same bits (the factor is a function of
    the step, not of stored state)."""
    torch.set_num_threads(1)
    common = ("iterations=4", "val_every=4", "val_max_per_task=2", "save_every=100")
    constant = train(tiny_config(set_yaml, *common), tmp_path / "constant", progress=False,
                     tensorboard=False)
    config = tiny_config(set_yaml, *common, "lr_schedule=cosine", "warmup_iterations=1")
    whole = train(config, tmp_path / "whole", progress=False, tensorboard=False)
    a, b = read_tensors(constant.last), read_tensors(whole.last)
    assert any(not torch.equal(a[k], b[k]) for k in a)
    run = tmp_path / "cut"
    watcher = _interrupt_after_rows(run / "train.csv", rows=1)
    cut = train(config, run, progress=False, tensorboard=False)
    watcher.join()
    assert cut.interrupted and 1 <= cut.iterations < 4, cut.iterations
    resumed = train(stored_config(run), run, resume=True, progress=False, tensorboard=False)
    assert resumed.iterations == 4
    c = read_tensors(resumed.last)
    assert all(torch.equal(b[k], c[k]) for k in b)
