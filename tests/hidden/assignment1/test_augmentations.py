"""Graded: Assignment 1, part 4, paired augmentations (TODOs 10 to 14 in dlvc/datasets/transforms.py).

Two tests per transform. The first seeds torch's generator in the worker and
compares the student's output with the reference's after the same seed: it holds
when the random parameters are drawn as the TODO says. The second checks what
must hold whatever was drawn: image and mask moved together (every labelled pixel
still shows its label's colour), the mask holds only its labels and 255, pixels
without a source are 0 in the image and 255 in the mask, types and sizes kept.
The first kind of test feeds random noise (every pixel its own colour, so that any
difference shows); the second "labelled pictures": random rectangles, label k
painted in colour k.
"""

import pytest
import torch
import torch.nn.functional as F
from torchvision import tv_tensors

from dlvc.constants import IGNORE_INDEX
from dlvc.course.grader.expect import expect_equal, expect_tensor, fail
from dlvc.course.grader.sandbox import describe_call
from dlvc.datasets import transforms as reference

MODULE = "dlvc.datasets.transforms"
COLOUR_TOLERANCE = 3
SEEDS_PER_TEST = 4
FLIP_SEEDS = 12
"""Seeds of the flip tests: one flip is one coin, so a second coin drawn for the mask agrees with the
first for every seed with probability 2**-12 per test, and goes unseen by both tests with 2**-24."""
PALETTE = torch.tensor([[40, 40, 40], [220, 30, 30], [30, 200, 60], [40, 70, 230], [230, 220, 40]], dtype=torch.uint8)

TRANSFORMS = {
    "flip": ("PairedRandomHorizontalFlip", {"p": 0.5}),
    "color_jitter": ("PairedColorJitter", {"brightness": 0.4, "contrast": 0.4, "saturation": 0.4, "hue": 0.1}),
    "perspective": ("PairedRandomPerspective", {"distortion_scale": 0.5, "p": 0.75}),
    "resized_crop": ("PairedRandomResizedCrop", {"size": (40, 48)}),
    "rotation": ("PairedRandomRotation", {"degrees": 30}),
}


def labelled_picture(rng: torch.Generator, square: bool = False) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
    """A uint8 (3, H, W) picture of random rectangles and its int64 (H, W) mask; label k has colour PALETTE[k]."""
    height = int(torch.randint(36, 60, (1,), generator=rng))
    width = height if square else int(torch.randint(36, 72, (1,), generator=rng))
    mask = torch.zeros(height, width, dtype=torch.int64)
    for label in range(1, len(PALETTE)):
        top, left = int(torch.randint(0, height - 12, (1,), generator=rng)), int(torch.randint(0, width - 12, (1,), generator=rng))
        mask[top : top + int(torch.randint(10, 24, (1,), generator=rng)), left : left + int(torch.randint(10, 24, (1,), generator=rng))] = label
    image = PALETTE[mask].permute(2, 0, 1).contiguous()  # (H, W, 3) -> (3, H, W)
    return tv_tensors.Image(image), tv_tensors.Mask(mask)


def noise_picture(rng: torch.Generator) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
    """A uint8 (3, H, W) image of random noise and a random int64 (H, W) mask of labels 0 to 4."""
    height, width = (int(torch.randint(24, 48, (1,), generator=rng)) for _ in range(2))
    image = torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=rng)
    return tv_tensors.Image(image), tv_tensors.Mask(torch.randint(0, len(PALETTE), (height, width), generator=rng))


def interior(mask: torch.Tensor, label: int) -> torch.Tensor:
    """Boolean (H, W): pixels whose 5x5 neighbourhood lies inside the picture and all carries ``label``."""
    same = (mask == label).float()[None, None]  # (H, W) -> (1, 1, H, W)
    eroded = -F.max_pool2d(-F.pad(same, (2, 2, 2, 2), value=0.0), kernel_size=5, stride=1)
    return eroded[0, 0] > 0.5  # (1, 1, H, W) -> (H, W)


def seeds(rng: torch.Generator, count: int = SEEDS_PER_TEST) -> list[int]:
    return [int(seed) for seed in torch.randint(0, 2**31, (count,), generator=rng)]


def student_transform(worker, name: str, **overrides):
    class_name, arguments = TRANSFORMS[name]
    arguments = {**arguments, **overrides}
    return worker.new(f"{MODULE}:{class_name}", **arguments), f"{class_name}({', '.join(f'{k}={v!r}' for k, v in arguments.items())})"


