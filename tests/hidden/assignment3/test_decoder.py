"""Graded: Assignment 3, part 3, the decoder's fusion (TODO 3.3, PSPDecoder.forward in dlvc/models/pspnet.py).

The student's ``PSPDecoder`` is built in a sandboxed worker with a small random
configuration and fed the two streams of a small image batch. Its ``pyramid`` and
``upsampling`` modules (parts 1 and 2, graded on their own) are then replaced by
stand-ins made of plain torch modules, the same here and in the worker, so that a
mistake there costs nothing in this part: what is graded is how ``forward``
combines the modules. With the reference's weights loaded, every parameter and
BatchNorm statistic perturbed, its outputs (eval mode) and gradients (train mode)
must equal the reference's.
"""

import pytest
import torch

from dlvc.course.grader.sandbox import describe_call
from dlvc.models.pspnet import PSPDecoder

from ..modules import describe_module, expect_eval_outputs, expect_train_gradients, reference_and_student
from .common import Layer, describe_layers, draw, expect_shape, random_bins, reference_and_remote

STUDENT_DECODER = "dlvc.models.pspnet:PSPDecoder"


def random_config(rng: torch.Generator) -> dict:
    bins = random_bins(rng)
    return {
        "main_channels": len(bins) * draw(rng, 1, 2),
        "supplementary_channels": draw(rng, 2, 6),
        "bins": bins,
        "decoder_channels": draw(rng, 3, 6),
        "reduced_channels": draw(rng, 2, 5),
        "upsampling_channels": tuple(draw(rng, 2, 4) for _ in range(3)),
    }


def random_streams(rng: torch.Generator, config: dict, aligned: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The streams of a (2, 3, H, W) batch: main (2, C_m, H/8, W/8) and supplementary (2, C_s, H/32, W/32).

    The sizes are rounded up, as the encoder's strided layers round them. ``aligned``:
    H and W are multiples of 32, so the supplementary stream is a quarter of the main
    one; otherwise H and W are odd and differ.
    """
    if aligned:
        height, width = 32 * draw(rng, 1, 2), 32 * draw(rng, 1, 3)
    else:
        height = 2 * draw(rng, 17, 40) + 1
        width = height + 2 * draw(rng, 1, 10)
    main = torch.randn(2, config["main_channels"], -(-height // 8), -(-width // 8), generator=rng)
    supplementary = torch.randn(2, config["supplementary_channels"], -(-height // 32), -(-width // 32), generator=rng)
    return main, supplementary


def stand_in_layers(config: dict) -> dict[str, list[Layer]]:
    """What replaces the decoder's ``pyramid`` and ``upsampling``: maps of their shapes made of plain torch modules.

    pyramid: a 1x1 convolution, (B, C_m, h, w) -> (B, 2 C_m, h, w), the pooled map's
    shape (C_m is a multiple of the number of bins); upsampling: a 1x1 convolution to
    the last upsampling width, then a bilinear resize by 2 per upsampling stage.
    """
    stages = len(config["upsampling_channels"])
    return {
        "pyramid": [("Conv2d", {"in_channels": config["main_channels"], "out_channels": 2 * config["main_channels"], "kernel_size": 1})],
        "upsampling": [
            ("Conv2d", {"in_channels": config["decoder_channels"], "out_channels": config["upsampling_channels"][-1], "kernel_size": 1}),
            ("Upsample", {"scale_factor": 2**stages, "mode": "bilinear", "align_corners": True}),
        ],
    }


def install_stand_ins(worker, decoder, config: dict, rng: torch.Generator) -> dict:
    """Put the stand-ins in place of the student's ``decoder.pyramid`` and ``.upsampling``; returns them as built here, same weights."""
    built = {}
    for name, layers in stand_in_layers(config).items():
        built[name], remote = reference_and_remote(worker, rng, layers)
        worker.call("builtins:setattr", decoder, name, remote)
    return built


def with_stand_ins(config: dict) -> str:
    """How messages say that the decoder runs with the stand-ins."""
    layers = stand_in_layers(config)
    return (
        f" [.pyramid = {describe_layers(layers['pyramid'])} and .upsampling = {describe_layers(layers['upsampling'])} "
        "in place of yours; parts 1 and 2 are graded on their own]"
    )


def reference_and_student_with_stand_ins(worker, rng: torch.Generator, config: dict):
    """The reference decoder and the student's, holding the same weights and stand-ins, and how messages name them."""
    reference, decoder, what = reference_and_student(worker, rng, PSPDecoder, config)
    for name, module in install_stand_ins(worker, decoder, config, rng).items():
        setattr(reference, name, module)
    return reference, decoder, what + with_stand_ins(config)


@pytest.mark.graded(part="decoder", points=0.5)
def test_decoder_returns_the_upsampled_fusion_at_the_main_stream_size_times_eight(worker, rng):
    """PSPDecoder returns (B, upsampling_channels[-1], 8h, 8w) for a (B, C_m, h, w) main stream"""
    config = random_config(rng)
    main, supplementary = random_streams(rng, config, aligned=False)
    decoder = worker.new(STUDENT_DECODER, **config)
    install_stand_ins(worker, decoder, config, rng)
    decoder.call("eval")
    decoded = decoder.call(None, main, supplementary)
    what = f"{describe_module('PSPDecoder', config)}{with_stand_ins(config)}, .eval(), then {describe_call('forward', (main, supplementary))}"
    batch, _, height, width = main.shape
    meaning = "the fused map at the main stream's size, upsampled by the upsampling module"
    expect_shape(decoded, (batch, config["upsampling_channels"][-1], 8 * height, 8 * width), what, meaning)


@pytest.mark.parametrize("aligned", [True, False], ids=["image sides multiples of 32", "odd image sides"])
@pytest.mark.graded(part="decoder", points=0.75)
def test_decoder_equals_the_reference_in_eval_mode(worker, rng, aligned):
    """In eval mode, with the reference's weights, the decoded map equals the reference's"""
    config = random_config(rng)
    reference, decoder, what = reference_and_student_with_stand_ins(worker, rng, config)
    expect_eval_outputs(decoder, reference, *random_streams(rng, config, aligned), what=what)


@pytest.mark.graded(part="decoder", points=1)
def test_decoder_gradients_equal_the_reference_in_train_mode(worker, rng):
    """In train mode, the decoded map and the gradients for the main stream and every parameter equal the reference's"""
    config = random_config(rng)
    reference, decoder, what = reference_and_student_with_stand_ins(worker, rng, config)
    expect_train_gradients(worker, decoder, reference, *random_streams(rng, config, aligned=False), what=what, rng=rng)
