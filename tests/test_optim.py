"""Parameter groups and learning-rate schedules."""

import pytest
import torch
from torch import nn

from dlvc.optim import build_optimizer, build_scheduler, parameter_groups


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
        self.classifier = nn.Conv2d(4, 2, 1)


def group_of(optimizer, parameter):
    return next(group for group in optimizer.param_groups if any(p is parameter for p in group["params"]))


def test_biases_and_norm_weights_get_no_weight_decay():
    net = Net()
    optimizer = build_optimizer("adamw", parameter_groups(net, weight_decay=0.05), lr=1e-3)
    assert group_of(optimizer, net.encoder[0].weight)["weight_decay"] == 0.05
    for parameter in (net.encoder[0].bias, net.encoder[1].weight, net.encoder[1].bias, net.classifier.bias):
        assert group_of(optimizer, parameter)["weight_decay"] == 0.0


def test_head_gets_its_learning_rate_multiplier():
    net = Net()
    optimizer = build_optimizer("adamw", parameter_groups(net, 0.01, head_lr_multiplier=10.0), lr=1e-3)
    assert group_of(optimizer, net.classifier.weight)["lr"] == pytest.approx(1e-2)
    assert group_of(optimizer, net.encoder[0].weight)["lr"] == pytest.approx(1e-3)


def test_frozen_parameters_are_left_out():
    net = Net()
    net.encoder.requires_grad_(False)
    groups = parameter_groups(net, 0.01)
    assert sum(len(group["params"]) for group in groups) == 2


def test_everything_frozen_is_an_error():
    net = Net().requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        parameter_groups(net, 0.01)


def test_adamw_uses_amsgrad_as_in_the_reference_settings():
    optimizer = build_optimizer("adamw", parameter_groups(Net(), 0.01), lr=1e-3)
    assert isinstance(optimizer, torch.optim.AdamW) and optimizer.defaults["amsgrad"]


def learning_rates(name, epochs=4, steps=5, **options):
    optimizer = build_optimizer("sgd", parameter_groups(Net(), 0.0), lr=1.0)
    scheduler = build_scheduler(name, optimizer, epochs, steps, **options)
    rates = []
    for _ in range(epochs * steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


def test_poly_schedule_warms_up_linearly_then_decays_to_zero():
    rates = learning_rates("poly", warmup_epochs=1, power=1.0)
    assert rates[:5] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    assert rates[5:] == sorted(rates[5:], reverse=True) and rates[-1] < 0.1


def test_exponential_schedule_multiplies_by_gamma_per_step():
    optimizer = build_optimizer("sgd", parameter_groups(Net(), 0.0), lr=1.0)
    scheduler = build_scheduler("exponential", optimizer, epochs=3, steps_per_epoch=10, gamma=0.5)
    optimizer.step()
    scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.5)


def test_onecycle_peaks_at_the_learning_rate():
    rates = learning_rates("onecycle")
    assert max(rates) == pytest.approx(1.0, rel=1e-3) and rates[0] < 0.1 and rates[-1] < 0.01


@pytest.mark.parametrize(
    "call, argument",
    [
        (lambda: build_optimizer("adam", parameter_groups(Net(), 0.0), lr=1e-3), "optimizer"),
        (lambda: build_optimizer("sgd", parameter_groups(Net(), 0.0), lr=0), "lr"),
        (lambda: build_scheduler("cosine", torch.optim.SGD(Net().parameters(), lr=1), 2, 2), "scheduler"),
        (lambda: parameter_groups(Net(), -1.0), "weight_decay"),
    ],
)
def test_bad_choices_name_the_argument(call, argument):
    with pytest.raises(ValueError, match=argument):
        call()
