"""Loss weighting against numbers worked out by hand (METHODS.md §3), not by the same formulas."""

from __future__ import annotations

import math
import typing

import pytest
import torch

from mtl_perception.settings import from_dict
from training.methods.weighting import (
    WEIGHTINGS,
    LossWeighting,
    WeightingConfig,
    WeightingMethod,
    build_weighting,
)

# Hand-computed figures: rerun under the portable kernels (setup.cfg's numerics marker).
pytestmark = pytest.mark.numerics


def t(x: float) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float64)


def run(w: LossWeighting, losses: list[float | None]) -> tuple[float, list[float]]:
    out = w([None if x is None else t(x) for x in losses])
    return float(out.total.detach()), out.weights


def set_sigma2(w: LossWeighting, sigma2: list[float]) -> None:
    with torch.no_grad():
        w.log_var.copy_(torch.log(torch.tensor(sigma2)))


# --- factory and config ------------------------------------------------------------------


def test_registry_matches_literal_and_unknown_name_lists_valid() -> None:
    assert set(WEIGHTINGS) == set(typing.get_args(WeightingMethod))
    with pytest.raises(ValueError, match=r"'automatic', 'average', 'dwa', 'uncertainty'"):
        build_weighting("gradnorm", 2, WeightingConfig())


def test_config_from_yaml_dict_and_validation() -> None:
    cfg = from_dict(WeightingConfig, {"method": "dwa", "dwa_window": 5})
    assert (cfg.method, cfg.dwa_window, cfg.dwa_temperature) == ("dwa", 5, 2.0)
    with pytest.raises(ValueError):
        WeightingConfig(dwa_window=0)
    with pytest.raises(ValueError):
        WeightingConfig(dwa_temperature=0.0)


def test_bad_calls_raise() -> None:
    w = build_weighting("average", 2)
    with pytest.raises(ValueError, match="expected 2"):
        w([t(1.0)])
    with pytest.raises(ValueError, match="at least one"):
        w([None, None])
    with pytest.raises(ValueError, match="scalar"):
        w([torch.ones(3), None])


# --- average -----------------------------------------------------------------------------


def test_average_divides_by_number_of_tasks_even_when_one_is_absent() -> None:
    w = build_weighting("average", 2)
    assert run(w, [3.0, 1.0]) == (2.0, [0.5, 0.5])
    total, weights = run(w, [3.0, None])
    assert total == 1.5  # 3 / 2, not 3 / 1
    assert weights[0] == 0.5 and math.isnan(weights[1])
    assert w.parameter_groups() == []


# --- dwa ---------------------------------------------------------------------------------

DWA_CFG = WeightingConfig(method="dwa", dwa_window=2, dwa_temperature=2.0)
# Window 1: task 0 losses 4, 2 (mean 3); task 1 losses 1, 3 (mean 2).
# Window 2: task 0 losses 2, 1 (mean 1.5); task 1 losses 2, 2 (mean 2).
WINDOW_1 = [[4.0, 1.0], [2.0, 3.0]]
WINDOW_2 = [[2.0, 2.0], [1.0, 2.0]]
# Window 3: w = (1.5/3, 2/2) = (0.5, 1); lambda_i = 2 exp(w_i/2) / (exp(0.25) + exp(0.5)).
LAMBDA_3 = [0.8756469982284038, 1.1243530017715964]


