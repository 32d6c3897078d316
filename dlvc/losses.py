"""Segmentation losses: cross-entropy and its variants, and region losses on soft masks.

Every loss is an ``nn.Module`` called as ``loss(logits, target)``:

- ``logits``: float ``(B, C, H, W)``, raw scores before softmax, C classes;
- ``target``: int64 ``(B, H, W)``, class ids in ``[0, C)`` and ``ignore_index``
  (``IGNORE_INDEX``, 255) where a pixel has no label;

and returns a scalar tensor. Ignored pixels contribute nothing, and a batch whose
pixels are all ignored gives a loss of 0 that still back-propagates (zero gradients,
never NaN).

The pixel-wise losses stay exact at any finite logits. A loss written as
``-log(softmax(x) + eps)`` does not: once a probability underflows to 0 (logits a
hundred or so apart in float32) it reads ``-log(eps)`` instead of the true value,
which can be thousands, and without the ``eps`` it is infinite.

- :class:`CrossEntropyLoss`: the same numbers as ``torch.nn.functional.cross_entropy``,
  class weights included. Students write its two steps in Assignment 1, part 2:
  :func:`target_log_probs` (TODO 1.4) and :func:`weighted_pixel_mean` (TODO 1.5).
- :class:`FocalLoss`: Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017,
  softmax form ``-(1 - p_t)^gamma log p_t`` (TODO 1.6).
- :class:`TopKCrossEntropyLoss`: online hard-pixel mining, the mean cross-entropy of
  the hardest fraction of the pixels (Wu et al., "Bridging Category-level and
  Instance-level Semantic Image Segmentation", 2016).
- :class:`DiceLoss` and :class:`SoftIoULoss`: one minus the soft Dice or Jaccard
  overlap of the softmax probabilities with the one-hot target, per class over the
  whole batch, averaged over the classes present in the target.
- :class:`LovaszSoftmaxLoss`: Berman et al., "The Lovasz-Softmax loss", CVPR 2018,
  a convex surrogate of the per-class IoU, checked against
  ``segmentation_models_pytorch.losses.LovaszLoss`` (the authors' code).

Shapes: B batch, C classes, H and W the label map's size, N the number of counted
(non-ignored) pixels.
"""

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .checks import describe
from .constants import IGNORE_INDEX

WEIGHT_SCHEMES = ("inverse", "median")


def class_weights_from_frequencies(pixel_counts: Sequence[int] | torch.Tensor, scheme: str = "inverse") -> torch.Tensor:
    """Class weights for :class:`CrossEntropyLoss` from the training set's pixel counts.

    Args:
        pixel_counts: ``(C,)`` number of labelled pixels of each class.
        scheme: ``"inverse"``: ``total / (C_present * count)``, so that a balanced
            data set gets weight 1 everywhere; ``"median"``: median frequency
            balancing (Eigen and Fergus, ICCV 2015), ``median(freq) / freq``, the
            median taken over the classes that occur.

    Returns:
        float32 ``(C,)`` weights; a class that never occurs gets weight 0.
    """
    if scheme not in WEIGHT_SCHEMES:
        raise ValueError(f"scheme: expected one of {WEIGHT_SCHEMES}, got {scheme!r}")
    counts = torch.as_tensor(pixel_counts, dtype=torch.float64)
    if counts.ndim != 1 or counts.numel() == 0:
        raise ValueError(f"pixel_counts: expected a non-empty sequence of counts, got shape {tuple(counts.shape)}")
    if (counts < 0).any() or not (counts > 0).any():
        raise ValueError(f"pixel_counts: expected non-negative counts, at least one positive, got {counts.tolist()}")
    present = counts > 0
    frequencies = counts / counts.sum()
    if scheme == "inverse":
        reference = 1.0 / present.sum()
    else:
        reference = frequencies[present].median()
    weights = torch.where(present, reference / frequencies.clamp_min(torch.finfo(torch.float64).tiny), 0.0)
    return weights.to(torch.float32)


