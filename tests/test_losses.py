"""Specification of dlvc.losses beyond the students' part: class weights, top-k, Dice, soft IoU, Lovasz, and what every loss shares.

The cross-entropy and the focal loss that students write (Assignment 1, part 2) are
specified in tests/public/test_losses_public.py and graded in tests/hidden/assignment1/test_losses.py.
"""

import math

import pytest
import segmentation_models_pytorch.losses as smp_losses
import torch
import torch.nn.functional as F

from dlvc.constants import IGNORE_INDEX
from dlvc.losses import (
    LOSSES,
    CrossEntropyLoss,
    DiceLoss,
    FocalLoss,
    LovaszSoftmaxLoss,
    SoftIoULoss,
    TopKCrossEntropyLoss,
    build_loss,
    class_weights_from_frequencies,
)

NUM_CLASSES = 4


def random_batch(seed: int = 0, ignored_fraction: float = 0.2, dtype=torch.float32):
    """Random logits (2, 4, 8, 8) and a target holding every class and some ignored pixels."""
    generator = torch.Generator().manual_seed(seed)
    logits = 3 * torch.randn(2, NUM_CLASSES, 8, 8, generator=generator, dtype=dtype)
    target = torch.randint(0, NUM_CLASSES, (2, 8, 8), generator=generator)
    target[0, 0, :NUM_CLASSES] = torch.arange(NUM_CLASSES)
    ignored = torch.rand(2, 8, 8, generator=generator) < ignored_fraction
    ignored[0, 0, :NUM_CLASSES] = False
    target[ignored] = IGNORE_INDEX
    return logits, target


def hand_batch():
    """Three pixels of one image, two classes: probabilities (1/2, 1/2) labelled 0,
    (3/4, 1/4) labelled 1, and one ignored pixel with arbitrary logits."""
    logits = torch.tensor([[0.0, math.log(3.0), 7.0], [0.0, 0.0, -2.0]], dtype=torch.float64)
    logits = logits.view(1, 2, 1, 3)
    target = torch.tensor([[[0, 1, IGNORE_INDEX]]])
    return logits, target


# Class weights (the cross-entropy and focal loss themselves: tests/public/test_losses_public.py)


def test_class_weights_inverse_frequency():
    weights = class_weights_from_frequencies([10, 30, 0, 60], scheme="inverse")
    torch.testing.assert_close(
        weights, torch.tensor([10 / 3, 10 / 9, 0.0, 5 / 9]),
        msg="inverse weights are total / (present classes * count), and 0 for a class that never occurs",
    )


def test_class_weights_median_frequency():
    weights = class_weights_from_frequencies([10, 30, 0, 60], scheme="median")
    torch.testing.assert_close(
        weights, torch.tensor([3.0, 1.0, 0.0, 0.5]),
        msg="median frequency balancing gives median(freq) / freq, and 0 for a class that never occurs",
    )


def test_class_weights_reject_an_unknown_scheme():
    with pytest.raises(ValueError, match="scheme"):
        class_weights_from_frequencies([1, 2], scheme="sqrt")


# Top-k cross-entropy


def test_topk_with_k_one_is_cross_entropy():
    logits, target = random_batch(seed=5)
    expected = F.cross_entropy(logits, target, ignore_index=IGNORE_INDEX)
    torch.testing.assert_close(
        TopKCrossEntropyLoss(k=1.0)(logits, target), expected, atol=1e-6, rtol=1e-6,
        msg="keeping every counted pixel (k = 1) must give the plain cross-entropy",
    )


def test_topk_keeps_the_hardest_pixels():
    logits, target = hand_batch()
    loss = TopKCrossEntropyLoss(k=0.5)(logits, target)
    assert loss.item() == pytest.approx(math.log(4.0), rel=1e-12), (
        "of the two counted pixels (losses ln 2 and ln 4) k = 0.5 keeps only the harder one, ln 4"
    )


def test_topk_rejects_k_outside_zero_one():
    with pytest.raises(ValueError, match="k"):
        TopKCrossEntropyLoss(k=0.0)


# Dice and soft IoU


