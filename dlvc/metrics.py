"""Segmentation metrics: a confusion-matrix mIoU for whole evaluations, and per-image IoU and recall.

:class:`SegMetrics` accumulates one confusion matrix over an evaluation (every batch
of a validation set, on every process of a distributed run) and reads the
intersection over union (IoU) of each class from it: the pixels of class c that are
predicted as c, divided by the pixels that are class c in the target or in the
prediction. The mean IoU (mIoU) is the standard score of Cityscapes and PASCAL VOC.
It was checked against torchmetrics' ``MulticlassJaccardIndex(average="macro")``.

:func:`per_image_iou` and :func:`per_image_recall` score each image on its own and
then average over the batch, as in the PSPNet assignment; students write their two
steps there (Assignment 3, part 5: :func:`per_image_counts` and
:func:`average_over_classes`).

Rules shared by everything here:

- Pixels whose target is the ignore label (``IGNORE_INDEX``, 255) count for nothing:
  neither what the target says nor what the model predicts there.
- A class absent from both target and prediction has no IoU (NaN) and is left out of
  every mean; a class that is predicted but absent from the target has IoU 0.

Shapes: B batch, C classes, H and W the height and width of a label map.
"""

import math
from collections.abc import Sequence

import torch
import torch.distributed as dist

from .checks import describe
from .constants import IGNORE_INDEX

AVERAGES = ("micro", "macro")
REDUCTIONS = ("mean", "sum", "none")


