"""training/ema.py: the moving average of the weights."""

import pytest
import torch
from torch import nn

from petalnet.training.ema import WeightAverage


def test_weight_average_warms_up_then_follows_its_decay():
    model = nn.Linear(2, 1, bias=False)
    nn.init.zeros_(model.weight)
    ema = WeightAverage(model, decay=0.9)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update()  # decay min(0.9, 2/11): the average moves most of the way at first
    assert ema.model.weight[0, 0].item() == pytest.approx(1 - 2 / 11)
    for _ in range(200):
        ema.update()
    assert ema.model.weight[0, 0].item() == pytest.approx(1.0, abs=1e-6)
    copy = WeightAverage(model, decay=0.9)
    copy.load_state_dict(ema.state_dict())
    assert copy.updates == 201 and not copy.model.weight.requires_grad


def test_buffers_are_copied_not_averaged():
    model = nn.BatchNorm1d(3)
    ema = WeightAverage(model, decay=0.99)
    model.running_mean.fill_(5.0)
    ema.update()
    assert torch.equal(ema.model.running_mean, torch.full((3,), 5.0))