def reference_transform(name: str, **overrides):
    class_name, arguments = TRANSFORMS[name]
    return getattr(reference, class_name)(**{**arguments, **overrides})


def seeded_output(worker, transform, seed: int, image, mask):
    worker.call("torch:manual_seed", seed)
    return transform.call(None, image, mask)


def expect_pair(output, what: str):
    """The transform's output as (image, mask), with their tv_tensors types and dtypes."""
    if not isinstance(output, tuple) or len(output) != 2:
        fail(f"{what}: expected the pair (image, mask), got {type(output).__name__}")
    image, mask = output
    if not isinstance(image, tv_tensors.Image) or image.dtype != torch.uint8:
        fail(f"{what}: expected a uint8 tv_tensors.Image as the image, got {type(image).__name__}")
    if not isinstance(mask, tv_tensors.Mask) or mask.dtype != torch.int64:
        fail(f"{what}: expected an int64 tv_tensors.Mask as the mask, got {type(mask).__name__}")
    return image, mask


def expect_aligned(image, mask, labels: set[int], what: str) -> None:
    """Image and mask moved together; the mask holds only ``labels`` and 255; unfilled pixels are black."""
    found = set(mask.unique().tolist())
    if not found <= labels | {IGNORE_INDEX}:
        fail(f"{what}: the mask holds labels {sorted(found - labels - {IGNORE_INDEX})} that were not in it (interpolate masks with NEAREST)")
    for label in labels:
        inside = interior(mask, label)
        pixels = image.permute(1, 2, 0)[inside].int()  # (3, H, W) -> (N, 3)
        if len(pixels) and (pixels - PALETTE[label].int()).abs().max() > COLOUR_TOLERANCE:
            fail(f"{what}: pixels labelled {label} in the mask show another colour in the image: image and mask were moved differently")
    uncovered = interior(mask, IGNORE_INDEX)
    if uncovered.any() and image[:, uncovered].max() > 0:
        fail(f"{what}: pixels without a source are {IGNORE_INDEX} in the mask but not 0 (black) in the image")


def same_seed_test(worker, rng, name: str, count: int = SEEDS_PER_TEST) -> None:
    transform, shown = student_transform(worker, name)
    for seed in seeds(rng, count):
        image, mask = noise_picture(rng)
        what = f"torch.manual_seed({seed}), then {shown}{describe_call('', (image, mask))}"
        got_image, got_mask = expect_pair(seeded_output(worker, transform, seed, image, mask), what)
        torch.manual_seed(seed)
        expected_image, expected_mask = reference_transform(name)(image, mask)
        expect_tensor(got_mask, expected_mask, f"{what}: the mask")
        expect_tensor(got_image, expected_image, f"{what}: the image")


def property_test(worker, rng, name: str, size=None, **overrides) -> None:
    transform, shown = student_transform(worker, name, **overrides)
    for seed in seeds(rng):
        image, mask = labelled_picture(rng)
        what = f"torch.manual_seed({seed}), then {shown}{describe_call('', (image, mask))}"
        got_image, got_mask = expect_pair(seeded_output(worker, transform, seed, image, mask), what)
        expected_size = tuple(size or mask.shape)
        expect_equal(list(got_image.shape), [3, *expected_size], f"{what}: the image's shape")
        expect_equal(list(got_mask.shape), list(expected_size), f"{what}: the mask's shape")
        expect_aligned(got_image, got_mask, set(mask.unique().tolist()), what)


@pytest.mark.graded(part="augmentations", points=0.5)
def test_flip_after_the_same_seed_equals_the_reference(worker, rng):
    """PairedRandomHorizontalFlip after torch.manual_seed equals the reference's output"""
    same_seed_test(worker, rng, "flip", FLIP_SEEDS)


@pytest.mark.graded(part="augmentations", points=0.5)
def test_flip_mirrors_image_and_mask_together_or_neither(worker, rng):
    """The flip mirrors both or neither, always with p=1, never with p=0"""
    image, mask = labelled_picture(rng)
    mirrored = (image.flip(-1), mask.flip(-1))
    for p, allowed in ((1.0, [mirrored]), (0.0, [(image, mask)]), (0.5, [mirrored, (image, mask)])):
        transform, shown = student_transform(worker, "flip", p=p)
        for seed in seeds(rng, FLIP_SEEDS):
            what = f"torch.manual_seed({seed}), then {shown}{describe_call('', (image, mask))}"
            got = expect_pair(seeded_output(worker, transform, seed, image, mask), what)
            if not any(torch.equal(got[0], want[0]) and torch.equal(got[1], want[1]) for want in allowed):
                fail(f"{what}: expected image and mask {'mirrored' if p == 1 else 'unchanged' if p == 0 else 'both mirrored or both unchanged'}")


