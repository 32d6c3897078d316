"""Graded: Assignment 1, part 1, the confusion-matrix metric (TODOs 2, 3 and 4 in dlvc/metrics.py).

Each test builds the student's ``SegMetrics`` in a sandboxed worker, feeds it random
labels or logits drawn for this grading run, and compares what it reports with the
reference build's ``SegMetrics`` on the same inputs. One behaviour per test.
"""

import pytest
import torch

from dlvc.constants import IGNORE_INDEX
from dlvc.course.grader.expect import expect_number, expect_raises, expect_tensor
from dlvc.course.grader.sandbox import describe_call
from dlvc.metrics import SegMetrics

STUDENT_METRIC = "dlvc.metrics:SegMetrics"
MIOU_TOLERANCE = 1e-9


def class_names(count: int) -> list[str]:
    return [f"class {label}" for label in range(count)]


def random_batch(rng: torch.Generator, num_classes: int, ignored: float = 0.0, logits: bool = False):
    """A random (prediction, target) pair: labels (B, H, W) or logits (B, C, H, W), and int64 targets.

    ``ignored`` is the share of target pixels set to the ignore label.
    """
    batch, height, width = (int(torch.randint(low, high, (1,), generator=rng)) for low, high in ((1, 4), (5, 21), (5, 21)))
    target = torch.randint(0, num_classes, (batch, height, width), generator=rng)
    target[torch.rand(target.shape, generator=rng) < ignored] = IGNORE_INDEX
    if logits:
        return torch.randn(batch, num_classes, height, width, generator=rng), target
    return torch.randint(0, num_classes, (batch, height, width), generator=rng), target


def random_classes(rng: torch.Generator) -> int:
    return int(torch.randint(3, 8, (1,), generator=rng))


def reference_after(num_classes: int, batches) -> SegMetrics:
    metric = SegMetrics(class_names(num_classes))
    for prediction, target in batches:
        metric.update(prediction, target)
    return metric


def expect_the_reference_matrix(worker, num_classes: int, batches, note: str = "") -> None:
    """The student's confusion matrix after ``update`` with each batch equals the reference's."""
    metric, calls = student_after(worker, num_classes, batches)
    expected = reference_after(num_classes, batches).confusion_matrix
    expect_tensor(metric.get("confusion_matrix"), expected, f"{calls}{note}, then .confusion_matrix")


def student_after(worker, num_classes: int, batches):
    """The student's SegMetrics after ``update`` with each batch, and the calls made, for messages."""
    metric = worker.new(STUDENT_METRIC, class_names(num_classes))
    calls = [f"SegMetrics({num_classes} classes)"]
    for prediction, target in batches:
        metric.call("update", prediction, target)
        calls.append(describe_call("update", (prediction, target)))
    return metric, ", then ".join(calls)


@pytest.mark.graded(part="metric", points=1)
def test_a_new_metric_and_reset_hold_a_zero_int64_confusion_matrix(worker, rng):
    """A new SegMetrics, and one after reset(), holds a zero int64 (C, C) confusion matrix"""
    num_classes = random_classes(rng)
    zeros = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    metric = worker.new(STUDENT_METRIC, class_names(num_classes))
    expect_tensor(metric.get("confusion_matrix"), zeros, f"SegMetrics({num_classes} classes).confusion_matrix", check_dtype=True)
    batch = random_batch(rng, num_classes)
    metric.call("update", *batch)
    metric.call("reset")
    what = f"SegMetrics({num_classes} classes), then {describe_call('update', batch)}, then reset(), then .confusion_matrix"
    expect_tensor(metric.get("confusion_matrix"), zeros, what, check_dtype=True)


@pytest.mark.graded(part="metric", points=1)
def test_update_counts_every_target_and_prediction_pair(worker, rng):
    """update() counts each (target, prediction) pair of integer labels: rows are targets, columns predictions"""
    num_classes = random_classes(rng)
    expect_the_reference_matrix(worker, num_classes, [random_batch(rng, num_classes)])


