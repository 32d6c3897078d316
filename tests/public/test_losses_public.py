"""Assignment 1, part 2: the losses (TODOs 1.4, 1.5 and 1.6 in dlvc/losses.py).

Hand-worked examples and PyTorch's own ``F.cross_entropy`` as the yardstick. The
graded tests check the same behaviours, and the gradients, on random inputs.
"""

import math

import pytest
import torch
import torch.nn.functional as F

from dlvc.constants import IGNORE_INDEX
from dlvc.losses import CrossEntropyLoss, FocalLoss, target_log_probs, weighted_pixel_mean

LN2 = math.log(2.0)


def hand_batch():
    """One image of three pixels, two classes: probabilities (1/2, 1/2) labelled 0,
    (3/4, 1/4) labelled 1, and an ignored pixel with arbitrary logits."""
    logits = torch.tensor([[0.0, math.log(3.0), 7.0], [0.0, 0.0, -2.0]], dtype=torch.float64)
    logits = logits.view(1, 2, 1, 3)  # (C, W) -> (B, C, H, W)
    target = torch.tensor([[[0, 1, IGNORE_INDEX]]])
    return logits, target


def random_batch(seed: int):
    """Random logits (2, 4, 8, 8) and a target with every class and a fifth of the pixels ignored."""
    generator = torch.Generator().manual_seed(seed)
    logits = 3 * torch.randn(2, 4, 8, 8, generator=generator)
    target = torch.randint(0, 4, (2, 8, 8), generator=generator)
    target[torch.rand(2, 8, 8, generator=generator) < 0.2] = IGNORE_INDEX
    target[0, 0, :4] = torch.arange(4)
    return logits, target


# TODO 1.4: target_log_probs


def test_target_log_probs_are_the_log_softmax_at_the_target_class_and_zero_where_ignored():
    logits, target = hand_batch()
    expected = torch.tensor([[[-LN2, -math.log(4.0), 0.0]]], dtype=torch.float64)
    torch.testing.assert_close(
        target_log_probs(logits, target), expected,
        msg="log p_t should be log(1/2) and log(1/4) at the two labelled pixels, and exactly 0 at the ignored one",
    )


def test_target_log_probs_stay_exact_at_logits_of_plus_minus_1e4():
    logits = torch.tensor([1e4, -1e4, -1e4, 1e4]).view(1, 2, 1, 2)  # both pixels predict the wrong class
    target = torch.tensor([[[1, 0]]])
    got = target_log_probs(logits, target)
    assert torch.equal(got, torch.full((1, 1, 2), -2e4)), (
        f"at logits of +-1e4, log p_t is exactly -2e4; got {got.flatten().tolist()}. "
        "log(softmax + eps) gives log(eps) here, and log(softmax) gives -inf"
    )


# TODO 1.5: weighted_pixel_mean


def test_weighted_pixel_mean_averages_over_the_labelled_pixels_only():
    pixel_loss = torch.tensor([[[1.0, 3.0, 1000.0]]])
    target = torch.tensor([[[0, 1, IGNORE_INDEX]]])
    got = weighted_pixel_mean(pixel_loss, target)
    assert got.item() == pytest.approx(2.0), (
        f"the mean of 1 and 3 over the two labelled pixels is 2, got {got.item()}: the ignored pixel "
        "(loss 1000) must count neither in the sum nor in the number of pixels"
    )


def test_weighted_pixel_mean_divides_by_the_sum_of_the_weights():
    pixel_loss = torch.tensor([[[1.0, 3.0, 1000.0]]])
    target = torch.tensor([[[0, 1, IGNORE_INDEX]]])
    got = weighted_pixel_mean(pixel_loss, target, weight=torch.tensor([1.0, 3.0]))
    assert got.item() == pytest.approx((1 * 1.0 + 3 * 3.0) / (1 + 3)), (
        f"class weights (1, 3) give (1*1 + 3*3) / (1 + 3) = 2.5, got {got.item()}"
    )


def test_weighted_pixel_mean_of_a_batch_without_labels_is_zero_with_zero_gradients():
    pixel_loss = torch.rand(2, 3, 3, requires_grad=True)
    got = weighted_pixel_mean(pixel_loss, torch.full((2, 3, 3), IGNORE_INDEX))
    got.backward()
    assert got.item() == 0.0, f"a batch whose pixels are all 255 has loss 0, got {got.item()}"
    assert torch.equal(pixel_loss.grad, torch.zeros_like(pixel_loss)), "and zero gradients, never NaN"


# TODOs 1.4 and 1.5 together: the cross-entropy


def test_cross_entropy_equals_pytorch_with_ignored_pixels():
    logits, target = random_batch(seed=0)
    torch.testing.assert_close(
        CrossEntropyLoss()(logits, target), F.cross_entropy(logits, target, ignore_index=IGNORE_INDEX),
        msg="CrossEntropyLoss() should equal F.cross_entropy(logits, target, ignore_index=255)",
    )


def test_weighted_cross_entropy_equals_pytorch():
    logits, target = random_batch(seed=1)
    weight = torch.tensor([0.5, 2.0, 1.0, 4.0])
    torch.testing.assert_close(
        CrossEntropyLoss(weight=weight)(logits, target),
        F.cross_entropy(logits, target, weight=weight, ignore_index=IGNORE_INDEX),
        msg="CrossEntropyLoss(weight=w) should equal F.cross_entropy(..., weight=w, ignore_index=255)",
    )


def test_cross_entropy_gradient_is_finite_at_logits_of_plus_minus_1e4():
    logits = torch.tensor([1e4, -1e4, -1e4, 1e4]).view(1, 2, 1, 2).requires_grad_()
    target = torch.tensor([[[1, 0]]])
    loss = CrossEntropyLoss()(logits, target)
    loss.backward()
    assert loss.item() == 2e4, f"the loss at logits of +-1e4 is exactly 2e4, got {loss.item()}"
    torch.testing.assert_close(
        logits.grad, torch.tensor([0.5, -0.5, -0.5, 0.5]).view(1, 2, 1, 2),
        msg="the gradient of the cross-entropy is (softmax - one_hot) / N: finite even at logits of +-1e4",
    )


# TODO 1.6: the focal loss


def test_focal_loss_hand_computed_case():
    logits, target = hand_batch()
    expected = ((1 / 2) ** 2 * LN2 + (3 / 4) ** 2 * math.log(4.0)) / 2
    got = FocalLoss(gamma=2.0)(logits, target).item()
    assert got == pytest.approx(expected, rel=1e-12), (
        f"focal loss at gamma = 2 is the mean of (1 - p_t)^2 * -log p_t over the two labelled pixels, {expected:.6f}; got {got:.6f}"
    )


def test_focal_loss_with_gamma_zero_is_the_weighted_cross_entropy():
    logits, target = random_batch(seed=3)
    weight = torch.tensor([0.5, 2.0, 1.0, 4.0])
    torch.testing.assert_close(
        FocalLoss(gamma=0.0, weight=weight)(logits, target),
        F.cross_entropy(logits, target, weight=weight, ignore_index=IGNORE_INDEX),
        msg="with gamma = 0 the factor (1 - p_t)^gamma is 1: the focal loss must equal the weighted cross-entropy",
    )
