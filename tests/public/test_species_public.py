"""Assignment 3, part 6: the species notebook's functions (TODOs 3.7 and 3.8 in assignments/assignment3/species.ipynb).

The functions are taken from the notebook's code cells as ``dlvc grade`` takes
them (imports, functions, classes and constants; nothing is trained), so save the
notebook before you run ``pytest tests/public/test_species_public.py``.
"""

import math
from pathlib import Path

import pytest
import torch

from dlvc.course.notebook import graded_notebook
from dlvc.metrics import per_image_iou

CHECKOUT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def species():
    return graded_notebook("species", CHECKOUT)


# Two masks of 2 x 2 pixels: class 0 three times, class 1 once, class 2 twice, two pixels 255.
MASKS = [torch.tensor([[0, 1], [255, 2]]), torch.tensor([[0, 0], [2, 255]])]

# Four images of 2 x 2 pixels, 3 classes. Per-image macro IoU: image 0 is perfect (1.0);
# image 1 gets one pixel of class 0 wrong (class 0: 1/2, class 1: 2/3, mean 0.5833);
# image 2 has no labelled pixel (NaN); image 3 swaps the two classes (0.0).
TARGETS = torch.tensor([[[0, 0], [1, 1]], [[0, 0], [1, 1]], [[255, 255], [255, 255]], [[0, 0], [1, 1]]])
PREDICTIONS = torch.tensor([[[0, 0], [1, 1]], [[0, 1], [1, 1]], [[2, 2], [2, 2]], [[1, 1], [0, 0]]])


def test_count_pixels_counts_each_class_over_every_mask(species):
    """count_pixels of the two masks: class 0 three times, class 1 once, class 2 twice."""
    counts = species.count_pixels([(None, mask) for mask in MASKS], 3)
    assert isinstance(counts, torch.Tensor) and counts.dtype == torch.int64, f"expected an int64 tensor, got {counts!r}"
    assert counts.tolist() == [3, 1, 2], f"expected counts [3, 1, 2] (pixels labelled 255 count nowhere), got {counts.tolist()}"


def test_count_pixels_keeps_classes_that_never_occur(species):
    """A class no mask holds has count 0, and the counts have one entry per class."""
    counts = species.count_pixels([(None, mask) for mask in MASKS], 5)
    assert counts.tolist() == [3, 1, 2, 0, 0], f"expected [3, 1, 2, 0, 0] for 5 classes, got {counts.tolist()}"


def test_the_worked_example_has_the_stated_per_image_iou():
    scores = per_image_iou(PREDICTIONS, TARGETS, 3, average="macro", reduce="none")
    assert scores[0] == 1.0 and math.isclose(scores[1], 0.5833, abs_tol=1e-4) and math.isnan(scores[2]) and scores[3] == 0.0, (
        f"the per-image macro IoU of the example should be 1.0, 0.5833, NaN, 0.0 (part 5), got {scores.tolist()}"
    )


def test_hardest_images_come_lowest_iou_first(species):
    """The two hardest of the example are image 3 (IoU 0) and image 1 (0.58)."""
    hardest = species.hardest_images(PREDICTIONS, TARGETS, 3, k=2)
    assert isinstance(hardest, torch.Tensor) and hardest.dtype == torch.int64, f"expected an int64 tensor, got {hardest!r}"
    assert hardest.tolist() == [3, 1], f"expected images [3, 1] (lowest macro IoU first), got {hardest.tolist()}"


def test_hardest_images_leave_out_an_image_without_labels(species):
    """Asked for ten, the example gives its three scored images: image 2 has no labelled pixel."""
    hardest = species.hardest_images(PREDICTIONS, TARGETS, 3, k=10)
    assert hardest.tolist() == [3, 1, 0], f"expected [3, 1, 0]: image 2 has no IoU and is never among the hardest; got {hardest.tolist()}"


def test_hardest_images_of_equal_iou_come_in_index_order(species):
    """Images 1 and 3 of this batch are the same; the lower index comes first."""
    predictions = PREDICTIONS[[0, 3, 0, 3]]
    targets = TARGETS[[0, 3, 0, 3]]
    hardest = species.hardest_images(predictions, targets, 3, k=2)
    assert hardest.tolist() == [1, 3], f"expected [1, 3] (equal IoU, index order), got {hardest.tolist()}"