def _check_inputs(logits: torch.Tensor, target: torch.Tensor, ignore_index: int, weight: torch.Tensor | None = None) -> None:
    """Raise TypeError/ValueError unless ``logits`` (B, C, H, W), ``target`` (B, H, W) and the class weights fit together."""
    if not isinstance(logits, torch.Tensor) or not logits.is_floating_point() or logits.ndim != 4:
        raise TypeError(f"logits: expected a float tensor of shape (B, C, H, W), got {describe(logits)}")
    if not isinstance(target, torch.Tensor) or target.dtype != torch.int64 or target.ndim != 3:
        raise TypeError(f"target: expected an int64 tensor of shape (B, H, W), got {describe(target)}")
    batch, classes, height, width = logits.shape
    if target.shape != (batch, height, width):
        raise ValueError(
            f"target: expected shape (B, H, W) = {(batch, height, width)} to match logits {tuple(logits.shape)}, "
            f"got {tuple(target.shape)}"
        )
    wrong = (target != ignore_index) & ((target < 0) | (target >= classes))
    if wrong.any():
        raise ValueError(
            f"target: expected class ids in [0, {classes}) or the ignore label {ignore_index}, "
            f"got {sorted(target[wrong].unique().tolist())}"
        )
    if weight is not None and weight.numel() != classes:
        raise ValueError(f"weight: expected one weight per class ({classes}), got {weight.numel()}")


def _class_weight(weight: Sequence[float] | torch.Tensor | None) -> torch.Tensor | None:
    """Check a per-class weight argument and turn it into a float tensor (C,)."""
    if weight is None:
        return None
    weight = torch.as_tensor(weight)
    if not weight.is_floating_point():
        weight = weight.to(torch.get_default_dtype())
    if weight.ndim != 1 or (weight < 0).any():
        raise ValueError(f"weight: expected a 1-D sequence of non-negative class weights, got {weight.tolist()}")
    return weight


def _zero_with_gradient(logits: torch.Tensor) -> torch.Tensor:
    """A loss of exactly 0 that still back-propagates into ``logits`` (with zero gradients)."""
    return logits.sum() * 0.0 + 0.0


