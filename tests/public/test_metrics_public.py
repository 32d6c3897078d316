"""Assignment 1, part 1: SegMetrics, the confusion-matrix mIoU (TODOs 1.1, 1.2 and 1.3 in dlvc/metrics.py).

Every expected number below is worked out by hand in the test's docstring. Run with
``pytest tests/public/test_metrics_public.py``.
"""

import math

import pytest
import torch

from dlvc.constants import IGNORE_INDEX
from dlvc.metrics import SegMetrics

# A 3x3 image of 3 classes, batch of one (B, H, W).
TARGET_3X3 = torch.tensor([[[0, 0, 1], [1, 2, 2], [2, 2, 0]]])
PREDICTION_3X3 = torch.tensor([[[0, 1, 1], [1, 2, 2], [2, 1, 0]]])
CONFUSION_3X3 = torch.tensor([[2, 1, 0], [0, 2, 0], [0, 1, 3]])
IOU_3X3 = [2 / 3, 1 / 2, 3 / 4]

def logits_from_labels(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Random float logits (B, C, H, W) whose argmax over C is ``labels`` (B, H, W)."""
    logits = torch.randn(labels.shape[0], num_classes, *labels.shape[1:], generator=torch.Generator().manual_seed(0))
    return logits.scatter(1, labels.unsqueeze(1), 10.0)


def test_new_metrics_start_with_a_zero_int64_confusion_matrix():
    metrics = SegMetrics(["a", "b", "c"])
    assert metrics.confusion_matrix.dtype == torch.int64, "the confusion matrix should hold int64 counts"
    assert metrics.confusion_matrix.shape == (3, 3), "the confusion matrix should be (C, C) for C classes"
    assert metrics.confusion_matrix.sum() == 0, "a new SegMetrics should not have counted any pixel yet"


def test_confusion_matrix_of_a_2x2_image_has_target_rows_and_prediction_columns():
    """Pixels (target, prediction): (0, 0), (0, 1), (1, 1), (1, 1).

    Row 0 (target 0): one predicted 0, one predicted 1 -> [1, 1]; row 1 -> [0, 2].
    IoU 0 = 1 / (2 + 1 - 1) = 1/2; IoU 1 = 2 / (2 + 3 - 2) = 2/3; mIoU = 7/12.
    """
    metrics = SegMetrics(["a", "b"])
    metrics.update(torch.tensor([[[0, 1], [1, 1]]]), torch.tensor([[[0, 0], [1, 1]]]))
    assert metrics.confusion_matrix.tolist() == [[1, 1], [0, 2]], "rows are the target class, columns the predicted class"
    assert metrics.mIoU() == pytest.approx(7 / 12), "mIoU should be the mean of IoU 1/2 and 2/3"


def test_confusion_matrix_and_miou_of_a_3x3_image():
    """Pixels (target, prediction) row by row: (0,0) (0,1) (1,1) / (1,1) (2,2) (2,2) / (2,2) (2,1) (0,0).

    Matrix [[2, 1, 0], [0, 2, 0], [0, 1, 3]]. Union = row sum + column sum - diagonal:
    class 0: 3 + 2 - 2 = 3, class 1: 2 + 4 - 2 = 4, class 2: 4 + 3 - 3 = 4.
    IoU = 2/3, 1/2, 3/4; mIoU = 23/36.
    """
    metrics = SegMetrics(["a", "b", "c"])
    metrics.update(PREDICTION_3X3, TARGET_3X3)
    assert torch.equal(metrics.confusion_matrix, CONFUSION_3X3), f"expected the confusion matrix {CONFUSION_3X3.tolist()}"
    assert metrics.iou().tolist() == pytest.approx(IOU_3X3), "per-class IoU should be intersection / union"
    assert metrics.mIoU() == pytest.approx(23 / 36), "mIoU should be the mean of the per-class IoU"
    assert isinstance(metrics.mIoU(), float), "mIoU() should return a Python float"


def test_pixel_accuracy_counts_correct_pixels():
    """7 of the 9 pixels of the 3x3 image are predicted correctly (the diagonal: 2 + 2 + 3)."""
    metrics = SegMetrics(["a", "b", "c"])
    metrics.update(PREDICTION_3X3, TARGET_3X3)
    assert metrics.pixel_accuracy() == pytest.approx(7 / 9), "pixel accuracy should be the diagonal over all labelled pixels"


def test_logits_and_labels_give_the_same_confusion_matrix():
    from_labels = SegMetrics(["a", "b", "c"])
    from_labels.update(PREDICTION_3X3, TARGET_3X3)
    from_logits = SegMetrics(["a", "b", "c"])
    from_logits.update(logits_from_labels(PREDICTION_3X3, 3), TARGET_3X3)
    assert torch.equal(from_logits.confusion_matrix, from_labels.confusion_matrix), (
        "logits (B, C, H, W) should be turned into labels by an argmax over the class dimension"
    )


def test_target_with_a_channel_dimension_is_accepted():
    metrics = SegMetrics(["a", "b", "c"])
    metrics.update(PREDICTION_3X3, TARGET_3X3.unsqueeze(1))
    assert torch.equal(metrics.confusion_matrix, CONFUSION_3X3), "a (B, 1, H, W) target should count like a (B, H, W) one"


def test_pixels_with_the_ignore_label_are_skipped():
    """The 3x3 image with an extra column of ignored pixels, predicted as classes 0, 1, 2: no count changes."""
    target = torch.cat([TARGET_3X3, torch.full((1, 3, 1), IGNORE_INDEX)], dim=2)
    prediction = torch.cat([PREDICTION_3X3, torch.tensor([[[0], [1], [2]]])], dim=2)
    metrics = SegMetrics(["a", "b", "c"])
    metrics.update(prediction, target)
    assert torch.equal(metrics.confusion_matrix, CONFUSION_3X3), "pixels whose target is 255 must not be counted at all"


def test_class_absent_from_target_and_prediction_is_left_out_of_the_mean():
    """The 3x3 image scored with 4 classes: class 3 appears nowhere, so mIoU stays 23/36, not 23/48."""
    metrics = SegMetrics(["a", "b", "c", "d"])
    metrics.update(PREDICTION_3X3, TARGET_3X3)
    assert math.isnan(metrics.iou()[3]), "a class absent from target and prediction has no IoU (NaN)"
    assert metrics.mIoU() == pytest.approx(23 / 36), "classes absent from both target and prediction must not lower the mIoU"


def test_class_only_predicted_counts_as_zero_iou():
    """Target [0, 0], prediction [0, 2] with 3 classes: IoU 0 = 1/2, class 1 absent, IoU 2 = 0/1; mIoU = 1/4."""
    metrics = SegMetrics(["a", "b", "c"])
    metrics.update(torch.tensor([[[0, 2]]]), torch.tensor([[[0, 0]]]))
    assert metrics.mIoU() == pytest.approx(0.25), "a class that is predicted but never in the target has IoU 0 and counts"


def test_miou_is_zero_without_data():
    metrics = SegMetrics(["a", "b", "c"])
    assert metrics.mIoU() == 0.0, "mIoU before any update should be 0.0, not NaN"
    metrics.update(PREDICTION_3X3, torch.full_like(TARGET_3X3, IGNORE_INDEX))
    assert metrics.mIoU() == 0.0, "mIoU after only ignored pixels should be 0.0, not NaN"


def test_reset_clears_the_confusion_matrix():
    metrics = SegMetrics(["a", "b", "c"])
    metrics.update(PREDICTION_3X3, TARGET_3X3)
    metrics.reset()
    assert metrics.confusion_matrix.tolist() == [[0] * 3] * 3, "reset() should zero the confusion matrix"
    assert metrics.confusion_matrix.dtype == torch.int64, "reset() should keep int64 counts"


def test_several_updates_accumulate():
    metrics = SegMetrics(["a", "b", "c"])
    metrics.update(PREDICTION_3X3, TARGET_3X3)
    metrics.update(PREDICTION_3X3, TARGET_3X3)
    assert torch.equal(metrics.confusion_matrix, 2 * CONFUSION_3X3), "each update should add its counts to the matrix"


def test_miou_of_two_batches_is_read_from_their_summed_matrix():
    """Batch 1: target [0, 0], prediction [0, 0]: IoU 0 = 1, mIoU 1.
    Batch 2: target [0, 1], prediction [1, 1]: IoU 0 = 0, IoU 1 = 1/2, mIoU 1/4.

    The mean of the batches' mIoUs is 5/8. The evaluation's matrix is [[2, 1], [0, 1]]:
    IoU 0 = 2 / (3 + 2 - 2) = 2/3, IoU 1 = 1 / (1 + 2 - 1) = 1/2, so mIoU = 7/12.
    """
    metrics = SegMetrics(["a", "b"])
    metrics.update(torch.tensor([[[0, 0]]]), torch.tensor([[[0, 0]]]))
    metrics.update(torch.tensor([[[1, 1]]]), torch.tensor([[[0, 1]]]))
    assert metrics.mIoU() == pytest.approx(7 / 12), (
        "mIoU() must be read from the confusion matrix summed over all batches (7/12 here), "
        "not averaged over the batches' mIoUs (5/8)"
    )
