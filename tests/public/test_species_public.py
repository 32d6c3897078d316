"""Assignment 3, part 6: the species notebook's functions (TODOs 3.7 and 3.8 in assignments/assignment3/species.ipynb).

The functions are taken from the notebook's code cells as ``dlvc grade`` takes
them (imports, functions, classes and constants; nothing is trained), so save the
notebook before you run ``pytest tests/public/test_species_public.py``.
"""

from pathlib import Path

import pytest
import torch

from dlvc.course.student.notebook import graded_notebook

CHECKOUT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def species():
    return graded_notebook("species", CHECKOUT)


# Two masks of 2 x 2 pixels: class 0 three times, class 1 once, class 2 twice, two pixels 255.
MASKS = [torch.tensor([[0, 1], [255, 2]]), torch.tensor([[0, 0], [2, 255]])]

# The per-image macro IoU of four images (part 5): image 2 has no labelled pixel, so no score.
SCORES = torch.tensor([1.0, 0.5833, float("nan"), 0.0], dtype=torch.float64)


def test_count_pixels_counts_each_class_over_every_mask(species):
    """count_pixels of the two masks: class 0 three times, class 1 once, class 2 twice."""
    counts = species.count_pixels([(None, mask) for mask in MASKS], 3)
    assert isinstance(counts, torch.Tensor) and counts.dtype == torch.int64, f"expected an int64 tensor, got {counts!r}"
    assert counts.tolist() == [3, 1, 2], f"expected counts [3, 1, 2] (pixels labelled 255 count nowhere), got {counts.tolist()}"


def test_count_pixels_keeps_classes_that_never_occur(species):
    """A class no mask holds has count 0, and the counts have one entry per class."""
    counts = species.count_pixels([(None, mask) for mask in MASKS], 5)
    assert counts.tolist() == [3, 1, 2, 0, 0], f"expected [3, 1, 2, 0, 0] for 5 classes, got {counts.tolist()}"


def test_hardest_images_come_lowest_score_first(species):
    """The two hardest of the example are image 3 (score 0) and image 1 (0.58)."""
    hardest = species.hardest_images(SCORES, k=2)
    assert isinstance(hardest, torch.Tensor) and hardest.dtype == torch.int64, f"expected an int64 tensor, got {hardest!r}"
    assert hardest.tolist() == [3, 1], f"expected images [3, 1] (lowest score first), got {hardest.tolist()}"


def test_hardest_images_leave_out_an_image_without_a_score(species):
    """Asked for ten, the example gives its three scored images: image 2's score is NaN."""
    hardest = species.hardest_images(SCORES, k=10)
    assert hardest.tolist() == [3, 1, 0], f"expected [3, 1, 0]: image 2 has no score and is never among the hardest; got {hardest.tolist()}"


def test_hardest_images_of_equal_score_come_in_index_order(species):
    """Images 1 and 3 of this batch score the same; the lower index comes first."""
    hardest = species.hardest_images(torch.tensor([1.0, 0.25, 0.5, 0.25]), k=2)
    assert hardest.tolist() == [1, 3], f"expected [1, 3] (equal scores, index order), got {hardest.tolist()}"
