import math

import pytest
import torch
from torch import nn

from rulab.config import OptimCfg
from rulab.train.optim import build_optimizer, lr_at, param_groups


def test_cosine_matches_w1_lambdalr():
    """W1 (``baseline.py``): LambdaLR factor r + (1-r)·½(1+cos(π t/T)), r = 1e-6/lr, stepped per iteration."""
    cfg = OptimCfg(lr=0.1, schedule="cosine", lr_floor=1e-6)
    total = 390 * 100
    r = 1e-6 / 0.1
    for t in (0, 1, 1000, 19500, 38999, 39000):
        factor = r + (1 - r) * 0.5 * (1 + math.cos(math.pi * t / total))
        assert lr_at(t, total, cfg) == pytest.approx(0.1 * factor, rel=1e-12)
    assert lr_at(total, total, cfg) == pytest.approx(1e-6)
    # parity: the original stepped the scheduler first, so update t used factor(t+1)
    assert lr_at(0, total, cfg, parity=True) == pytest.approx(lr_at(1, total, cfg))


def test_step_schedule_matches_w3():
    cfg = OptimCfg(lr=0.1, schedule="step", milestones=(0.5, 0.75, 0.9), gamma=0.1)
    total = 1000
    assert lr_at(499, total, cfg) == pytest.approx(0.1)
    assert lr_at(500, total, cfg) == pytest.approx(0.01)
    assert lr_at(750, total, cfg) == pytest.approx(0.001)
    assert lr_at(900, total, cfg) == pytest.approx(0.0001)


def test_onecycle_peaks_and_ends_at_floor():
    cfg = OptimCfg(lr=0.4, schedule="onecycle", warmup_frac=0.2, lr_floor=0.0)
    lrs = [lr_at(t, 100, cfg) for t in range(100)]
    assert max(lrs) == pytest.approx(0.4) and lrs.index(max(lrs)) in (19, 20)
    assert lrs[0] == pytest.approx(0.4 / 20) and lrs[-1] < 0.01


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.bn = nn.BatchNorm2d(2)
        self.fc = nn.Linear(2, 3)


def test_param_groups_backbone_multiplier_and_norm_decay():
    net = Net()
    groups = param_groups(net, OptimCfg(backbone_lr_mult=0.1, no_decay_norm=True, weight_decay=1e-3))
    by = {(g["lr_mult"], g["weight_decay"]): {id(p) for p in g["params"]} for g in groups}
    assert by[(1.0, 1e-3)] == {id(p) for p in net.fc.parameters()}
    assert by[(0.1, 0.0)] == {id(p) for p in net.bn.parameters()}
    assert by[(0.1, 1e-3)] == {id(p) for p in net.conv.parameters()}
    net.bn.weight.requires_grad_(False)
    n = sum(len(g["params"]) for g in param_groups(net, OptimCfg()))
    assert n == 5  # frozen parameter left out


def test_build_optimizer_kinds():
    net = Net()
    sgd = build_optimizer(net, OptimCfg(name="sgd", nesterov=True, momentum=0.9))
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["nesterov"]
    adam = build_optimizer(net, OptimCfg(name="adamw", lr=1e-3, weight_decay=1e-6))
    assert isinstance(adam, torch.optim.AdamW)