def test_dwa_first_two_windows_are_one_then_lambda_from_loss_ratios() -> None:
    w = build_weighting("dwa", 2, DWA_CFG)
    for step in WINDOW_1 + WINDOW_2:
        total, weights = run(w, step)
        assert weights == [1.0, 1.0]
        assert total == pytest.approx(sum(step))
    by_hand = [2 * math.exp(0.25) / (math.exp(0.25) + math.exp(0.5)),
               2 * math.exp(0.5) / (math.exp(0.25) + math.exp(0.5))]
    assert by_hand == pytest.approx(LAMBDA_3, abs=1e-15)
    # Window 3: task 0 losses 0.5, 1 (mean 0.75); task 1 losses 5, 3 (mean 4).
    total, weights = run(w, [0.5, 5.0])
    assert weights == pytest.approx(LAMBDA_3, abs=1e-12)
    assert total == pytest.approx(0.5 * LAMBDA_3[0] + 5.0 * LAMBDA_3[1], abs=1e-12)
    _, weights = run(w, [1.0, 3.0])
    assert weights == pytest.approx(LAMBDA_3, abs=1e-12)  # constant within a window
    # Window 4 uses windows 3 and 2: w = (0.75/1.5, 4/2) = (0.5, 2);
    # lambda = 2 exp(w/2) / (exp(0.25) + exp(1)) = (0.641642..., 1.358357...).
    _, weights = run(w, [1.0, 1.0])
    assert weights == pytest.approx([0.641642601649214, 1.358357398350786], abs=1e-12)
    assert sum(weights) == pytest.approx(2.0)  # sum of lambdas is K


def test_dwa_absent_task_ratio_is_one_and_partial_windows_use_present_steps() -> None:
    w = build_weighting("dwa", 2, DWA_CFG)
    for step in WINDOW_1:
        run(w, step)
    # Window 2: task 1 has no sample at all; task 0 means 1.5. Absent steps add nothing.
    total, weights = run(w, [2.0, None])
    assert total == 2.0 and weights[0] == 1.0 and math.isnan(weights[1])
    run(w, [1.0, None])
    # Window 3: task 0 ratio 0.5, task 1 ratio taken as 1: same lambdas as LAMBDA_3.
    total, weights = run(w, [None, 2.0])
    assert math.isnan(weights[0]) and weights[1] == pytest.approx(LAMBDA_3[1], abs=1e-12)
    assert total == pytest.approx(2.0 * LAMBDA_3[1], abs=1e-12)
    run(w, [0.75, None])
    # Window 3 means: task 0 0.75 (one step), task 1 2.0 (one step). Window 4 compares
    # with window 2 where task 1 was absent: ratios (0.75/1.5, 1) -> LAMBDA_3 again.
    _, weights = run(w, [1.0, 1.0])
    assert weights == pytest.approx(LAMBDA_3, abs=1e-12)
    run(w, [1.0, 4.0])
    # Window 4 means (1, 2.5); window 5 ratios (1/0.75, 2.5/2) = (4/3, 5/4);
    # lambda_0 = 2 / (1 + exp((5/4 - 4/3) / 2)) = 2 / (1 + exp(-1/24)) = 1.02083...
    _, weights = run(w, [1.0, 1.0])
    assert weights[0] == pytest.approx(2 / (1 + math.exp(-1 / 24)), abs=1e-12)
    assert weights[0] == pytest.approx(1.0208303197747, abs=1e-12)


def test_dwa_eval_mode_records_nothing() -> None:
    w = build_weighting("dwa", 2, DWA_CFG)
    w.eval()
    for _ in range(10):
        run(w, [5.0, 1.0])
    assert int(w.windows_done) == 0 and int(w.window_step) == 0
    w.train()
    for step in WINDOW_1 + WINDOW_2:
        run(w, step)
    assert run(w, [1.0, 1.0])[1] == pytest.approx(LAMBDA_3, abs=1e-12)


def test_dwa_record_once_after_eval_mode_calls_equals_training_calls() -> None:
    # What the LWS weight step does: several forwards per step in eval mode, one record.
    w = build_weighting("dwa", 2, DWA_CFG)
    for step in WINDOW_1 + WINDOW_2:
        w.eval()
        assert run(w, step)[1] == [1.0, 1.0]
        run(w, [99.0, 99.0])  # an eval-mode call leaves the statistics alone
        w.train()
        w.record([t(x) for x in step])
    assert int(w.windows_done) == 2
    assert run(w, [1.0, 1.0])[1] == pytest.approx(LAMBDA_3, abs=1e-12)
    avg = build_weighting("average", 2)
    avg.record([t(1.0), None])  # no statistics: nothing to do
    assert avg.state_dict() == {}