def target_log_probs(logits: torch.Tensor, target: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """``log p_t``: the log of the softmax probability of each pixel's target class.

    Args:
        logits: float (B, C, H, W), raw scores.
        target: int64 (B, H, W), class ids in [0, C) or ``ignore_index``.
        ignore_index: the target label of unlabelled pixels.

    Returns:
        float (B, H, W): ``log p_t`` at the labelled pixels, 0 at the ignored ones;
        finite wherever the logits are (also when they are thousands apart).
    """
    # TODO 1.4 (Assignment 1, part 2): the log-probability of each pixel's target class.
    # In: `logits` (B, C, H, W), any finite values; `target` (B, H, W), where
    # `ignore_index` marks pixels without a label.
    # Out: `log_p_target` (B, H, W), the log-softmax over the classes taken at the
    # target class; exactly 0 at ignored pixels; finite (no NaN, no inf) even at
    # logits of +-1e4, with a gradient that is finite too.
    # Think about what log(softmax(x)) loses when one probability underflows to 0,
    # and what subtracting the largest logit first buys (the module docstring).
    # About 4 lines; hint 1.4 in the assignment's README.
    raise NotImplementedError(
        "TODO 1.4 (Assignment 1, part 2) in dlvc/losses.py, target_log_probs: the log-probability of each pixel's target class."
    )


def weighted_pixel_mean(
    pixel_loss: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    ignore_index: int = IGNORE_INDEX,
) -> torch.Tensor:
    """The mean of a per-pixel loss over the labelled pixels, each weighted by its target class's weight.

    Args:
        pixel_loss: float (B, H, W), the loss of every pixel (any finite value at ignored pixels).
        target: int64 (B, H, W), class ids in [0, C) or ``ignore_index``.
        weight: float (C,) class weights, or None for weight 1 everywhere.
        ignore_index: the target label of unlabelled pixels.

    Returns:
        A scalar: ``sum_i w[t_i] * loss_i / sum_i w[t_i]`` over the labelled pixels i,
        as ``torch.nn.functional.cross_entropy`` averages; 0 (still back-propagating,
        with zero gradients) when the weights of the labelled pixels sum to 0.
    """
    # TODO 1.5 (Assignment 1, part 2): the class-weighted mean over the labelled pixels.
    # In: `pixel_loss` (B, H, W); `target` (B, H, W) with `ignore_index` where
    # unlabelled; `weight` (C,) or None.
    # Out: a scalar tensor, the weighted mean of the docstring. Ignored pixels count
    # nowhere: not in the sum and not in what it is divided by, whatever finite value
    # `pixel_loss` holds there. A batch without labelled pixels gives 0, never NaN.
    # About 6 lines; hint 1.5 in the assignment's README.
    raise NotImplementedError(
        'TODO 1.5 (Assignment 1, part 2) in dlvc/losses.py, weighted_pixel_mean: the class-weighted mean over the labelled pixels.'
    )


class CrossEntropyLoss(nn.Module):
    """Pixel-wise cross-entropy, ``-log p_t``, averaged over the labelled pixels.

    Args:
        weight: optional ``(C,)`` class weights; the mean is then weighted, divided
            by the sum of the labelled pixels' weights (as in PyTorch).
        ignore_index: target label of pixels that count for nothing.
    """

    def __init__(self, weight: Sequence[float] | torch.Tensor | None = None, ignore_index: int = IGNORE_INDEX):
        super().__init__()
        self.register_buffer("weight", _class_weight(weight))
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) logits, (B, H, W) target -> scalar loss."""
        _check_inputs(logits, target, self.ignore_index, self.weight)
        pixel_loss = -target_log_probs(logits, target, self.ignore_index)
        return weighted_pixel_mean(pixel_loss, target, self.weight, self.ignore_index)


class FocalLoss(nn.Module):
    """Softmax focal loss, ``-(1 - p_t)^gamma log p_t``, averaged like :class:`CrossEntropyLoss`.

    The factor ``(1 - p_t)^gamma`` shrinks the loss of pixels that are already
    classified well, so that training concentrates on the hard ones; ``gamma=0``
    gives the cross-entropy.

    Args:
        gamma: focusing parameter, at least 0 (2 in the paper).
        weight: optional ``(C,)`` class weights (the paper's alpha, one per class).
        ignore_index: target label of pixels that count for nothing.
    """

    def __init__(
        self,
        gamma: float = 2.0,
        weight: Sequence[float] | torch.Tensor | None = None,
        ignore_index: int = IGNORE_INDEX,
    ):
        super().__init__()
        if gamma < 0:
            raise ValueError(f"gamma: expected a value of at least 0, got {gamma}")
        self.gamma = gamma
        self.register_buffer("weight", _class_weight(weight))
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) logits, (B, H, W) target -> scalar loss."""
        _check_inputs(logits, target, self.ignore_index, self.weight)
        # TODO 1.6 (Assignment 1, part 2): the focal loss.
        # In: `logits` (B, C, H, W) and `target` (B, H, W) as in CrossEntropyLoss;
        # `self.gamma`, `self.weight`. Build on TODOs 1.4 and 1.5.
        # Out: the scalar loss of the class docstring: each pixel's cross-entropy
        # scaled by (1 - p_t) ** gamma, then averaged like the cross-entropy (class
        # weights, ignored pixels). gamma = 0 must give the cross-entropy exactly.
        # Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017, section 3.2.
        # About 3 lines; hint 1.6 in the assignment's README.
        raise NotImplementedError(
            'TODO 1.6 (Assignment 1, part 2) in dlvc/losses.py, FocalLoss.forward: the focal loss.'
        )


class TopKCrossEntropyLoss(nn.Module):
    """Online hard-pixel mining: the mean cross-entropy of the hardest ``k`` of the pixels.

    Of the N counted pixels, the ``ceil(k * N)`` with the largest cross-entropy are
    averaged; the others contribute nothing to this step. ``k=1`` gives the
    cross-entropy.

    Args:
        k: fraction of the counted pixels to keep, in (0, 1].
        ignore_index: target label of pixels that count for nothing.
    """

    def __init__(self, k: float = 0.25, ignore_index: int = IGNORE_INDEX):
        super().__init__()
        if not 0.0 < k <= 1.0:
            raise ValueError(f"k: expected a fraction in (0, 1], got {k}")
        self.k = k
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) logits, (B, H, W) target -> scalar loss."""
        _check_inputs(logits, target, self.ignore_index)
        valid = target != self.ignore_index
        pixel_losses = -target_log_probs(logits, target, self.ignore_index)[valid]  # (B, H, W) -> (N,)
        if pixel_losses.numel() == 0:
            return _zero_with_gradient(logits)
        keep = math.ceil(self.k * pixel_losses.numel())
        return pixel_losses.topk(keep).values.mean()


def _soft_overlaps(logits: torch.Tensor, target: torch.Tensor, ignore_index: int):
    """Per-class sums of the soft prediction and the one-hot target over the batch.

    Returns:
        ``(intersection, predicted, labelled)``, each (C,): the sums over the
        counted pixels of ``p_c * [t = c]``, of ``p_c`` and of ``[t = c]``.
    """
    classes = logits.shape[1]
    valid = (target != ignore_index).unsqueeze(1)  # (B, H, W) -> (B, 1, H, W)
    probs = F.softmax(logits, dim=1) * valid
    one_hot = F.one_hot(torch.where(valid.squeeze(1), target, 0), classes)  # (B, H, W) -> (B, H, W, C)
    one_hot = one_hot.permute(0, 3, 1, 2).to(probs.dtype) * valid  # (B, H, W, C) -> (B, C, H, W)
    sum_dims = (0, 2, 3)
    return (probs * one_hot).sum(sum_dims), probs.sum(sum_dims), one_hot.sum(sum_dims)


def _mean_over_present(per_class_loss: torch.Tensor, labelled: torch.Tensor) -> torch.Tensor:
    """Mean of a (C,) loss over the classes with labelled pixels; 0 when there are none."""
    present = labelled > 0
    return (per_class_loss * present).sum() / present.sum().clamp_min(1)


class _SoftOverlapLoss(nn.Module):
    """``1 - overlap`` per class on soft masks, averaged over the classes present in the target.

    Subclasses define ``overlap(I, P, L) -> (C,)`` from the per-class sums of
    :func:`_soft_overlaps`.
    """

    def __init__(self, smooth: float = 1.0, ignore_index: int = IGNORE_INDEX):
        super().__init__()
        if smooth < 0:
            raise ValueError(f"smooth: expected a value of at least 0, got {smooth}")
        self.smooth = smooth
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) logits, (B, H, W) target -> scalar loss."""
        _check_inputs(logits, target, self.ignore_index)
        intersection, predicted, labelled = _soft_overlaps(logits, target, self.ignore_index)
        return _mean_over_present(1 - self.overlap(intersection, predicted, labelled), labelled)


