"""Optimizers, parameter groups and learning-rate schedules.

- :func:`parameter_groups` keeps weight decay off biases and normalisation weights
  (decaying them only hurts) and gives the head its own learning-rate multiplier,
  the usual recipe when a pretrained encoder meets a freshly initialised head.
- :func:`build_optimizer` and :func:`build_scheduler` turn the ``train.py`` flags
  into torch objects. Schedules step once per epoch (``exponential``) or once per
  optimisation step (``poly``, ``onecycle``); :data:`SCHEDULER_INTERVALS` says which,
  and the trainer steps them accordingly.
"""

import torch
from torch import nn

HEAD_NAMES = ("classifier", "aux_classifier", "head", "decode_head")
"""Submodule names whose parameters count as the head."""

OPTIMIZERS = ("adamw", "sgd")
SCHEDULER_INTERVALS = {"exponential": "epoch", "poly": "step", "onecycle": "step", "none": "epoch"}


def parameter_groups(
    model: nn.Module, weight_decay: float, head_lr_multiplier: float = 1.0, head_names=HEAD_NAMES
) -> list[dict]:
    """Split the trainable parameters of ``model`` into up to four optimizer groups.

    A parameter with one dimension or none (biases, norm weights) gets no weight decay.
    A parameter under a submodule called one of ``head_names`` gets
    ``lr_multiplier = head_lr_multiplier``; the others 1.0. :func:`build_optimizer`
    turns the multiplier into each group's learning rate.
    """
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
    if head_lr_multiplier <= 0:
        raise ValueError(f"head_lr_multiplier must be > 0, got {head_lr_multiplier}")
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        in_head = any(part in head_names for part in name.split("."))
        decays = parameter.ndim > 1
        groups.setdefault((in_head, decays), []).append(parameter)
    if not groups:
        raise ValueError("model: has no trainable parameters (is everything frozen?)")
    return [
        {
            "params": params,
            "weight_decay": weight_decay if decays else 0.0,
            "lr_multiplier": head_lr_multiplier if in_head else 1.0,
        }
        for (in_head, decays), params in sorted(groups.items())
    ]


def build_optimizer(
    name: str, groups: list[dict], lr: float, momentum: float = 0.9, amsgrad: bool = True
) -> torch.optim.Optimizer:
    """AdamW (``amsgrad`` as in the course's reference settings) or SGD with momentum."""
    if lr <= 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    groups = [{**group, "lr": lr * group.get("lr_multiplier", 1.0)} for group in groups]
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, amsgrad=amsgrad)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum)
    raise ValueError(f"optimizer: expected one of {OPTIMIZERS}, got {name!r}")


def build_scheduler(
    name: str,
    optimizer: torch.optim.Optimizer,
    epochs: int,
    steps_per_epoch: int,
    gamma: float = 0.98,
    power: float = 0.9,
    warmup_epochs: float = 0.0,
) -> torch.optim.lr_scheduler.LRScheduler:
    """A learning-rate schedule; step it every epoch or every step as :data:`SCHEDULER_INTERVALS` says.

    - ``exponential``: lr times ``gamma`` after every epoch.
    - ``poly``: linear warm-up from 0 over ``warmup_epochs``, then
      ``(1 - progress) ** power`` down to 0 at the last step (DeepLab, PSPNet, SegFormer).
    - ``onecycle``: torch's OneCycleLR peaking at each group's lr.
    - ``none``: constant.
    """
    if epochs < 1 or steps_per_epoch < 1:
        raise ValueError(f"epochs and steps_per_epoch must be >= 1, got {epochs} and {steps_per_epoch}")
    if name == "exponential":
        return torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=gamma)
    if name == "poly":
        total = epochs * steps_per_epoch
        warmup = round(warmup_epochs * steps_per_epoch)

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            return max(0.0, 1 - (step - warmup) / max(1, total - warmup)) ** power

        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    if name == "onecycle":
        peaks = [group["lr"] for group in optimizer.param_groups]
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=peaks, epochs=epochs, steps_per_epoch=steps_per_epoch)
    if name == "none":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    raise ValueError(f"scheduler: expected one of {tuple(SCHEDULER_INTERVALS)}, got {name!r}")