@pytest.mark.graded(part="metric", points=1)
def test_update_turns_logits_into_labels(worker, rng):
    """update() takes float logits (B, C, H, W) and counts their argmax over the classes"""
    num_classes = random_classes(rng)
    expect_the_reference_matrix(worker, num_classes, [random_batch(rng, num_classes, logits=True)])


@pytest.mark.graded(part="metric", points=1)
def test_update_skips_pixels_labelled_255(worker, rng):
    """update() counts nothing for pixels whose target is 255, whatever is predicted there"""
    num_classes = random_classes(rng)
    expect_the_reference_matrix(worker, num_classes, [random_batch(rng, num_classes, ignored=0.3)], " (30% of the targets are 255)")


@pytest.mark.graded(part="metric", points=1)
def test_updates_accumulate_over_batches(worker, rng):
    """Several update() calls add up, and a (B, 1, H, W) target counts like a (B, H, W) one"""
    num_classes = random_classes(rng)
    batches = [random_batch(rng, num_classes) for _ in range(3)]
    prediction, target = batches[1]
    batches[1] = (prediction, target.unsqueeze(1))  # (B, H, W) -> (B, 1, H, W)
    expect_the_reference_matrix(worker, num_classes, batches)


@pytest.mark.graded(part="metric", points=1)
def test_miou_is_read_from_the_matrix_of_the_whole_evaluation(worker, rng):
    """mIoU() of several batches is the mean IoU of their summed confusion matrix, not a mean over batches"""
    num_classes = random_classes(rng)
    batches = [random_batch(rng, num_classes) for _ in range(3)]
    metric, calls = student_after(worker, num_classes, batches)
    expected = reference_after(num_classes, batches).mIoU()
    expect_number(metric.call("mIoU"), expected, f"{calls}, then mIoU()", atol=MIOU_TOLERANCE, rtol=0)


@pytest.mark.graded(part="metric", points=1)
def test_miou_leaves_out_absent_classes_and_is_zero_without_data(worker, rng):
    """mIoU() averages over the classes present in target or prediction; 0.0 before any labelled pixel"""
    num_classes = random_classes(rng) + 2
    present = num_classes - 2
    prediction, target = random_batch(rng, present, ignored=0.1)
    prediction[0, 0, 0] = present  # a class that is predicted once and never in the target: IoU 0, counted
    batches = [(prediction, target)]
    metric = worker.new(STUDENT_METRIC, class_names(num_classes))
    what = f"SegMetrics({num_classes} classes).mIoU() before any update"
    expect_number(metric.call("mIoU"), 0.0, what, atol=0, rtol=0)
    for batch in batches:
        metric.call("update", *batch)
    expected = reference_after(num_classes, batches).mIoU()
    what = (
        f"SegMetrics({num_classes} classes), then {describe_call('update', batches[0])} where class {present + 1} "
        f"never occurs and class {present} is only predicted, then mIoU()"
    )
    expect_number(metric.call("mIoU"), expected, what, atol=MIOU_TOLERANCE, rtol=0)


@pytest.mark.graded(part="metric", points=1)
def test_update_rejects_inputs_it_cannot_count(worker, rng):
    """update() raises ValueError for labels out of range or mismatched shapes, TypeError for float targets"""
    num_classes = random_classes(rng)
    metric = worker.new(STUDENT_METRIC, class_names(num_classes))
    prediction, target = random_batch(rng, num_classes)
    out_of_range = target.clone()
    out_of_range[0, 0, 0] = num_classes
    cases = [
        ((prediction, out_of_range), "ValueError", f"a target holding the label {num_classes}"),
        ((prediction, target[:, 1:]), "ValueError", "a target of another size than the prediction"),
        ((prediction, target.float()), "TypeError", "a float target"),
    ]
    for arguments, error, why in cases:
        expect_raises(lambda: metric.call("update", *arguments), error, f"{describe_call('SegMetrics.update', arguments)} with {why}")