class DiceLoss(_SoftOverlapLoss):
    """Multiclass soft Dice loss: ``1 - (2 I + s) / (P + L + s)``, averaged over present classes.

    For each class c, over every counted pixel of the batch: ``I`` sums
    ``p_c * [t = c]``, ``P`` sums the softmax probability ``p_c``, ``L`` counts the
    pixels labelled c. Classes that no counted pixel is labelled with are left out
    of the mean.

    Equals ``segmentation_models_pytorch.losses.DiceLoss(mode="multiclass")`` with
    its ``smooth`` set to half of ours when every class occurs in the target (smp
    writes ``(I + s) / ((P + L) / 2 + s)`` and divides by all C classes).

    Args:
        smooth: ``s``, added to numerator and denominator; keeps the loss defined
            and smooths it for small classes.
        ignore_index: target label of pixels that count for nothing.
    """

    def overlap(self, intersection: torch.Tensor, predicted: torch.Tensor, labelled: torch.Tensor) -> torch.Tensor:
        """Soft Dice per class, (C,)."""
        return (2 * intersection + self.smooth) / (predicted + labelled + self.smooth).clamp_min(1e-7)


class SoftIoULoss(_SoftOverlapLoss):
    """Multiclass soft Jaccard loss: ``1 - (I + s) / (P + L - I + s)``, averaged over present classes.

    ``I``, ``P`` and ``L`` as in :class:`DiceLoss`. Equals
    ``segmentation_models_pytorch.losses.JaccardLoss(mode="multiclass")`` with the
    same ``smooth`` when every class occurs in the target.

    Args:
        smooth: ``s``, added to numerator and denominator.
        ignore_index: target label of pixels that count for nothing.
    """

    def overlap(self, intersection: torch.Tensor, predicted: torch.Tensor, labelled: torch.Tensor) -> torch.Tensor:
        """Soft IoU per class, (C,)."""
        union = predicted + labelled - intersection
        return (intersection + self.smooth) / (union + self.smooth).clamp_min(1e-7)