def test_dice_hand_computed_case():
    logits, target = hand_batch()
    dice_0 = 2 * 0.5 / (1.25 + 1)  # I = 1/2, P = 1/2 + 3/4, L = 1
    dice_1 = 2 * 0.25 / (0.75 + 1)  # I = 1/4, P = 1/2 + 1/4, L = 1
    expected = 1 - (dice_0 + dice_1) / 2
    assert DiceLoss(smooth=0.0)(logits, target).item() == pytest.approx(expected, rel=1e-12), (
        "Dice loss is 1 - mean over classes of 2 I / (P + L), summed over the counted pixels"
    )


def test_dice_matches_smp_when_every_class_is_present():
    logits, target = random_batch(seed=6)
    reference = smp_losses.DiceLoss(mode="multiclass", from_logits=True, smooth=0.5, ignore_index=IGNORE_INDEX)
    torch.testing.assert_close(
        DiceLoss(smooth=1.0)(logits, target), reference(logits, target), atol=1e-6, rtol=1e-6,
        msg="(2 I + s) / (P + L + s) should equal smp's (I + s/2) / ((P + L) / 2 + s/2)",
    )


def test_dice_leaves_absent_classes_out_of_the_mean():
    logits = torch.zeros(1, 2, 2, 2)
    target = torch.zeros(1, 2, 2, dtype=torch.int64)
    assert DiceLoss(smooth=0.0)(logits, target).item() == pytest.approx(1 / 3), (
        "only class 0 is labelled: its Dice is 2 * 2 / (2 + 4) = 2/3, and class 1 must not dilute the mean"
    )


def test_soft_iou_hand_computed_case():
    logits, target = hand_batch()
    iou_0 = 0.5 / (1.25 + 1 - 0.5)
    iou_1 = 0.25 / (0.75 + 1 - 0.25)
    expected = 1 - (iou_0 + iou_1) / 2
    assert SoftIoULoss(smooth=0.0)(logits, target).item() == pytest.approx(expected, rel=1e-12), (
        "soft IoU loss is 1 - mean over classes of I / (P + L - I)"
    )


def test_soft_iou_matches_smp_jaccard_when_every_class_is_present():
    logits, target = random_batch(seed=7)
    reference = smp_losses.JaccardLoss(mode="multiclass", from_logits=True, smooth=1.0, ignore_index=IGNORE_INDEX)
    torch.testing.assert_close(
        SoftIoULoss(smooth=1.0)(logits, target), reference(logits, target), atol=1e-6, rtol=1e-6,
        msg="SoftIoULoss should equal smp's JaccardLoss(mode='multiclass') with the same smooth",
    )


# Lovasz-Softmax


def test_lovasz_matches_smp():
    logits, target = random_batch(seed=8)
    reference = smp_losses.LovaszLoss(mode="multiclass", per_image=False, ignore_index=IGNORE_INDEX)
    torch.testing.assert_close(
        LovaszSoftmaxLoss()(logits, target), reference(logits, target), atol=1e-6, rtol=1e-6,
        msg="LovaszSoftmaxLoss should equal smp's LovaszLoss(mode='multiclass', per_image=False)",
    )


def test_lovasz_hand_computed_case():
    logits, target = hand_batch()
    class_0 = 0.75 * 0.5 + 0.5 * 0.5  # sorted errors (3/4, 1/2), Lovasz gradient (1/2, 1/2)
    class_1 = 0.75 * 1.0 + 0.5 * 0.0  # sorted errors (3/4, 1/2), Lovasz gradient (1, 0)
    assert LovaszSoftmaxLoss()(logits, target).item() == pytest.approx((class_0 + class_1) / 2, rel=1e-12), (
        "Lovasz-Softmax is the mean over present classes of the sorted errors dotted with the Lovasz gradient"
    )


