"""Graded: Assignment 1, part 2, the losses (TODOs 1.4, 1.5 and 1.6 in dlvc/losses.py).

The student's ``target_log_probs`` and ``weighted_pixel_mean`` are called in a
sandboxed worker on random logits and targets drawn for this grading run, and the
student's ``CrossEntropyLoss`` and ``FocalLoss`` are built there and run forward and
backward (the loss times a random weight). Values and the gradients for the logits
must equal the reference build's on the same inputs.
"""

import pytest
import torch

from dlvc.constants import IGNORE_INDEX
from dlvc.course.grader.expect import expect_tensor
from dlvc.course.grader.sandbox import describe_call
from dlvc.course.sandboxed.probes import forward_and_gradients
from dlvc.losses import CrossEntropyLoss, FocalLoss, target_log_probs, weighted_pixel_mean

STUDENT = "dlvc.losses"
TOLERANCE = 1e-5


def draw(rng: torch.Generator, low: int, high: int) -> int:
    """An int in [low, high]."""
    return int(torch.randint(low, high + 1, (1,), generator=rng))


def random_batch(rng: torch.Generator, ignored: float = 0.25, scale: float = 3.0):
    """Random float32 logits (B, C, H, W) and an int64 target (B, H, W) with a share ``ignored`` of 255."""
    batch, classes, height, width = draw(rng, 1, 3), draw(rng, 2, 6), draw(rng, 3, 9), draw(rng, 3, 9)
    logits = scale * torch.randn(batch, classes, height, width, generator=rng)
    target = torch.randint(0, classes, (batch, height, width), generator=rng)
    target[torch.rand(target.shape, generator=rng) < ignored] = IGNORE_INDEX
    target.view(-1)[0] = 0  # at least one labelled pixel
    return logits, target


def random_weight(rng: torch.Generator, classes: int) -> torch.Tensor:
    return 0.1 + 3 * torch.rand(classes, generator=rng)


def expect_loss_and_gradient(worker, rng, name: str, config: dict, reference: torch.nn.Module, logits, target) -> None:
    """The student's loss ``name(**config)`` gives the reference's value and gradient for the logits."""
    loss = worker.new(f"{STUDENT}:{name}", **config)
    seed = draw(rng, 0, 2**31 - 1)
    got = worker.call("$probe:forward_and_gradients", loss, logits, target, seed=seed)
    expected = forward_and_gradients(reference, logits, target, seed=seed)
    shown = ", ".join(f"{key}={'a (C,) tensor' if isinstance(value, torch.Tensor) else value}" for key, value in config.items())
    call = f"{name}({shown}){describe_call('', (logits, target))}"
    expect_tensor(got["output"], expected["output"], f"{call}: the loss", atol=TOLERANCE, rtol=TOLERANCE)
    expect_tensor(got["input_grad"], expected["input_grad"], f"{call}: the gradient for the logits", atol=TOLERANCE, rtol=TOLERANCE)


@pytest.mark.graded(part="losses", points=1)
def test_target_log_probs_are_the_log_softmax_at_the_target_and_zero_where_ignored(worker, rng):
    """target_log_probs is the log-softmax over the classes at each pixel's target class, 0 at pixels labelled 255"""
    logits, target = random_batch(rng)
    got = worker.call(f"{STUDENT}:target_log_probs", logits, target)
    expected = target_log_probs(logits, target)
    expect_tensor(got, expected, describe_call("target_log_probs", (logits, target)), atol=TOLERANCE, rtol=TOLERANCE)


@pytest.mark.graded(part="losses", points=1)
def test_target_log_probs_stay_exact_at_logits_of_plus_minus_1e4(worker, rng):
    """target_log_probs stays exact and finite at logits of +-1e4, where log(softmax + eps) does not"""
    logits, target = random_batch(rng, ignored=0.1)
    logits = 1e4 * torch.where(torch.rand(logits.shape, generator=rng) < 0.5, -1.0, 1.0)
    got = worker.call(f"{STUDENT}:target_log_probs", logits, target)
    expected = target_log_probs(logits, target)
    what = describe_call("target_log_probs", (logits, target)) + " with every logit +1e4 or -1e4"
    expect_tensor(got, expected, what, atol=TOLERANCE, rtol=TOLERANCE)