@pytest.mark.graded(part="augmentations", points=0.5)
def test_color_jitter_after_the_same_seed_equals_the_reference(worker, rng):
    """PairedColorJitter after torch.manual_seed equals the reference's output"""
    same_seed_test(worker, rng, "color_jitter")


@pytest.mark.graded(part="augmentations", points=0.5)
def test_color_jitter_changes_colours_only(worker, rng):
    """Colour jitter leaves the mask as it is, maps equal colours to equal colours, and keeps the image at strength 0"""
    transform, shown = student_transform(worker, "color_jitter")
    for seed in seeds(rng):
        image, mask = labelled_picture(rng)
        what = f"torch.manual_seed({seed}), then {shown}{describe_call('', (image, mask))}"
        got_image, got_mask = expect_pair(seeded_output(worker, transform, seed, image, mask), what)
        expect_tensor(got_mask, mask, f"{what}: the mask (colour jitter must not touch it)")
        for label in set(mask.unique().tolist()):
            colours = got_image.permute(1, 2, 0)[mask == label].unique(dim=0)  # (3, H, W) -> (N, 3) -> distinct colours
            if len(colours) != 1:
                fail(f"{what}: the pixels of one colour (label {label}) came out in {len(colours)} colours; jitter changes colours, not places")
    still, shown = student_transform(worker, "color_jitter", brightness=0, contrast=0, saturation=0, hue=0)
    image, mask = labelled_picture(rng)
    got_image, _ = expect_pair(still.call(None, image, mask), f"{shown}{describe_call('', (image, mask))}")
    expect_tensor(got_image, image, f"{shown}{describe_call('', (image, mask))}: the image (all strengths 0)")


@pytest.mark.graded(part="augmentations", points=0.5)
def test_perspective_after_the_same_seed_equals_the_reference(worker, rng):
    """PairedRandomPerspective after torch.manual_seed equals the reference's output"""
    same_seed_test(worker, rng, "perspective")


@pytest.mark.graded(part="augmentations", points=0.5)
def test_perspective_keeps_image_and_mask_aligned(worker, rng):
    """The perspective warp moves image and mask alike, keeps mask labels, fills 0 and 255"""
    property_test(worker, rng, "perspective", p=1.0)


@pytest.mark.graded(part="augmentations", points=0.5)
def test_resized_crop_after_the_same_seed_equals_the_reference(worker, rng):
    """PairedRandomResizedCrop after torch.manual_seed equals the reference's output"""
    same_seed_test(worker, rng, "resized_crop")


@pytest.mark.graded(part="augmentations", points=0.5)
def test_resized_crop_keeps_image_and_mask_aligned_at_the_size_asked_for(worker, rng):
    """The resized crop cuts the same region of both, at the size asked for, and keeps mask labels"""
    property_test(worker, rng, "resized_crop", size=TRANSFORMS["resized_crop"][1]["size"])


@pytest.mark.graded(part="augmentations", points=0.5)
def test_rotation_after_the_same_seed_equals_the_reference(worker, rng):
    """PairedRandomRotation after torch.manual_seed equals the reference's output"""
    same_seed_test(worker, rng, "rotation")


@pytest.mark.graded(part="augmentations", points=0.5)
def test_rotation_keeps_image_and_mask_aligned_and_turns_counter_clockwise(worker, rng):
    """The rotation turns both alike (counter-clockwise for positive angles), keeps labels, fills 0 and 255"""
    property_test(worker, rng, "rotation")
    transform, shown = student_transform(worker, "rotation", degrees=(90, 90))
    image, mask = labelled_picture(rng, square=True)
    what = f"{shown}{describe_call('', (image, mask))} on a square picture"
    _, got_mask = expect_pair(transform.call(None, image, mask), what)
    expect_tensor(got_mask, torch.rot90(mask, k=1, dims=(0, 1)), f"{what}: the mask (expected torch.rot90(mask, k=1))")
