"""Graded: Assignment 2, part 3, the transformer block (TODO 2.3 in dlvc/models/mit_transformer.py).

The student's ``Block`` is built in a sandboxed worker, its attention replaced by a
fixed stand-in (the grader's, also in the reference), so that a wrong attention
costs only the attention's points. With the reference's perturbed weights (the two
LayerNorms differ), outputs and gradients must equal the reference's; in train
mode, stochastic depth draws from one seed on both sides.
"""

import pytest
import torch

from dlvc.course.grader.expect import fail
from dlvc.course.grader.sandbox import describe_call
from dlvc.course.sandboxed.probes import with_stand_in_attention
from dlvc.models.mit_transformer import Block

from ..modules import describe_module, expect_eval_outputs, expect_train_gradients, reference_module, with_reference_weights

STUDENT_BLOCK = "dlvc.models.mit_transformer:Block"


def random_case(rng: torch.Generator, square: bool, drop_path: float = 0.0):
    """A block's configuration, (B, N, C) tokens and the map's H and W."""
    config = {"dim": 16, "num_heads": 2, "mlp_ratio": 2, "sr_ratio": 1, "drop_path": drop_path}
    height = int(torch.randint(2, 6, (1,), generator=rng))
    width = height if square else height + int(torch.randint(1, 4, (1,), generator=rng))
    return config, torch.randn(3, height * width, config["dim"], generator=rng), height, width


def reference_and_student(worker, rng, config):
    """The reference's block and the student's, both with the stand-in attention and the same perturbed weights."""
    reference = reference_module(rng, lambda: with_stand_in_attention(Block(**config), config["dim"]))
    what = f"{describe_module('Block', config)} with the reference's weights (its attention replaced by a fixed stand-in)"
    block = worker.call("$probe:with_stand_in_attention", worker.new(STUDENT_BLOCK, **config), config["dim"])
    return reference, with_reference_weights(block, reference, what), what


@pytest.mark.graded(part="block", points=0.5)
def test_block_keeps_the_token_shape(worker, rng):
    """(B, N, C) tokens of an H x W map -> (B, N, C)"""
    config, tokens, height, width = random_case(rng, square=False)
    _, block, what = reference_and_student(worker, rng, config)
    out = block.call(None, tokens, height, width)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != tuple(tokens.shape):
        fail(f"{what}, {describe_call('forward', (tokens, height, width))}: expected shape {tuple(tokens.shape)}, got {getattr(out, 'shape', type(out).__name__)}")


@pytest.mark.parametrize("square", [True, False], ids=["square map", "non-square map"])
@pytest.mark.graded(part="block", points=0.75)
def test_block_equals_the_reference_in_eval_mode(worker, rng, square):
    """Pre-norm residual sub-layers: x + attn(norm1(x)), then x + mlp(norm2(x)); no stochastic depth in eval mode"""
    config, tokens, height, width = random_case(rng, square=square, drop_path=0.3)
    reference, block, what = reference_and_student(worker, rng, config)
    expect_eval_outputs(block, reference, tokens, height, width, what=what)


@pytest.mark.graded(part="block", points=1)
def test_block_gradients_equal_the_reference_in_train_mode(worker, rng):
    """In train mode, with stochastic depth, the output and the gradients for the tokens and every weight equal the reference's"""
    config, tokens, height, width = random_case(rng, square=False, drop_path=0.3)
    reference, block, what = reference_and_student(worker, rng, config)
    expect_train_gradients(worker, block, reference, tokens, height, width, what=what, rng=rng)
