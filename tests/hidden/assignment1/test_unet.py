"""Graded: Assignment 1, part 3, the UNet forward pass (TODO 1 in dlvc/models/unet.py).

The student's ``UNet`` is built in a sandboxed worker with the configuration the
reference is built with here, and the reference's weights are loaded into it,
every parameter and BatchNorm statistic perturbed at random, so that two layers
that start alike no longer are. Outputs (eval mode) and gradients (train mode)
must then equal the reference's.
"""

import pytest
import torch

from dlvc.course.grader.expect import fail
from dlvc.course.grader.sandbox import describe_call
from dlvc.models.unet import UNet

from ..modules import describe_module, expect_eval_outputs, expect_train_gradients, reference_and_student

STUDENT_UNET = "dlvc.models.unet:UNet"


def random_config(rng: torch.Generator) -> dict:
    return {
        "num_classes": int(torch.randint(2, 5, (1,), generator=rng)),
        "base_channels": 4,
        "depth": int(torch.randint(2, 4, (1,), generator=rng)),
    }


def size_of(rng: torch.Generator, config: dict, odd: bool) -> tuple[int, int]:
    """A (H, W) that is a multiple of 2 ** depth, or (odd) one that is not, and not square."""
    step = 2 ** config["depth"]
    height, width = (step * int(torch.randint(2, 5, (1,), generator=rng)) for _ in range(2))
    if odd:
        height, width = height + 1 + 2 * int(torch.randint(0, 2, (1,), generator=rng)), width + 3
    return height, width


@pytest.mark.parametrize("odd", [False, True], ids=["sides multiples of 2**depth", "odd non-square sides"])
@pytest.mark.graded(part="unet", points=0.5)
def test_unet_returns_logits_at_the_input_size(worker, rng, odd):
    """UNet returns (B, K, H, W) logits at the input's size"""
    config = random_config(rng)
    height, width = size_of(rng, config, odd)
    images = torch.randn(2, 3, height, width, generator=rng)
    model = worker.new(STUDENT_UNET, **config)
    model.call("eval")
    logits = model.call(None, images)
    what = f"{describe_module('UNet', config)}.eval(), then {describe_call('forward', (images,))}"
    if not isinstance(logits, torch.Tensor):
        fail(f"{what}: expected a logits tensor, got {type(logits).__name__}")
    expected = (2, config["num_classes"], height, width)
    if tuple(logits.shape) != expected:
        fail(f"{what}: expected logits of shape {expected}, got {tuple(logits.shape)}")


@pytest.mark.parametrize("odd", [False, True], ids=["sides multiples of 2**depth", "odd non-square sides"])
@pytest.mark.graded(part="unet", points=1)
def test_unet_logits_equal_the_reference_in_eval_mode(worker, rng, odd):
    """In eval mode, with the reference's weights, the logits equal the reference's"""
    config = random_config(rng)
    reference, model, what = reference_and_student(worker, rng, UNet, config)
    images = torch.randn(2, 3, *size_of(rng, config, odd), generator=rng)
    expect_eval_outputs(model, reference, images, what=what)


@pytest.mark.graded(part="unet", points=1)
def test_unet_gradients_equal_the_reference_in_train_mode(worker, rng):
    """In train mode, the logits and the gradients for the input and every parameter equal the reference's"""
    config = random_config(rng)
    reference, model, what = reference_and_student(worker, rng, UNet, config)
    images = torch.randn(2, 3, *size_of(rng, config, odd=True), generator=rng)
    expect_train_gradients(worker, model, reference, images, what=what, rng=rng)