def test_dwa_state_dict_round_trip_resumes_identically() -> None:
    cfg = WeightingConfig(method="dwa", dwa_window=3)
    gen = torch.Generator().manual_seed(0)
    steps = [[float(x) if x > 0.2 else None for x in torch.rand(2, generator=gen)]
             for _ in range(40)]
    steps = [s if any(x is not None for x in s) else [1.0, None] for s in steps]
    reference = build_weighting("dwa", 2, cfg)
    resumed = build_weighting("dwa", 2, cfg)
    for step in steps[:17]:  # stop mid-window (17 = 5 windows + 2 steps)
        run(reference, step)
        run(resumed, step)
    saved = {k: v.clone() for k, v in resumed.state_dict().items()}
    resumed = build_weighting("dwa", 2, cfg)
    resumed.load_state_dict(saved)
    for step in steps[17:]:
        a, b = run(reference, step), run(resumed, step)
        assert a[0] == b[0]
        assert a[1] == pytest.approx(b[1], abs=0.0, nan_ok=True)
    assert all(k in saved for k in ("window_sum", "window_count", "past_means", "lambdas"))


# --- uncertainty and automatic -----------------------------------------------------------


def test_uncertainty_at_known_sigma() -> None:
    w = build_weighting("uncertainty", 2)
    set_sigma2(w, [2.0, 0.5])
    total, weights = run(w, [3.0, 1.0])
    # 0.5/2 * 3 + 0.5 ln 2  +  0.5/0.5 * 1 + 0.5 ln 0.5  =  0.75 + 1 (the logs cancel)
    assert total == pytest.approx(1.75, abs=1e-6)
    assert weights == pytest.approx([0.25, 1.0], abs=1e-7)


def test_automatic_at_known_sigma() -> None:
    w = build_weighting("automatic", 2)
    set_sigma2(w, [2.0, 0.5])
    total, weights = run(w, [3.0, 1.0])
    # 3/(2*2) + ln(1+2)  +  1/(2*0.5) + ln(1+0.5)  =  1.75 + ln 4.5
    assert total == pytest.approx(1.75 + math.log(4.5), abs=1e-6)
    assert total == pytest.approx(3.254077396776274, abs=1e-6)
    assert weights == pytest.approx([0.25, 1.0], abs=1e-7)


@pytest.mark.parametrize("name", ["uncertainty", "automatic"])
def test_learned_gradients_at_init(name: str) -> None:
    # At s = 0: d/ds [0.5 e^-s L] = -0.5 L; d/ds 0.5 s = 0.5; d/ds ln(1 + e^s) = 1/2.
    # So both methods give 0.5 (1 - L): L = (3, 0.5) -> (-1, 0.25); dL/dL_i = 0.5.
    w = build_weighting(name, 2)
    losses = [torch.tensor(3.0, requires_grad=True), torch.tensor(0.5, requires_grad=True)]
    out = w(losses)
    assert out.weights == [0.5, 0.5]
    reg = 0.0 if name == "uncertainty" else 2 * math.log(2)  # 0.5*0 or ln(1+1) per task
    assert float(out.total.detach()) == pytest.approx(1.75 + reg)
    out.total.backward()
    assert w.log_var.grad.tolist() == pytest.approx([-1.0, 0.25], abs=1e-7)
    assert [float(x.grad) for x in losses] == pytest.approx([0.5, 0.5])


def test_automatic_gradient_at_sigma2_two() -> None:
    # s = ln 2: -0.5 e^-s L + e^s/(1+e^s) = -0.25 * 3 + 2/3.
    w = build_weighting("automatic", 1)
    set_sigma2(w, [2.0])
    w([t(3.0)]).total.backward()
    assert float(w.log_var.grad[0]) == pytest.approx(-0.75 + 2 / 3, abs=1e-6)