@pytest.mark.graded(part="losses", points=1)
def test_cross_entropy_value_and_gradient_equal_the_reference(worker, rng):
    """CrossEntropyLoss() gives the reference's loss and gradient, pixels labelled 255 left out"""
    logits, target = random_batch(rng)
    expect_loss_and_gradient(worker, rng, "CrossEntropyLoss", {}, CrossEntropyLoss(), logits, target)


@pytest.mark.graded(part="losses", points=0.5)
def test_weighted_pixel_mean_leaves_ignored_pixels_out_of_the_sum_and_the_count(worker, rng):
    """weighted_pixel_mean without weights is the mean over the labelled pixels; what is at ignored pixels counts nowhere"""
    logits, target = random_batch(rng, ignored=0.4)
    pixel_loss = torch.rand(target.shape, generator=rng)
    pixel_loss[target == IGNORE_INDEX] = 1000.0
    got = worker.call(f"{STUDENT}:weighted_pixel_mean", pixel_loss, target)
    what = describe_call("weighted_pixel_mean", (pixel_loss, target)) + " where the pixels labelled 255 hold a loss of 1000"
    expect_tensor(got, weighted_pixel_mean(pixel_loss, target), what, atol=TOLERANCE, rtol=TOLERANCE)


@pytest.mark.graded(part="losses", points=0.5)
def test_weighted_pixel_mean_divides_by_the_weights_of_the_labelled_pixels(worker, rng):
    """weighted_pixel_mean with class weights divides the weighted sum by the sum of the labelled pixels' weights"""
    logits, target = random_batch(rng)
    pixel_loss = torch.rand(target.shape, generator=rng)
    weight = random_weight(rng, logits.shape[1])
    got = worker.call(f"{STUDENT}:weighted_pixel_mean", pixel_loss, target, weight)
    what = describe_call("weighted_pixel_mean", (pixel_loss, target, weight))
    expect_tensor(got, weighted_pixel_mean(pixel_loss, target, weight), what, atol=TOLERANCE, rtol=TOLERANCE)


@pytest.mark.graded(part="losses", points=0.5)
def test_a_batch_without_labelled_pixels_gives_zero_and_zero_gradients(worker, rng):
    """CrossEntropyLoss of a batch whose pixels are all 255 is 0, with zero gradients (never NaN)"""
    logits, target = random_batch(rng)
    target = torch.full_like(target, IGNORE_INDEX)
    expect_loss_and_gradient(worker, rng, "CrossEntropyLoss", {}, CrossEntropyLoss(), logits, target)


@pytest.mark.graded(part="losses", points=1)
def test_focal_loss_value_and_gradient_equal_the_reference(worker, rng):
    """FocalLoss(gamma) gives the reference's loss and gradient for a random gamma"""
    logits, target = random_batch(rng)
    gamma = round(0.5 + 2.5 * float(torch.rand((), generator=rng)), 3)
    expect_loss_and_gradient(worker, rng, "FocalLoss", {"gamma": gamma}, FocalLoss(gamma=gamma), logits, target)


@pytest.mark.graded(part="losses", points=0.5)
def test_focal_loss_with_class_weights_equals_the_reference(worker, rng):
    """FocalLoss(gamma, weight) averages with the class weights like the weighted cross-entropy"""
    logits, target = random_batch(rng)
    weight = random_weight(rng, logits.shape[1])
    config = {"gamma": 2.0, "weight": weight}
    expect_loss_and_gradient(worker, rng, "FocalLoss", config, FocalLoss(**config), logits, target)
