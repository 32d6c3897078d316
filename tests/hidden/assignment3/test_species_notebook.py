"""Graded: Assignment 3, part 6, the species notebook (TODOs 3.7 and 3.8 in assignments/assignment3/species.ipynb).

The grader takes the imports, functions, classes and constants of the submitted
notebook's code cells (``notebooks/species.py`` beside the package, see
:mod:`dlvc.course.student.notebook`) and calls ``count_pixels`` and ``hardest_images`` in a
sandboxed worker on random masks and per-image scores drawn for this grading run; their
results must equal those of the solution notebook's functions.
"""

from pathlib import Path

import pytest
import torch

from dlvc.constants import IGNORE_INDEX
from dlvc.course.grader.expect import expect_tensor, fail
from dlvc.course.student.notebook import load_notebook_module
from dlvc.course.grader.sandbox import describe_call

REPOSITORY_ROOT = Path(__file__).resolve().parents[3]
REFERENCE = load_notebook_module(REPOSITORY_ROOT / "assignments" / "assignment3" / "species.ipynb")
STUDENT = "notebooks.species"


def draw(rng: torch.Generator, low: int, high: int) -> int:
    """An int in [low, high]."""
    return int(torch.randint(low, high + 1, (1,), generator=rng))


def random_masks(rng: torch.Generator, classes: int) -> list[torch.Tensor]:
    """Two to five int64 masks of random sizes; a tenth of their pixels 255, and the last class left out of all."""
    masks = []
    for _ in range(draw(rng, 2, 5)):
        mask = torch.randint(0, classes - 1, (draw(rng, 3, 12), draw(rng, 3, 12)), generator=rng)
        mask[torch.rand(mask.shape, generator=rng) < 0.1] = IGNORE_INDEX
        masks.append(mask)
    return masks


def random_scores(rng: torch.Generator, unscored: int = 0) -> torch.Tensor:
    """Float64 (B,) scores of six to ten images, with ties, ``unscored`` of them NaN at random places."""
    batch = draw(rng, 6, 10)
    scores = torch.randint(0, 4, (batch,), generator=rng).to(torch.float64) / 4
    scores[torch.randperm(batch, generator=rng)[:unscored]] = float("nan")
    return scores


def expect_the_reference_counts(worker, masks: list[torch.Tensor], classes: int) -> None:
    pairs = [(torch.zeros(3, *mask.shape), mask) for mask in masks]
    got = worker.call(f"{STUDENT}:count_pixels", pairs, classes)
    what = f"count_pixels(a dataset of {len(masks)} (image, mask) pairs, {classes})"
    expect_tensor(got, REFERENCE.count_pixels(pairs, classes), what)


def expect_the_reference_hardest(worker, scores: torch.Tensor, k: int, note: str = "") -> None:
    got = worker.call(f"{STUDENT}:hardest_images", scores, k)
    what = describe_call("hardest_images", (scores, k)) + note
    expected = REFERENCE.hardest_images(scores, k)
    if not isinstance(got, torch.Tensor):
        fail(f"{what}: expected an int64 tensor of image indices, got {type(got).__name__}")
    if got.shape != expected.shape:
        fail(f"{what}: expected {expected.numel()} indices, got shape {tuple(got.shape)}")
    expect_tensor(got, expected, what)


@pytest.mark.graded(part="species_notebook", points=0.5)
def test_count_pixels_counts_every_class_over_the_dataset(worker, rng):
    """count_pixels sums each class's labelled pixels over every mask, 255 counting nowhere"""
    expect_the_reference_counts(worker, random_masks(rng, draw(rng, 3, 6)), 6)


@pytest.mark.graded(part="species_notebook", points=0.5)
def test_count_pixels_gives_zero_for_a_class_no_mask_holds(worker, rng):
    """count_pixels gives one count per class, 0 for a class that never occurs"""
    classes = draw(rng, 3, 6)
    expect_the_reference_counts(worker, random_masks(rng, classes), classes)


@pytest.mark.graded(part="species_notebook", points=0.5)
def test_hardest_images_come_lowest_score_first(worker, rng):
    """hardest_images gives the k images of lowest score, lowest first, ties in index order"""
    scores = random_scores(rng)
    expect_the_reference_hardest(worker, scores, k=draw(rng, 2, 4), note=" (some scores are equal)")


@pytest.mark.graded(part="species_notebook", points=0.5)
def test_hardest_images_never_hold_an_image_without_a_score(worker, rng):
    """hardest_images leaves out the images whose score is NaN, also when k asks for more"""
    scores = random_scores(rng, unscored=2)
    expect_the_reference_hardest(worker, scores, k=len(scores), note=" (two scores are NaN)")
