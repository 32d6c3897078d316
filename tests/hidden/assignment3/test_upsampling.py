"""Graded: Assignment 3, part 2, the upsampling module (TODO 3.2, Upsampling.forward in dlvc/models/pspnet.py).

The student's ``Upsampling`` is built in a sandboxed worker with a small random
configuration: two or three stages of a few channels. Each stage must double the
height and width (bilinear, corners aligned) and then apply its convolution,
BatchNorm and ReLU. With the reference's weights loaded, every parameter and
BatchNorm statistic perturbed, its outputs (eval mode) and gradients (train mode)
must equal the reference's on small non-square maps.
"""

import pytest
import torch

from dlvc.course.grader.sandbox import describe_call
from dlvc.models.pspnet import Upsampling

from ..modules import describe_module, expect_eval_outputs, expect_train_gradients, reference_and_student
from .common import draw, expect_shape

STUDENT_UPSAMPLING = "dlvc.models.pspnet:Upsampling"


def random_config(rng: torch.Generator) -> dict:
    """Two or three stages of a few channels: with one stage, resizing once by 2 ** stages would be right too."""
    stages = draw(rng, 2, 3)
    return {"in_channels": draw(rng, 2, 6), "channels": tuple(draw(rng, 2, 5) for _ in range(stages))}


def random_features(rng: torch.Generator, config: dict) -> torch.Tensor:
    """(2, C_in, h, w) features with h and w from 2 to 6, h != w."""
    height = draw(rng, 2, 6)
    width = 2 + (height - 2 + draw(rng, 1, 4)) % 5
    return torch.randn(2, config["in_channels"], height, width, generator=rng)


@pytest.mark.graded(part="upsampling", points=0.5)
def test_upsampling_doubles_the_size_at_every_stage(worker, rng):
    """Upsampling returns (B, channels[-1], 2^n h, 2^n w) for (B, C_in, h, w) features and n stages"""
    config = random_config(rng)
    features = random_features(rng, config)
    module = worker.new(STUDENT_UPSAMPLING, **config)
    module.call("eval")
    upsampled = module.call(None, features)
    what = f"{describe_module('Upsampling', config)}.eval(), then {describe_call('forward', (features,))}"
    stages = len(config["channels"])
    batch, _, height, width = features.shape
    meaning = f"the last stage's {config['channels'][-1]} channels, the size doubled by each of the {stages} stages"
    expect_shape(upsampled, (batch, config["channels"][-1], height * 2**stages, width * 2**stages), what, meaning)


@pytest.mark.graded(part="upsampling", points=1)
def test_upsampling_equals_the_reference_in_eval_mode(worker, rng):
    """In eval mode, with the reference's weights, the upsampled map equals the reference's"""
    config = random_config(rng)
    reference, module, what = reference_and_student(worker, rng, Upsampling, config)
    expect_eval_outputs(module, reference, random_features(rng, config), what=what)


@pytest.mark.graded(part="upsampling", points=0.5)
def test_upsampling_gradients_equal_the_reference_in_train_mode(worker, rng):
    """In train mode, the upsampled map and the gradients for the input and every parameter equal the reference's"""
    config = random_config(rng)
    reference, module, what = reference_and_student(worker, rng, Upsampling, config)
    expect_train_gradients(worker, module, reference, random_features(rng, config), what=what, rng=rng)