@pytest.mark.parametrize("name", ["uncertainty", "automatic"])
def test_learned_absent_task_gets_no_term_and_no_gradient(name: str) -> None:
    w = build_weighting(name, 2)
    set_sigma2(w, [2.0, 0.5])
    out = w([t(3.0), None])
    reg = 0.5 * math.log(2) if name == "uncertainty" else math.log(3)
    assert float(out.total.detach()) == pytest.approx(0.75 + reg, abs=1e-6)
    assert math.isnan(out.weights[1])
    out.total.backward()
    assert float(w.log_var.grad[1]) == 0.0


def test_uncertainty_total_can_be_negative_automatic_cannot() -> None:
    # L = 0.01, sigma^2 = 0.1: 0.5 * 10 * 0.01 + 0.5 ln 0.1 = 0.05 - 1.1513 = -1.1013.
    unc, auto = build_weighting("uncertainty", 1), build_weighting("automatic", 1)
    set_sigma2(unc, [0.1])
    set_sigma2(auto, [0.1])
    assert run(unc, [0.01])[0] == pytest.approx(-1.1012925464970227, abs=1e-6)
    assert run(auto, [0.01])[0] == pytest.approx(0.05 + math.log(1.1), abs=1e-6)


def test_automatic_stays_finite_for_huge_log_variance() -> None:
    w = build_weighting("automatic", 1)
    with torch.no_grad():
        w.log_var.fill_(200.0)  # exp(200) overflows float32; softplus does not
    out = w([t(1.0)])
    assert math.isfinite(float(out.total.detach())) and out.weights == [0.0]


@pytest.mark.parametrize("name", ["uncertainty", "automatic"])
def test_parameter_group_has_no_weight_decay(name: str) -> None:
    w = build_weighting(name, 2, WeightingConfig(lr_multiplier=10.0))
    (group,) = w.parameter_groups(base_lr=1e-3)
    assert group["weight_decay"] == 0.0 and group["lr"] == pytest.approx(1e-2)
    assert group["params"] == [w.log_var]
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.AdamW([{"params": model.parameters()}, *w.parameter_groups(1e-3)],
                            lr=1e-3, weight_decay=0.1)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.1, 0.0]
    with pytest.raises(ValueError, match="base_lr"):
        w.parameter_groups()
    assert build_weighting("dwa", 2).parameter_groups() == []


# --- fine-tuning: a task kept but not fed (no samples in the set) ---------------------------


def test_unfed_task_is_left_out_of_average_and_dwa() -> None:
    average = build_weighting("average", 3, unfed=[1])
    total, weights = run(average, [2.0, None, 4.0])
    assert total == 3.0 and weights[0] == weights[2] == 0.5 and math.isnan(weights[1])
    # DWA over the two fed tasks of three gives the two-task figures: K = 2, and the
    # unfed task's "ratio 1" takes no share of the softmax (with it: 3 softmax(0.25, 0.5, 0.5))
    dwa = build_weighting("dwa", 3, DWA_CFG, unfed=[2])
    for step in WINDOW_1 + WINDOW_2:
        run(dwa, [*step, None])
    total, weights = run(dwa, [0.5, 5.0, None])
    assert weights[:2] == pytest.approx(LAMBDA_3, abs=1e-12) and math.isnan(weights[2])
    assert total == pytest.approx(0.5 * LAMBDA_3[0] + 5.0 * LAMBDA_3[1], abs=1e-12)


def test_an_unfed_tasks_loss_or_every_task_unfed_is_refused() -> None:
    with pytest.raises(ValueError, match=r"a loss of an unfed task \[0\]"):
        build_weighting("average", 2, unfed=[0])([t(1.0), t(1.0)])
    with pytest.raises(ValueError, match="some, not all"):
        build_weighting("dwa", 2, unfed=[0, 1])


def test_automatic_unfed_weight_never_moves_under_adam() -> None:
    w = build_weighting("automatic", 2, unfed=[0])
    optimizer = torch.optim.Adam(w.parameter_groups(0.1), lr=0.1)
    for loss in (3.0, 2.0, 1.0):
        optimizer.zero_grad()
        w([None, t(loss)]).total.backward()
        optimizer.step()
    values = w.log_var.detach().tolist()
    assert values[0] == 0.0 and values[1] != 0.0
