"""Graded: Assignment 2, part 2, efficient self-attention's spatial reduction (TODO 2.2 in dlvc/models/mit_transformer.py).

The student's ``EfficientSelfAttention`` is built in a sandboxed worker and holds
the reference's perturbed weights; its output for random tokens of an H x W map
must equal the reference's, with the reduction (sr_ratio > 1) and without it.
"""

import pytest
import torch

from dlvc.course.grader.expect import fail
from dlvc.course.grader.sandbox import describe_call
from dlvc.models.mit_transformer import EfficientSelfAttention

from ..modules import describe_module, expect_eval_outputs, expect_train_gradients, reference_and_student

STUDENT_ATTENTION = "dlvc.models.mit_transformer:EfficientSelfAttention"


def random_case(rng: torch.Generator, sr_ratio: int, square: bool):
    """A configuration, (B, N, C) tokens and the map's H and W, a multiple of ``sr_ratio`` on each side."""
    config = {"dim": 16, "num_heads": int(torch.randint(1, 3, (1,), generator=rng)) * 2, "sr_ratio": sr_ratio}
    height = sr_ratio * int(torch.randint(2, 4, (1,), generator=rng))
    width = height if square else height + sr_ratio * int(torch.randint(1, 3, (1,), generator=rng))
    tokens = torch.randn(2, height * width, config["dim"], generator=rng)
    return config, tokens, height, width


@pytest.mark.graded(part="attention", points=0.5)
def test_attention_keeps_the_token_shape_with_reduction(worker, rng):
    """(B, N, C) tokens of an H x W map -> (B, N, C), with sr_ratio 2"""
    config, tokens, height, width = random_case(rng, sr_ratio=2, square=False)
    attention = worker.new(STUDENT_ATTENTION, **config)
    out = attention.call(None, tokens, height, width)
    what = f"{describe_module('EfficientSelfAttention', config)}, then {describe_call('forward', (tokens, height, width))}"
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != tuple(tokens.shape):
        fail(f"{what}: expected an output of shape {tuple(tokens.shape)}, got {getattr(out, 'shape', type(out).__name__)}")


@pytest.mark.graded(part="attention", points=0.5)
def test_attention_without_reduction_equals_the_reference(worker, rng):
    """With sr_ratio 1, keys and values see the tokens unchanged"""
    config, tokens, height, width = random_case(rng, sr_ratio=1, square=True)
    reference, attention, what = reference_and_student(worker, rng, EfficientSelfAttention, config)
    expect_eval_outputs(attention, reference, tokens, height, width, what=what)


@pytest.mark.parametrize("sr_ratio, square", [(2, True), (4, False)], ids=["sr_ratio 2, square map", "sr_ratio 4, non-square map"])
@pytest.mark.graded(part="attention", points=0.5)
def test_attention_with_reduction_equals_the_reference(worker, rng, sr_ratio, square):
    """With sr_ratio > 1, keys and values come from the map shrunk by the convolution, then LayerNorm"""
    config, tokens, height, width = random_case(rng, sr_ratio=sr_ratio, square=square)
    reference, attention, what = reference_and_student(worker, rng, EfficientSelfAttention, config)
    expect_eval_outputs(attention, reference, tokens, height, width, what=what)


@pytest.mark.graded(part="attention", points=1)
def test_attention_gradients_equal_the_reference(worker, rng):
    """The output's gradients for the tokens and for every weight (the reduction's included) equal the reference's"""
    config, tokens, height, width = random_case(rng, sr_ratio=2, square=False)
    reference, attention, what = reference_and_student(worker, rng, EfficientSelfAttention, config)
    expect_train_gradients(worker, attention, reference, tokens, height, width, what=what, rng=rng)
