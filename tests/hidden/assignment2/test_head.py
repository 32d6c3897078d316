"""Graded: Assignment 2, part 4, the All-MLP head's fusion (TODO 2.4 in dlvc/models/segformer_head.py).

The student's ``SegFormerHead`` is built in a sandboxed worker with the reference's
perturbed weights (BatchNorm statistics included) and given four random stage maps,
each smaller than the one before; its logits and their gradients must equal the
reference's. Either order of the computation passes: concatenating first, or fusing
each stage at its own resolution.
"""

import pytest
import torch

from dlvc.course.grader.expect import fail
from dlvc.course.grader.sandbox import describe_call
from dlvc.models.segformer_head import SegFormerHead

from ..modules import describe_module, expect_eval_outputs, expect_train_gradients, reference_and_student

STUDENT_HEAD = "dlvc.models.segformer_head:SegFormerHead"


def random_case(rng: torch.Generator, square: bool):
    """A head's configuration and four stage maps (B, C_i, H_i, W_i), each stage half the size of the one before (rounded up)."""
    in_channels = [4, 6, 8, 10]
    config = {"in_channels": in_channels, "decoder_dim": 8, "num_classes": int(torch.randint(2, 5, (1,), generator=rng)), "dropout": 0.1}
    height = int(torch.randint(8, 13, (1,), generator=rng))
    width = height if square else height + int(torch.randint(3, 7, (1,), generator=rng))
    features = []
    for channels in in_channels:
        features.append(torch.randn(2, channels, height, width, generator=rng))
        height, width = (height + 1) // 2, (width + 1) // 2
    return config, features


@pytest.mark.graded(part="head", points=0.5)
def test_head_returns_logits_at_the_first_stage_size(worker, rng):
    """Four stage maps -> (B, K, H_1, W_1) logits"""
    config, features = random_case(rng, square=False)
    head = worker.new(STUDENT_HEAD, **config)
    head.call("eval")
    logits = head.call(None, features)
    expected = (2, config["num_classes"], *features[0].shape[-2:])
    if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != expected:
        what = f"{describe_module('SegFormerHead', config)}.eval(), then {describe_call('forward', (features,))}"
        fail(f"{what}: expected logits of shape {expected}, got {getattr(logits, 'shape', type(logits).__name__)}")


@pytest.mark.parametrize("square", [True, False], ids=["square maps", "non-square maps"])
@pytest.mark.graded(part="head", points=0.75)
def test_head_logits_equal_the_reference_in_eval_mode(worker, rng, square):
    """Each stage projected to D channels, upsampled to the first stage's size, concatenated deepest first and fused"""
    config, features = random_case(rng, square=square)
    reference, head, what = reference_and_student(worker, rng, SegFormerHead, config)
    expect_eval_outputs(head, reference, features, what=what)


@pytest.mark.graded(part="head", points=1)
def test_head_gradients_equal_the_reference_in_train_mode(worker, rng):
    """In train mode (BatchNorm on the batch, dropout from one seed), the logits and the gradients for every stage map and weight equal the reference's"""
    config, features = random_case(rng, square=False)
    reference, head, what = reference_and_student(worker, rng, SegFormerHead, config)
    expect_train_gradients(worker, head, reference, features, what=what, rng=rng)
