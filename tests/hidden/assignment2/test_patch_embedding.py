"""Graded: Assignment 2, part 1, the overlapping patch embedding (TODO 2.1 in dlvc/models/mit_transformer.py).

The student's ``OverlapPatchEmbed`` is built in a sandboxed worker with a stage's
kernel and stride; its tokens and output size, and then (with the reference's
perturbed weights) its token values and gradients, must equal the reference's.
"""

import math

import pytest
import torch

from dlvc.course.grader.expect import expect_equal, expect_tensor, fail
from dlvc.course.grader.sandbox import describe_call
from dlvc.models.mit_transformer import OverlapPatchEmbed

from ..modules import OUTPUT_TOLERANCE, describe_module, expect_train_gradients, reference_and_student

STUDENT_EMBED = "dlvc.models.mit_transformer:OverlapPatchEmbed"
STAGES = {"first stage": (7, 4), "later stage": (3, 2)}


def random_config(rng: torch.Generator, stage: str) -> dict:
    patch_size, stride = STAGES[stage]
    return {"in_channels": int(torch.randint(2, 6, (1,), generator=rng)), "embed_dim": 8, "patch_size": patch_size, "stride": stride}


def odd_images(rng: torch.Generator, config: dict) -> torch.Tensor:
    """A (2, C_in, H, W) batch whose sides are not multiples of the stride, and differ."""
    stride = config["stride"]
    height = stride * int(torch.randint(2, 5, (1,), generator=rng)) + 1
    return torch.randn(2, config["in_channels"], height, height + stride + 1, generator=rng)


@pytest.mark.parametrize("stage", list(STAGES))
@pytest.mark.graded(part="patch_embedding", points=0.5)
def test_patch_embedding_returns_ceil_sized_tokens_for_odd_sizes(worker, rng, stage):
    """(B, C_in, H, W) -> (B, N, C) tokens and ceil(H / stride), ceil(W / stride), for sides that are not multiples"""
    config = random_config(rng, stage)
    images = odd_images(rng, config)
    embed = worker.new(STUDENT_EMBED, **config)
    what = f"{describe_module('OverlapPatchEmbed', config)}, then {describe_call('forward', (images,))}"
    result = embed.call(None, images)
    if not isinstance(result, tuple) or len(result) != 3:
        fail(f"{what}: expected (tokens, height, width), got {type(result).__name__}")
    tokens, height, width = result
    size = tuple(math.ceil(side / config["stride"]) for side in images.shape[-2:])
    expect_equal((height, width), size, f"{what}: the output map's (height, width)")
    if not isinstance(tokens, torch.Tensor) or tuple(tokens.shape) != (2, size[0] * size[1], config["embed_dim"]):
        fail(f"{what}: expected tokens of shape {(2, size[0] * size[1], config['embed_dim'])}, got {getattr(tokens, 'shape', type(tokens).__name__)}")


@pytest.mark.graded(part="patch_embedding", points=0.5)
def test_patch_embedding_tokens_equal_the_reference(worker, rng):
    """With the reference's weights, the tokens equal the reference's (convolution, then LayerNorm per token)"""
    config = random_config(rng, "first stage")
    reference, embed, what = reference_and_student(worker, rng, OverlapPatchEmbed, config)
    images = odd_images(rng, config)
    reference.eval()
    embed.call("eval")
    with torch.no_grad():
        expected, _, _ = reference(images)
    tokens = embed.call(None, images)
    expect_tensor(tokens[0] if isinstance(tokens, tuple) else tokens, expected, f"{what}, {describe_call('forward', (images,))}: the tokens", atol=OUTPUT_TOLERANCE, rtol=OUTPUT_TOLERANCE)


@pytest.mark.graded(part="patch_embedding", points=0.5)
def test_patch_embedding_gradients_equal_the_reference(worker, rng):
    """The gradients of the tokens for the input and for every weight equal the reference's"""
    config = random_config(rng, "later stage")
    reference, embed, what = reference_and_student(worker, rng, OverlapPatchEmbed, config)
    images = odd_images(rng, config)
    expect_train_gradients(worker, embed, reference, images, what=what, rng=rng)
