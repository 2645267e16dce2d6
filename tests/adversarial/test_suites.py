"""evaluate(): worst case over attacks, breakdown, gradient-masking flags."""

from __future__ import annotations

import pytest
import torch
from conftest import make_cnn, make_data
from torch import nn

import robustaug.adversarial as adv


def _linear(seed: int = 0) -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return nn.Sequential(nn.Flatten(), nn.Linear(64, 5))


def test_lite_suite_worst_case_and_breakdown():
    model = _linear()
    x, y = make_data(16)
    with torch.no_grad():
        y = model.eval()(x).argmax(1)  # all clean-correct
    rep = adv.evaluate(model, [(x[:8], y[:8]), (x[8:], y[8:])], adv.Linf(0.05), "lite")
    assert rep.n == 16 and rep.clean_acc == 1.0
    accs = [v["robust_acc"] for v in rep.per_attack.values()]
    assert accs == sorted(accs, reverse=True)  # cumulative: never increases
    assert rep.robust_acc == pytest.approx(accs[-1])
    # point-wise worst case is at most any single attack's robust accuracy
    single = adv.evaluate(model, [(x, y)], adv.Linf(0.05), ["apgd_ce"], check_flags=False)
    assert rep.robust_acc <= single.robust_acc
    pgd_acc = adv.evaluate(model, [(x, y)], adv.Linf(0.05), ["pgd"], check_flags=False).robust_acc
    assert rep.robust_acc <= pgd_acc + 1e-9
    assert rep.robust.dtype == torch.bool and rep.robust.shape == (16,)


def test_standard_suite_contents():
    assert [a for a, _ in adv.SUITES["standard"]] == ["apgd_ce", "apgd_t", "fab_t", "square"]
    kw = dict(adv.SUITES["standard"])
    assert kw["apgd_ce"]["n_iter"] == 100 and kw["apgd_t"]["n_target_classes"] == 9
    assert kw["fab_t"]["n_iter"] == 100 and kw["square"]["n_queries"] == 5000


class SoftmaxNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = make_cnn()

    def forward(self, x):
        return self.net(x).softmax(1)


class RoundNet(nn.Module):
    """Quantises the input: zero gradients everywhere."""

    def __init__(self):
        super().__init__()
        self.net = _linear()

    def forward(self, x):
        return self.net(torch.round(x * 4) / 4)


class NoisyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = make_cnn()

    def forward(self, x):
        return self.net(x) + 0.1 * torch.randn(x.shape[0], 5)


@pytest.mark.parametrize(("net", "flag"), [(SoftmaxNet, "softmax"), (RoundNet, "zero_gradients"),
                                           (NoisyNet, "randomized")])
def test_masking_flags_warn(net, flag):
    x, y = make_data(8)
    with pytest.warns(adv.GradientMaskingWarning, match=flag):
        rep = adv.evaluate(net(), [(x, y)], adv.Linf(0.05), ["apgd_ce"])
    assert any(f.startswith(flag) for f in rep.flags)


def test_square_beats_whitebox_flag_on_masked_model():
    model = RoundNet()
    x, y = make_data(16)
    with torch.no_grad():
        y = model.eval()(x).argmax(1)
    with pytest.warns(adv.GradientMaskingWarning):
        rep = adv.evaluate(model, [(x, y)], adv.Linf(0.3), ["apgd_ce", "square"])
    # the gradient attack only gets its random start on a quantised model; the black-box one
    # finds points it missed
    assert rep.per_attack["square"]["broken"] > 0
    assert any(f.startswith("square_beats_whitebox") for f in rep.flags)