class SegMetrics:
    """Mean intersection over union from a confusion matrix accumulated over many batches.

    Typical use: ``reset()`` before an evaluation, ``update(prediction, target)`` for each
    batch, ``all_reduce()`` in a distributed run, then ``mIoU()`` or ``str(metrics)``.

    Args:
        classes: one description per class, in label order; its length is C. Items with a
            ``.name`` (such as the datasets' ``SegClass``) are shown by name in ``str()``.
        ignore_index: the target label of pixels to skip; at least C, so that it is no class label.

    Attributes:
        confusion_matrix: int64 (C, C); entry [t, p] counts the pixels whose target is
            class t and whose prediction is class p (rows: target, columns: prediction).
    """

    def __init__(self, classes: Sequence, ignore_index: int = IGNORE_INDEX):
        if isinstance(classes, (str, bytes)) or not isinstance(classes, Sequence):
            raise TypeError(f"classes: expected a sequence of class descriptions, got {type(classes).__name__}")
        if len(classes) == 0:
            raise ValueError("classes: expected at least one class, got an empty sequence")
        _check_ignore_index(ignore_index, len(classes))
        self.classes = list(classes)
        self.num_classes = len(self.classes)
        self.ignore_index = ignore_index
        self.reset()

    def reset(self) -> None:
        """Forget everything seen so far: a zero int64 (C, C) confusion matrix."""
        # TODO 1.1 (Assignment 1, part 1): start a new evaluation.
        # Out: `self.confusion_matrix`, an int64 (C, C) tensor of zeros, C being
        # `self.num_classes`; whatever an earlier evaluation counted is gone.
        # About 1 line.
        raise NotImplementedError(
            'TODO 1.1 (Assignment 1, part 1) in dlvc/metrics.py, SegMetrics.reset: start a new evaluation.'
        )

    @torch.no_grad()
    def update(self, prediction: torch.Tensor, target: torch.Tensor) -> None:
        """Add one batch to the confusion matrix.

        Args:
            prediction: float logits (B, C, H, W), reduced to labels by an argmax over C,
                or integer labels (B, H, W) in [0, C).
            target: integer labels (B, H, W) or (B, 1, H, W) in [0, C), or the ignore
                label for pixels to skip.

        The matrix moves to the inputs' device; no gradients are recorded.
        """
        _check_inputs(prediction, target, self.num_classes, self.ignore_index)
        self.confusion_matrix = self.confusion_matrix.to(target.device)
        num_classes = self.num_classes
        # TODO 1.2 (Assignment 1, part 1): add the batch to the confusion matrix.
        # In: `prediction`, float logits (B, C, H, W) or integer labels (B, H, W);
        # `target`, integer labels (B, H, W) or (B, 1, H, W), `self.ignore_index`
        # where a pixel has no label. Both are checked already.
        # Out: `self.confusion_matrix[t, p]` has grown by the number of pixels whose
        # target is t and whose prediction is p. Pixels labelled `self.ignore_index`
        # count nowhere, whatever is predicted there.
        # The whole batch at once, without a Python loop over pixels or classes:
        # think of each (t, p) pair as one number, the index of a cell of the matrix.
        # About 6 lines; hint 1.2 in the assignment's README.
        raise NotImplementedError(
            'TODO 1.2 (Assignment 1, part 1) in dlvc/metrics.py, SegMetrics.update: add the batch to the confusion matrix.'
        )

    def all_reduce(self) -> None:
        """Sum the confusion matrix over all processes of a distributed run, in place.

        Does nothing unless ``torch.distributed`` is available and initialised. Every
        process must call it (it waits for the others); afterwards each holds the total.
        The matrix must sit on a device that the process group's backend handles (the CPU
        for gloo, the GPU for nccl).
        """
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(self.confusion_matrix, op=dist.ReduceOp.SUM)

    def iou(self) -> torch.Tensor:
        """Per-class IoU, float64 (C,): NaN for a class absent from both target and prediction."""
        matrix = self.confusion_matrix.to(torch.float64)
        intersection = matrix.diagonal()
        union = matrix.sum(dim=0) + matrix.sum(dim=1) - intersection
        return intersection / union

    def mIoU(self) -> float:
        """Mean IoU over the classes present in the target or the prediction of the evaluation.

        Classes absent from both (NaN in :meth:`iou`) are left out of the mean; 0.0
        before any labelled pixel was seen.
        """
        # TODO 1.3 (Assignment 1, part 1): the mean IoU.
        # In: the per-class IoU of the whole evaluation, `self.iou()` (C,), NaN for
        # the classes absent from both target and prediction.
        # Out: a Python float, the mean over the classes that are not NaN; 0.0 when
        # every class is NaN (nothing labelled was seen yet).
        # About 4 lines.
        raise NotImplementedError(
            'TODO 1.3 (Assignment 1, part 1) in dlvc/metrics.py, SegMetrics.mIoU: the mean IoU.'
        )

    def pixel_accuracy(self) -> float:
        """Share of labelled pixels predicted correctly; 0.0 before any labelled pixel was seen."""
        total = self.confusion_matrix.sum().item()
        return self.confusion_matrix.diagonal().sum().item() / total if total else 0.0

    def __str__(self) -> str:
        """mIoU and pixel accuracy on one line, then one line per class: its name and IoU."""
        pixels = self.confusion_matrix.sum().item()
        lines = [f"mIoU {100 * self.mIoU():.2f} %, pixel accuracy {100 * self.pixel_accuracy():.2f} % ({pixels} labelled pixels)"]
        names = [str(getattr(item, "name", item)) for item in self.classes]
        width = max(len(name) for name in names)
        for name, value in zip(names, self.iou().tolist()):
            shown = f"{'absent':>8}" if math.isnan(value) else f"{100 * value:6.2f} %"
            lines.append(f"  {name:<{width}}  {shown}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"SegMetrics(num_classes={self.num_classes}, ignore_index={self.ignore_index}, mIoU={self.mIoU():.4f})"


def per_image_iou(
    prediction: torch.Tensor,
    target: torch.Tensor,
    num_classes: int,
    average: str = "macro",
    reduce: str = "mean",
    ignore_index: int = IGNORE_INDEX,
) -> float | torch.Tensor:
    """IoU of each image on its own, averaged over its classes, then reduced over the batch.

    Per image, "micro" pools the classes: the sum of their intersections divided by the
    sum of their unions. "macro" is the mean IoU of the classes present in that image's
    target (a class that is only predicted lowers the IoU of the classes it overlaps but
    is not averaged itself). Ignored pixels count for nothing. An image without labelled
    pixels scores NaN.

    Args:
        prediction: float logits (B, C, H, W) or integer labels (B, H, W).
        target: integer labels (B, H, W) or (B, 1, H, W); ``ignore_index`` where unlabelled.
        num_classes: C.
        average: "micro" or "macro".
        reduce: "mean" or "sum" over the images with labelled pixels (a float; 0.0 when no
            image has any), or "none" for the (B,) float64 tensor of per-image scores.
        ignore_index: the target label of pixels to skip, at least C.
    """
    _check_per_image_arguments(prediction, target, num_classes, average, reduce, ignore_index)
    intersection, predicted, labelled = per_image_counts(prediction, target, num_classes, ignore_index)
    union = predicted + labelled - intersection
    return _reduce_over_images(average_over_classes(intersection, union, labelled > 0, average), reduce)


def per_image_recall(
    prediction: torch.Tensor,
    target: torch.Tensor,
    num_classes: int,
    average: str = "macro",
    reduce: str = "mean",
    ignore_index: int = IGNORE_INDEX,
) -> float | torch.Tensor:
    """Recall of each image on its own, averaged over its classes, then reduced over the batch.

    Per image, "micro" is the share of labelled pixels predicted correctly; "macro" is the
    mean recall of the classes present in that image's target (the share of each class's
    pixels predicted as that class). Arguments, ignored pixels and empty images as in
    :func:`per_image_iou`.
    """
    _check_per_image_arguments(prediction, target, num_classes, average, reduce, ignore_index)
    intersection, _, labelled = per_image_counts(prediction, target, num_classes, ignore_index)
    return _reduce_over_images(average_over_classes(intersection, labelled, labelled > 0, average), reduce)


def per_image_counts(
    prediction: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int = IGNORE_INDEX
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Count, per image and class, over the labelled pixels of each image.

    Args:
        prediction: float logits (B, C, H, W) or integer labels (B, H, W), checked.
        target: integer labels (B, H, W) or (B, 1, H, W), ``ignore_index`` where unlabelled.
        num_classes: C.
        ignore_index: the target label of pixels to skip.

    Returns:
        Three int64 (B, C) tensors: ``intersection[b, c]``, the labelled pixels of image b
        that are class c in both target and prediction; ``predicted[b, c]``, the labelled
        pixels predicted as c; ``labelled[b, c]``, the pixels whose target is c.
    """
    # TODO 3.5 (Assignment 3, part 5): count per image and class.
    # In: `prediction` logits (B, C, H, W) or labels (B, H, W); `target` labels
    # (B, H, W) or (B, 1, H, W), `ignore_index` where unlabelled.
    # Out: `intersection, predicted, labelled`, int64 (B, C) each, as the docstring
    # says. Counts are per image (never pooled over the batch), and a pixel labelled
    # `ignore_index` counts nowhere: not even where it is predicted as a class.
    # About 10 lines; hint 3.5 in the assignment's README.
    raise NotImplementedError(
        'TODO 3.5 (Assignment 3, part 5) in dlvc/metrics.py, per_image_counts: count per image and class.'
    )


def average_over_classes(numerator: torch.Tensor, denominator: torch.Tensor, present: torch.Tensor, average: str) -> torch.Tensor:
    """Each image's micro or macro average of ``numerator / denominator`` over its classes.

    Args:
        numerator, denominator: (B, C) counts per image and class (for the IoU, the
            intersection and the union; for the recall, the intersection and the
            labelled pixels).
        present: bool (B, C), the classes that occur in each image's target.
        average: "micro": per image, the sum of the numerators over the sum of the
            denominators; "macro": per image, the mean of the ratios of the present
            classes.

    Returns:
        float64 (B,): one score per image; NaN for an image without labelled pixels.
    """
    # TODO 3.6 (Assignment 3, part 5): average each image's classes, micro or macro.
    # In: `numerator`, `denominator` (B, C) int64; `present` (B, C) bool; `average`.
    # Out: float64 (B,) scores as the docstring says. Macro leaves out every class
    # that is absent from the image's target (also one that is only predicted); an
    # image without labelled pixels scores NaN under both averages, so that the
    # reduction over the batch can skip it. Worked example: the Assignment 3 README.
    # About 7 lines; hint 3.6 in the assignment's README.
    raise NotImplementedError(
        "TODO 3.6 (Assignment 3, part 5) in dlvc/metrics.py, average_over_classes: average each image's classes, micro or macro."
    )


def _check_per_image_arguments(prediction, target, num_classes, average, reduce, ignore_index) -> None:
    """Raise TypeError or ValueError, naming the argument, unless the per-image metrics can take these."""
    if not isinstance(num_classes, int) or isinstance(num_classes, bool):
        raise TypeError(f"num_classes: expected an int, got {type(num_classes).__name__}")
    if num_classes < 1:
        raise ValueError(f"num_classes: expected at least 1, got {num_classes}")
    _check_ignore_index(ignore_index, num_classes)
    if average not in AVERAGES:
        raise ValueError(f"average: expected one of {AVERAGES}, got {average!r}")
    if reduce not in REDUCTIONS:
        raise ValueError(f"reduce: expected one of {REDUCTIONS}, got {reduce!r}")
    _check_inputs(prediction, target, num_classes, ignore_index)


def _reduce_over_images(scores: torch.Tensor, reduce: str) -> float | torch.Tensor:
    """(B,) per-image scores as they are ("none"), or their mean or sum over the images that are not NaN."""
    if reduce == "none":
        return scores
    scored = scores[~torch.isnan(scores)]
    if scored.numel() == 0:
        return 0.0
    return (scored.mean() if reduce == "mean" else scored.sum()).item()


def _check_inputs(prediction, target, num_classes: int, ignore_index: int) -> None:
    """Raise TypeError or ValueError, naming the argument, unless the inputs fit the metrics.

    Accepted: ``prediction`` float logits (B, C, H, W) or integer labels (B, H, W) in
    [0, C); ``target`` integer labels (B, H, W) or (B, 1, H, W) in [0, C) or ``ignore_index``.
    """
    if not isinstance(prediction, torch.Tensor) or prediction.dtype == torch.bool or prediction.is_complex():
        raise TypeError(f"prediction: expected a float tensor of logits or an integer tensor of labels, got {describe(prediction)}")
    if not isinstance(target, torch.Tensor) or target.dtype == torch.bool or target.is_floating_point() or target.is_complex():
        raise TypeError(f"target: expected an integer tensor of labels, got {describe(target)}")
    if target.device != prediction.device:
        raise ValueError(f"target: expected a tensor on the prediction's device {prediction.device}, got one on {target.device}")
    if prediction.is_floating_point():
        if prediction.ndim != 4 or prediction.shape[1] != num_classes:
            raise ValueError(f"prediction: expected logits of shape (B, {num_classes}, H, W), got shape {tuple(prediction.shape)}")
        labels_shape = prediction.shape[:1] + prediction.shape[2:]
    else:
        if prediction.ndim != 3:
            raise ValueError(f"prediction: expected labels of shape (B, H, W), got shape {tuple(prediction.shape)}")
        labels_shape = prediction.shape
        _check_label_range(prediction, "prediction", num_classes, ignore_index=None)
    if target.ndim == 4 and target.shape[1] == 1:
        target = target.squeeze(1)  # (B, 1, H, W) -> (B, H, W)
    if target.shape != labels_shape:
        expected = "(B, H, W) = " + str(tuple(labels_shape))
        raise ValueError(f"target: expected shape {expected} or (B, 1, H, W) to match prediction, got shape {tuple(target.shape)}")
    _check_label_range(target, "target", num_classes, ignore_index)


def _check_ignore_index(ignore_index, num_classes: int) -> None:
    """Raise TypeError or ValueError unless ``ignore_index`` is an int of at least C (no class label)."""
    if not isinstance(ignore_index, int) or isinstance(ignore_index, bool):
        raise TypeError(f"ignore_index: expected an int, got {type(ignore_index).__name__}")
    if ignore_index < num_classes:
        raise ValueError(f"ignore_index: expected a label past the classes, at least {num_classes}, got {ignore_index}")


def _check_label_range(labels: torch.Tensor, name: str, num_classes: int, ignore_index: int | None) -> None:
    """Raise ValueError naming ``name`` unless every label is in [0, C) or equals ``ignore_index`` (at least C).

    Fast on large batches: one min/max pass, and one more when ignored pixels occur.
    """
    if labels.numel() == 0:
        return
    low, high = (value.item() for value in torch.aminmax(labels))
    if low >= 0 and high < num_classes:
        return
    if ignore_index is not None and low >= 0 and high <= ignore_index:
        if not _any_label_between(labels, num_classes, ignore_index):
            return
    outside = (labels < 0) | (labels >= num_classes)
    allowed = f"[0, {num_classes})"
    if ignore_index is not None:
        outside &= labels != ignore_index
        allowed += f" or {ignore_index} (ignored)"
    raise ValueError(f"{name}: expected labels in {allowed}, got values {labels[outside].unique()[:10].tolist()}")


def _any_label_between(labels: torch.Tensor, low: int, high: int) -> bool:
    """Whether a label lies in [low, high), for labels known to lie in [0, high]."""
    if high <= torch.iinfo(torch.uint8).max:
        # In one byte, subtracting `low` wraps [0, low) round to [256 - low, 256) and
        # takes `high` to `high - low`: only labels in [low, high) end up below that.
        return (labels.to(torch.uint8) - low).min().item() < high - low
    return bool(((labels >= low) & (labels < high)).any())
