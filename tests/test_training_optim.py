"""training/optim.py: the optimizers (fused or not, the same steps) and the learning-rate schedule."""

import dataclasses

import pytest
import torch

from petalnet.config.train import TrainConfig, recipe_config
from petalnet.models.networks import build_model
from petalnet.training.optim import build_optimizer, build_scheduler, lr_factor


def test_lr_warmup_then_cosine_to_zero():
    factors = [lr_factor(step, 10, 100, cosine=True) for step in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(factors[9:], factors[10:]))  # non-increasing after warmup
    assert factors[-1] < 0.001
    assert lr_factor(50, 10, 100, cosine=False) == 1.0
    assert lr_factor(0, 0, 100, cosine=True) == 1.0  # no warmup: the full rate at once


def test_scheduler_steps_per_batch_through_warmup_and_cosine():
    config = TrainConfig(epochs=4, lr=0.1, warmup_epochs=1, scheduler="cosine")
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=config.lr)
    scheduler = build_scheduler(optimizer, config, steps_per_epoch=5)
    rates = []
    for _ in range(20):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates[0] == pytest.approx(0.02) and rates[4] == pytest.approx(0.1)  # warmup over epoch 1's 5 steps
    assert rates[5] == pytest.approx(0.1) and rates[-1] < 0.01 and rates[5:] == sorted(rates[5:], reverse=True)


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd"])
def test_fused_optimizer_steps_like_the_plain_one(optimizer):
    config = dataclasses.replace(recipe_config("fast"), optimizer=optimizer, lr=0.01, weight_decay=0.05)
    models = []
    for fused in (False, True):
        torch.manual_seed(0)
        model = build_model("alexnet_half", 5, 0.0)
        start = [p.detach().clone() for p in model.parameters()]
        opt = build_optimizer(model.parameters(), config, fused=fused)
        assert type(opt).__name__.lower() == optimizer and opt.defaults["fused"] is (True if fused else None)
        torch.manual_seed(1)
        for _ in range(3):
            loss = model(torch.randn(4, 3, 64, 64)).logsumexp(dim=1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        models.append(model)
    plain, fused = (list(m.parameters()) for m in models)
    assert all((p - s).abs().max() > 1e-4 for p, s in zip(plain, start))  # every tensor was updated
    for p, q, s in zip(plain, fused, start):  # the same update, up to float rounding
        assert (p - q).norm() < 1e-4 * (p - s).norm()