def _lovasz_gradient(foreground_sorted: torch.Tensor) -> torch.Tensor:
    """Gradient of the Lovasz extension of the Jaccard loss (Berman et al., Algorithm 1).

    Args:
        foreground_sorted: (N,) 1 where the pixel belongs to the class, 0 elsewhere,
            in the order of decreasing error.

    Returns:
        (N,) weights: the growth of ``1 - IoU`` as each pixel is counted wrong in turn.
    """
    labelled = foreground_sorted.sum()
    intersection = labelled - foreground_sorted.cumsum(0)
    union = labelled + (1 - foreground_sorted).cumsum(0)
    jaccard_loss = 1 - intersection / union
    return torch.diff(jaccard_loss, prepend=jaccard_loss.new_zeros(1))


class LovaszSoftmaxLoss(nn.Module):
    """Lovasz-Softmax loss over the whole batch, averaged over the classes present.

    For each class c that occurs among the counted pixels, the errors
    ``|[t = c] - p_c|`` are sorted in decreasing order and weighted by the
    gradient of the Lovasz extension of ``1 - IoU_c``; the result is a tight convex
    surrogate of the class's Jaccard loss.

    Args:
        ignore_index: target label of pixels that count for nothing.
    """

    def __init__(self, ignore_index: int = IGNORE_INDEX):
        super().__init__()
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) logits, (B, H, W) target -> scalar loss."""
        _check_inputs(logits, target, self.ignore_index)
        classes = logits.shape[1]
        probs = F.softmax(logits, dim=1).permute(0, 2, 3, 1).reshape(-1, classes)  # (B, C, H, W) -> (B*H*W, C)
        labels = target.reshape(-1)  # (B, H, W) -> (B*H*W,)
        valid = labels != self.ignore_index
        probs, labels = probs[valid], labels[valid]  # -> (N, C), (N,)
        if labels.numel() == 0:
            return _zero_with_gradient(logits)
        class_losses = []
        for c in labels.unique().tolist():
            foreground = (labels == c).to(probs.dtype)
            errors = (foreground - probs[:, c]).abs()
            errors_sorted, order = errors.sort(descending=True)
            class_losses.append(torch.dot(errors_sorted, _lovasz_gradient(foreground[order])))
        return torch.stack(class_losses).mean()


LOSSES = {
    "ce": CrossEntropyLoss,
    "focal": FocalLoss,
    "topk": TopKCrossEntropyLoss,
    "dice": DiceLoss,
    "iou": SoftIoULoss,
    "lovasz": LovaszSoftmaxLoss,
}
"""Every loss by the name that scripts and configurations use."""


def build_loss(name: str, **kwargs) -> nn.Module:
    """The loss called ``name`` in :data:`LOSSES`, built with ``kwargs``.

    Example: ``build_loss("ce", weight=class_weights_from_frequencies(counts))``.
    """
    if name not in LOSSES:
        raise ValueError(f"name: expected one of {sorted(LOSSES)}, got {name!r}")
    return LOSSES[name](**kwargs)
