"""Graded: Assignment 3, part 4, counting trainable parameters (TODO 3.4, count_parameters in dlvc/models/pspnet.py).

The student's ``count_parameters`` is called in a sandboxed worker on small random
networks of plain torch modules (convolutions, BatchNorm, ReLU), built there as they
are built here, and must return the reference's count: every element of every
parameter with ``requires_grad``, BatchNorm's running statistics not included.
Parameters are frozen with ``requires_grad_(False)``, one by one.
"""

from collections.abc import Sequence

import pytest
import torch

from dlvc.course.grader.expect import expect_number
from dlvc.models.pspnet import count_parameters

from .common import Layer, build, build_here, builder_in, describe_layers, draw

STUDENT_COUNT = "dlvc.models.pspnet:count_parameters"


def conv_blocks(rng: torch.Generator, in_channels: int, count: int) -> tuple[list[Layer], int]:
    """``count`` blocks of a bias-free 3x3 convolution of random width, BatchNorm and ReLU; and their output channels."""
    layers = []
    for _ in range(count):
        width = draw(rng, 2, 8)
        layers += [
            ("Conv2d", {"in_channels": in_channels, "out_channels": width, "kernel_size": 3, "bias": False}),
            ("BatchNorm2d", {"num_features": width}),
            ("ReLU", {}),
        ]
        in_channels = width
    return layers, in_channels


def classifier(rng: torch.Generator, in_channels: int) -> list[Layer]:
    """A 1x1 convolution with bias to a few classes."""
    return [("Conv2d", {"in_channels": in_channels, "out_channels": draw(rng, 2, 5), "kernel_size": 1})]


def random_network(rng: torch.Generator) -> list[Layer]:
    """One to three convolution blocks on RGB images, then a classifier: an ``nn.Sequential`` of four layers or more."""
    blocks, channels = conv_blocks(rng, 3, draw(rng, 1, 3))
    return blocks + classifier(rng, channels)


def random_parts(rng: torch.Generator) -> dict[str, list[Layer]]:
    """A PSPNet-like model's parts: an encoder and a decoder of convolution blocks, and a classifier head."""
    encoder, channels = conv_blocks(rng, 3, 2)
    decoder, channels = conv_blocks(rng, channels, 1)
    return {"encoder": encoder, "decoder": decoder, "head": classifier(rng, channels)}


def built_parts(new, parts: dict[str, list[Layer]]):
    """``nn.ModuleDict`` of the parts, made by ``new``."""
    return new("ModuleDict", {name: build(new, layers) for name, layers in parts.items()})


def expect_the_reference_count(worker, build_model, described: str, frozen: Sequence[str] = ()) -> None:
    """``count_parameters`` of the student's copy of ``build_model(new)`` equals the reference's on the model built here.

    ``frozen``: names of parameters set to ``requires_grad_(False)`` in both models first.
    """
    model, remote = build_model(build_here), build_model(builder_in(worker))
    for name in frozen:
        model.get_parameter(name).requires_grad_(False)
        remote.call_and_keep("get_parameter", name).call("requires_grad_", False)
    what = f"count_parameters({described})"
    if frozen:
        what += f" with {', '.join(frozen)} frozen (requires_grad_(False))"
    expect_number(worker.call(STUDENT_COUNT, remote), count_parameters(model), what, atol=0, rtol=0)


@pytest.mark.graded(part="count_parameters", points=0.5)
def test_count_parameters_counts_every_element_of_every_parameter(worker, rng):
    """count_parameters of a network whose parameters all train counts their elements, and no BatchNorm statistics"""
    layers = random_network(rng)
    expect_the_reference_count(worker, lambda new: build(new, layers), describe_layers(layers))


@pytest.mark.graded(part="count_parameters", points=0.25)
def test_count_parameters_leaves_out_frozen_parameters(worker, rng):
    """count_parameters leaves out the parameters whose requires_grad is False"""
    layers = random_network(rng)
    names = [name for name, _ in build(build_here, layers).named_parameters()]
    chosen = torch.randperm(len(names), generator=rng)[: draw(rng, 1, len(names) - 1)].sort().values
    frozen = [names[index] for index in chosen.tolist()]
    expect_the_reference_count(worker, lambda new: build(new, layers), describe_layers(layers), frozen)


@pytest.mark.graded(part="count_parameters", points=0.25)
def test_count_parameters_of_a_model_with_a_frozen_encoder_counts_the_decoder_and_head(worker, rng):
    """count_parameters of an encoder-decoder model whose encoder is frozen counts the decoder's and head's parameters"""
    parts = random_parts(rng)
    names = [name for name, _ in built_parts(build_here, parts).named_parameters() if name.startswith("encoder.")]
    described = f"ModuleDict({', '.join(f'{name}={describe_layers(layers)}' for name, layers in parts.items())})"
    expect_the_reference_count(worker, lambda new: built_parts(new, parts), described, names)