def test_lovasz_of_confident_predictions_is_one_minus_mean_iou():
    generator = torch.Generator().manual_seed(9)
    prediction = torch.randint(0, 3, (1, 6, 6), generator=generator)
    target = torch.randint(0, 3, (1, 6, 6), generator=generator)
    logits = 100.0 * F.one_hot(prediction, 3).permute(0, 3, 1, 2).double()  # (B, H, W, C) -> (B, C, H, W)
    ious = [
        ((prediction == c) & (target == c)).sum().double() / ((prediction == c) | (target == c)).sum()
        for c in target.unique()
    ]
    expected = 1 - torch.stack(ious).mean()
    assert LovaszSoftmaxLoss()(logits, target).item() == pytest.approx(expected.item(), abs=1e-9), (
        "for one-hot probabilities the Lovasz extension equals the Jaccard loss 1 - mean IoU"
    )


# Every loss


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_all_ignored_batch_gives_zero_loss_with_zero_gradients(name):
    logits = torch.randn(2, NUM_CLASSES, 4, 4, requires_grad=True)
    target = torch.full((2, 4, 4), IGNORE_INDEX)
    loss = build_loss(name)(logits, target)
    loss.backward()
    assert loss.item() == 0.0, f"{name}: a batch without a counted pixel must give 0, got {loss.item()}"
    assert torch.equal(logits.grad, torch.zeros_like(logits)), f"{name}: ignored pixels must get zero gradients"


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_gradients_flow_and_are_finite(name):
    logits, target = random_batch(seed=10)
    logits.requires_grad_()
    loss = build_loss(name)(logits, target)
    loss.backward()
    assert loss.ndim == 0 and loss.item() > 0, f"{name}: expected a positive scalar loss, got {loss}"
    assert torch.isfinite(logits.grad).all(), f"{name}: gradients must be finite"
    assert logits.grad.abs().sum() > 0, f"{name}: gradients must reach the logits"


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_ignored_pixels_get_no_gradient(name):
    logits, target = random_batch(seed=11)
    logits.requires_grad_()
    build_loss(name)(logits, target).backward()
    ignored = (target == IGNORE_INDEX).unsqueeze(1).expand_as(logits)
    assert torch.equal(logits.grad[ignored], torch.zeros(int(ignored.sum()))), (
        f"{name}: the logits of ignored pixels must not receive any gradient"
    )


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_loss_stays_finite_at_extreme_logits(name):
    logits, target = random_batch(seed=12)
    logits = (1e4 * logits.sign()).requires_grad_()
    loss = build_loss(name)(logits, target)
    loss.backward()
    assert torch.isfinite(loss), f"{name}: the loss must stay finite at logits of +-1e4"
    assert torch.isfinite(logits.grad).all(), f"{name}: gradients must stay finite at logits of +-1e4"


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_integer_logits_are_rejected(name):
    _, target = random_batch()
    with pytest.raises(TypeError, match="logits"):
        build_loss(name)(torch.zeros(2, NUM_CLASSES, 8, 8, dtype=torch.int64), target)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_float_target_is_rejected(name):
    logits, target = random_batch()
    with pytest.raises(TypeError, match="target"):
        build_loss(name)(logits, target.float())


def test_target_of_another_size_is_rejected():
    logits, target = random_batch()
    with pytest.raises(ValueError, match=r"target.*\(2, 8, 8\)"):
        CrossEntropyLoss()(logits, target[:, :4])


def test_labels_outside_the_classes_are_rejected():
    logits, target = random_batch()
    target[1, 1, 1] = NUM_CLASSES
    with pytest.raises(ValueError, match=r"target.*\[4\]"):
        CrossEntropyLoss()(logits, target)


def test_weight_of_the_wrong_length_is_rejected():
    logits, target = random_batch()
    with pytest.raises(ValueError, match="weight"):
        CrossEntropyLoss(weight=[1.0, 2.0])(logits, target)


def test_build_loss_lists_the_valid_names():
    with pytest.raises(ValueError, match="ce.*dice.*focal"):
        build_loss("hinge")


def test_build_loss_passes_keyword_arguments():
    loss = build_loss("focal", gamma=0.5)
    assert isinstance(loss, FocalLoss) and loss.gamma == 0.5, (
        "build_loss('focal', gamma=0.5) should build FocalLoss(gamma=0.5)"
    )
