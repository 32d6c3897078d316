"""Assignment 3, part 5: the per-image IoU and recall (TODOs 3.5 and 3.6 in dlvc/metrics.py).

Every expected number is worked out by hand in the test's docstring; the worked
example is the one of the Assignment 3 README. Run with
``pytest tests/public/test_per_image_public.py``.
"""

import math

import pytest
import torch

from dlvc.metrics import average_over_classes, per_image_counts, per_image_iou, per_image_recall

# The worked example of the per-image metrics: 2 images of 3 classes.
EXAMPLE_PREDICTION = torch.tensor(
    [
        [[0, 0, 0, 0], [0, 0, 1, 0], [0, 1, 1, 0], [0, 0, 0, 0]],
        [[0, 0, 0, 0], [0, 2, 2, 0], [0, 2, 0, 0], [0, 0, 0, 0]],
    ]
)
EXAMPLE_TARGET = torch.tensor(
    [
        [[0, 0, 0, 0], [0, 1, 255, 0], [0, 1, 255, 0], [0, 0, 0, 0]],
        [[0, 0, 0, 0], [0, 255, 2, 0], [0, 255, 2, 0], [0, 0, 0, 0]],
    ]
)


def test_per_image_counts_of_the_worked_example():
    """Image 1: class 0 has 12 target pixels, 13 labelled pixels predicted 0, 12 of them right;
    class 1 has 2 target pixels, 1 labelled pixel predicted 1, right; class 2 none.
    The two ignored pixels are predicted 1 and must count nowhere. Image 2 likewise with class 2.
    """
    intersection, predicted, labelled = per_image_counts(EXAMPLE_PREDICTION, EXAMPLE_TARGET, num_classes=3)
    expected = {
        "intersection": [[12, 1, 0], [12, 0, 1]],
        "predicted": [[13, 1, 0], [13, 0, 1]],
        "labelled": [[12, 2, 0], [12, 0, 2]],
    }
    for name, got in (("intersection", intersection), ("predicted", predicted), ("labelled", labelled)):
        assert got.tolist() == expected[name], (
            f"{name} should be {expected[name]} (one row per image, one column per class), got {got.tolist()}; "
            "pixels labelled 255 count nowhere, also not as predicted"
        )


def test_average_over_classes_micro_and_macro():
    """One image, classes 0 and 1 present, class 2 only predicted: ratios 12/13 and 1/2.

    micro = (12 + 1 + 0) / (13 + 2 + 1) = 13/16; macro = mean(12/13, 1/2), class 2 left out.
    """
    numerator = torch.tensor([[12, 1, 0]])
    denominator = torch.tensor([[13, 2, 1]])
    present = torch.tensor([[True, True, False]])
    micro = average_over_classes(numerator, denominator, present, "micro")
    macro = average_over_classes(numerator, denominator, present, "macro")
    assert micro.dtype == torch.float64 and micro.shape == (1,), f"expected a float64 (B,) tensor, got {micro.dtype} {tuple(micro.shape)}"
    assert micro.item() == pytest.approx(13 / 16), f"micro pools the classes: 13/16, got {micro.item():.4f}"
    assert macro.item() == pytest.approx((12 / 13 + 1 / 2) / 2), (
        f"macro averages the classes present in the target only: mean(12/13, 1/2) = 0.7115, got {macro.item():.4f}"
    )


def test_an_image_without_labelled_pixels_scores_nan_under_both_averages():
    numerator, denominator = torch.zeros(1, 3, dtype=torch.int64), torch.zeros(1, 3, dtype=torch.int64)
    present = torch.zeros(1, 3, dtype=torch.bool)
    for average in ("micro", "macro"):
        score = average_over_classes(numerator, denominator, present, average).item()
        assert math.isnan(score), f"{average}: an image without labelled pixels scores NaN, so that the mean skips it; got {score}"


def test_per_image_metrics_reproduce_the_worked_example():
    """Two 4x4 images, 3 classes; the ignored pixels (2 per image) count for nothing.

    Image 1: 12 border pixels are class 0, all predicted 0. Class 1 has 2 pixels, one
    predicted 1 and one predicted 0. The two ignored pixels (predicted 1) are dropped.
      recall micro = 13 correct / 14 labelled = 0.9286
      recall macro = mean(class 0: 12/12, class 1: 1/2) = 0.75
      IoU class 0 = 12 / (12 target + 13 predicted - 12) = 12/13; class 1 = 1 / (2 + 1 - 1) = 1/2
      IoU micro = (12 + 1) / (13 + 2) = 0.8667; IoU macro = mean(12/13, 1/2) = 0.7115
    Image 2 is the same with class 2 in place of class 1 (its miss lies at (2, 2)),
    so the batch means equal image 1's numbers.
    """
    expected = {
        (per_image_recall, "micro"): 13 / 14,
        (per_image_recall, "macro"): 0.75,
        (per_image_iou, "micro"): 13 / 15,
        (per_image_iou, "macro"): (12 / 13 + 1 / 2) / 2,
    }
    for (metric, average), value in expected.items():
        result = metric(EXAMPLE_PREDICTION, EXAMPLE_TARGET, num_classes=3, average=average)
        assert result == pytest.approx(value, abs=1e-4), f"{metric.__name__}(average={average!r}) should be {value:.4f}"


def test_per_image_metrics_reduce_over_the_batch():
    """Both example images score 13/15 micro IoU: "none" gives both, "sum" adds them."""
    scores = per_image_iou(EXAMPLE_PREDICTION, EXAMPLE_TARGET, num_classes=3, average="micro", reduce="none")
    assert scores.shape == (2,), "reduce='none' should return one score per image"
    assert scores.tolist() == pytest.approx([13 / 15, 13 / 15]), "each image's micro IoU is 13/15"
    total = per_image_iou(EXAMPLE_PREDICTION, EXAMPLE_TARGET, num_classes=3, average="micro", reduce="sum")
    assert total == pytest.approx(26 / 15), "reduce='sum' should add the per-image scores"
