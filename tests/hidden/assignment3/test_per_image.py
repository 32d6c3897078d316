"""Graded: Assignment 3, part 5, the per-image IoU and recall (TODOs 3.5 and 3.6 in dlvc/metrics.py).

The student's ``per_image_counts`` and ``average_over_classes`` are called in a
sandboxed worker on random label maps drawn for this grading run (some pixels 255,
some classes missing from some images, some images without a labelled pixel), and
the per-image IoU and recall built on them must equal the reference's.
"""

import pytest
import torch

from dlvc.constants import IGNORE_INDEX
from dlvc.course.grader.expect import expect_number, expect_tensor, fail
from dlvc.course.grader.sandbox import describe_call
from dlvc.metrics import average_over_classes, per_image_counts, per_image_iou, per_image_recall

STUDENT = "dlvc.metrics"
TOLERANCE = 1e-9


def draw(rng: torch.Generator, low: int, high: int) -> int:
    """An int in [low, high]."""
    return int(torch.randint(low, high + 1, (1,), generator=rng))


def random_images(rng: torch.Generator, logits: bool = False, empty_image: bool = False):
    """Predictions (labels (B, H, W), or logits (B, C, H, W)), int64 targets (B, H, W) and C.

    A fifth of the target pixels are 255, and each image's target leaves out one class
    at random, which its prediction may still hold. ``empty_image``: the last image is all 255.
    """
    batch, classes, height, width = draw(rng, 2, 4), draw(rng, 3, 6), draw(rng, 4, 10), draw(rng, 4, 10)
    target = torch.randint(0, classes, (batch, height, width), generator=rng)
    for image in range(batch):
        missing = draw(rng, 0, classes - 1)
        target[image][target[image] == missing] = (missing + 1) % classes
    target[torch.rand(target.shape, generator=rng) < 0.2] = IGNORE_INDEX
    if empty_image:
        target[-1] = IGNORE_INDEX
    prediction = torch.randint(0, classes, (batch, height, width), generator=rng)
    if logits:
        prediction = torch.randn(batch, classes, height, width, generator=rng)
    return prediction, target, classes


def expect_the_reference_counts(worker, prediction, target, classes: int, note: str = "") -> None:
    """The student's per_image_counts equal the reference's: three int64 (B, C) tensors."""
    got = worker.call(f"{STUDENT}:per_image_counts", prediction, target, classes)
    what = describe_call("per_image_counts", (prediction, target, classes)) + note
    if not isinstance(got, (list, tuple)) or len(got) != 3:
        fail(f"{what}: expected a tuple (intersection, predicted, labelled) of three (B, C) tensors, got {type(got).__name__}")
    for name, seen, counts in zip(("intersection", "predicted", "labelled"), got, per_image_counts(prediction, target, classes)):
        expect_tensor(seen, counts, f"{what}: {name}")


def expect_the_reference_metric(worker, name: str, reference, prediction, target, classes: int, average: str, reduce: str) -> None:
    got = worker.call(f"{STUDENT}:{name}", prediction, target, classes, average=average, reduce=reduce)
    expected = reference(prediction, target, classes, average=average, reduce=reduce)
    what = describe_call(name, (prediction, target, classes), {"average": average, "reduce": reduce})
    if reduce == "none":
        expect_tensor(got, expected, what, atol=TOLERANCE, rtol=TOLERANCE)
    else:
        expect_number(got, expected, what, atol=TOLERANCE, rtol=TOLERANCE)


@pytest.mark.graded(part="per_image", points=0.5)
def test_per_image_counts_are_counted_per_image_and_class(worker, rng):
    """per_image_counts gives each image's intersection, predicted and labelled pixels per class, (B, C) each"""
    expect_the_reference_counts(worker, *random_images(rng))


@pytest.mark.graded(part="per_image", points=0.5)
def test_per_image_counts_take_logits_and_leave_ignored_pixels_out(worker, rng):
    """per_image_counts takes logits (argmax over the classes) and counts no pixel labelled 255, also not as predicted"""
    expect_the_reference_counts(worker, *random_images(rng, logits=True), note=" (a fifth of the targets are 255)")


@pytest.mark.parametrize("average", ["micro", "macro"])
@pytest.mark.graded(part="per_image", points=0.5)
def test_average_over_classes_equals_the_reference(worker, rng, average):
    """average_over_classes gives each image's micro or macro average, NaN for an image without labelled pixels"""
    prediction, target, classes = random_images(rng, empty_image=True)
    intersection, predicted, labelled = per_image_counts(prediction, target, classes)
    union = predicted + labelled - intersection
    got = worker.call(f"{STUDENT}:average_over_classes", intersection, union, labelled > 0, average)
    what = describe_call("average_over_classes", (intersection, union, labelled > 0, average))
    what += " with intersections, unions and the classes of each target, the last image without labelled pixels"
    expect_tensor(got, average_over_classes(intersection, union, labelled > 0, average), what, atol=TOLERANCE, rtol=TOLERANCE)


@pytest.mark.parametrize("average", ["micro", "macro"])
@pytest.mark.graded(part="per_image", points=0.25)
def test_per_image_iou_equals_the_reference(worker, rng, average):
    """per_image_iou gives the reference's mean over the images with labelled pixels"""
    prediction, target, classes = random_images(rng, empty_image=True)
    expect_the_reference_metric(worker, "per_image_iou", per_image_iou, prediction, target, classes, average, "mean")


@pytest.mark.parametrize("average", ["micro", "macro"])
@pytest.mark.graded(part="per_image", points=0.25)
def test_per_image_recall_equals_the_reference(worker, rng, average):
    """per_image_recall gives the reference's per-image scores"""
    prediction, target, classes = random_images(rng)
    expect_the_reference_metric(worker, "per_image_recall", per_image_recall, prediction, target, classes, average, "none")
