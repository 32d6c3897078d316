"""Graded: Assignment 3, part 1, pyramid pooling (TODO 3.1, PyramidPooling.forward in dlvc/models/pspnet.py).

The student's ``PyramidPooling`` is built in a sandboxed worker with a small random
configuration: two to four of the paper's bins and a few channels. Its output must
hold the unchanged input and then one C / len(bins) map per bin, at the input's
size. With the reference's weights loaded, every parameter and BatchNorm statistic
perturbed, its outputs (eval mode) and gradients (train mode) must equal the
reference's on maps larger than every bin, so that every bin is resized up.
"""

import pytest
import torch

from dlvc.course.grader.expect import expect_tensor, fail
from dlvc.course.grader.sandbox import describe_call, describe_value
from dlvc.models.pspnet import PyramidPooling

from ..modules import describe_module, expect_eval_outputs, expect_train_gradients, reference_and_student
from .common import draw, expect_shape, random_bins

STUDENT_PYRAMID = "dlvc.models.pspnet:PyramidPooling"
SMALLEST_SIDE, LARGEST_SIDE = 7, 12
"""Sides of the feature maps: above the largest bin (6), so that every bin's map is interpolated."""


def random_config(rng: torch.Generator) -> dict:
    bins = random_bins(rng)
    return {"in_channels": len(bins) * draw(rng, 1, 3), "bins": bins}


def random_features(rng: torch.Generator, config: dict, square: bool = False) -> torch.Tensor:
    """(2, C, h, w) features with h and w from 7 to 12; h != w unless ``square``."""
    height = draw(rng, SMALLEST_SIDE, LARGEST_SIDE)
    span = LARGEST_SIDE - SMALLEST_SIDE + 1
    width = height if square else SMALLEST_SIDE + (height - SMALLEST_SIDE + draw(rng, 1, span - 1)) % span
    return torch.randn(2, config["in_channels"], height, width, generator=rng)


def student_output(worker, config: dict, features: torch.Tensor):
    """The student's PyramidPooling (its own weights) in eval mode on ``features``, and how messages name the call."""
    module = worker.new(STUDENT_PYRAMID, **config)
    module.call("eval")
    what = f"{describe_module('PyramidPooling', config)}.eval(), then {describe_call('forward', (features,))}"
    return module.call(None, features), what


@pytest.mark.graded(part="pyramid_pooling", points=0.5)
def test_pyramid_pooling_returns_the_input_channels_and_one_map_per_bin_at_the_input_size(worker, rng):
    """PyramidPooling returns (B, C + len(bins) * C / len(bins), h, w) for (B, C, h, w) features"""
    config = random_config(rng)
    features = random_features(rng, config)
    pooled, what = student_output(worker, config, features)
    batch, channels, height, width = features.shape
    per_bin = channels // len(config["bins"])
    meaning = f"the input's {channels} channels, then {per_bin} for each of the {len(config['bins'])} bins, at the input's size"
    expect_shape(pooled, (batch, channels + len(config["bins"]) * per_bin, height, width), what, meaning)


@pytest.mark.graded(part="pyramid_pooling", points=0.5)
def test_pyramid_pooling_puts_the_unchanged_input_first(worker, rng):
    """The first C output channels are the input, unchanged"""
    config = random_config(rng)
    features = random_features(rng, config)
    pooled, what = student_output(worker, config, features)
    channels = config["in_channels"]
    if not isinstance(pooled, torch.Tensor) or pooled.ndim != 4:
        fail(f"{what}: expected a (B, C', h, w) tensor, got {describe_value(pooled)}")
    expect_tensor(pooled[:, :channels], features, f"{what}: output channels 0 to {channels - 1}, which must be the input")


@pytest.mark.parametrize("square", [True, False], ids=["square map", "non-square map"])
@pytest.mark.graded(part="pyramid_pooling", points=1)
def test_pyramid_pooling_equals_the_reference_in_eval_mode(worker, rng, square):
    """In eval mode, with the reference's weights, the pooled map equals the reference's"""
    config = random_config(rng)
    reference, module, what = reference_and_student(worker, rng, PyramidPooling, config)
    expect_eval_outputs(module, reference, random_features(rng, config, square), what=what)


@pytest.mark.graded(part="pyramid_pooling", points=1)
def test_pyramid_pooling_gradients_equal_the_reference_in_train_mode(worker, rng):
    """In train mode, the pooled map and the gradients for the input and every parameter equal the reference's"""
    config = random_config(rng)
    reference, module, what = reference_and_student(worker, rng, PyramidPooling, config)
    expect_train_gradients(worker, module, reference, random_features(rng, config), what=what, rng=rng)
