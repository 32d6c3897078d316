"""Public tests of the paired augmentations (Assignment 1, part 4): ``dlvc/datasets/transforms.py``.

Run them with ``pytest tests/public/test_transforms_public.py``. Most tests use a
"labelled picture": a few coloured rectangles where every pixel's colour tells its
mask label (label k is painted ``PALETTE[k]``). After a geometric transform, image
and mask are still aligned exactly when every labelled pixel still shows its
label's colour.
"""

import pytest
import torch
import torch.nn.functional as F
from torchvision import tv_tensors
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from dlvc.constants import IGNORE_INDEX
from dlvc.datasets.transforms import (
    PairedColorJitter,
    PairedRandomHorizontalFlip,
    PairedRandomPerspective,
    PairedRandomResizedCrop,
    PairedRandomRotation,
)

PALETTE = torch.tensor([[40, 40, 40], [220, 30, 30], [30, 200, 60], [40, 70, 230]], dtype=torch.uint8)
"""Label k is painted in colour ``PALETTE[k]`` (RGB)."""

HEIGHT, WIDTH = 48, 64
SEEDS = range(5)
COLOUR_TOLERANCE = 3
"""Largest difference (of 255) allowed between a pixel and its label's colour."""

GEOMETRIC = {
    "flip": lambda: PairedRandomHorizontalFlip(p=0.5),
    "perspective": lambda: PairedRandomPerspective(distortion_scale=0.5, p=1.0),
    "resized_crop": lambda: PairedRandomResizedCrop((HEIGHT, WIDTH)),
    "rotation": lambda: PairedRandomRotation(degrees=30),
}
RANDOM = {**GEOMETRIC, "color_jitter": lambda: PairedColorJitter()}


def labelled_pair() -> tuple[tv_tensors.Image, tv_tensors.Mask]:
    """A (3, 48, 64) image of coloured rectangles and its int64 (48, 64) mask; no two halves alike."""
    mask = torch.zeros(HEIGHT, WIDTH, dtype=torch.int64)
    mask[4:30, 6:28] = 1
    mask[18:44, 34:60] = 2
    mask[34:46, 4:22] = 3
    image = PALETTE[mask].permute(2, 0, 1).contiguous()  # (H, W, 3) -> (3, H, W)
    return tv_tensors.Image(image), tv_tensors.Mask(mask)


def interior(mask: torch.Tensor, label: int) -> torch.Tensor:
    """Boolean (H, W): pixels whose whole 5x5 neighbourhood lies in the picture and carries ``label``.

    Far enough from every label edge and from the picture's border that bilinear
    interpolation of the image mixes nothing but ``label``'s own colour there.
    """
    same = (mask == label).float()[None, None]  # (H, W) -> (1, 1, H, W)
    eroded = -F.max_pool2d(-F.pad(same, (2, 2, 2, 2), value=0.0), kernel_size=5, stride=1)
    return eroded[0, 0] > 0.5  # (1, 1, H, W) -> (H, W)


def run_seeded(transform, seed: int, image: torch.Tensor, mask: torch.Tensor):
    torch.manual_seed(seed)
    return transform(image, mask)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("name", GEOMETRIC)
def test_geometric_transform_keeps_image_and_mask_aligned(name, seed):
    image, mask = labelled_pair()
    out_image, out_mask = run_seeded(GEOMETRIC[name](), seed, image, mask)
    checked = 0
    for label, colour in enumerate(PALETTE):
        inside = interior(out_mask, label)
        checked += int(inside.sum())
        pixels = out_image.permute(1, 2, 0)[inside].int()  # (3, H, W) -> (H, W, 3) -> (N, 3)
        worst = (pixels - colour.int()).abs().max().item() if len(pixels) else 0
        assert worst <= COLOUR_TOLERANCE, (
            f"{name} (seed {seed}): pixels labelled {label} in the mask show another colour in the image "
            f"(off by up to {worst}); image and mask must get the same geometric operation with the same random parameters"
        )
    assert checked >= 0.1 * HEIGHT * WIDTH, (
        f"{name} (seed {seed}): only {checked} mask pixels lie inside a labelled region; "
        "the mask lost its labels (is it filled with IGNORE_INDEX everywhere?)"
    )


@pytest.mark.parametrize("name", GEOMETRIC)
def test_mask_keeps_only_its_labels_and_ignore_index(name):
    labels = torch.tensor([0, 5, 17])
    blocks = labels[torch.randint(0, 3, (HEIGHT // 4, WIDTH // 4), generator=torch.Generator().manual_seed(0))]
    mask = tv_tensors.Mask(blocks.repeat_interleave(4, 0).repeat_interleave(4, 1))  # (H/4, W/4) -> (H, W)
    image = tv_tensors.Image(torch.randint(0, 256, (3, HEIGHT, WIDTH), dtype=torch.uint8))
    for seed in SEEDS:
        _, out_mask = run_seeded(GEOMETRIC[name](), seed, image, mask)
        found = set(out_mask.unique().tolist())
        assert found <= {0, 5, 17, IGNORE_INDEX}, (
            f"{name}: the mask holds labels {sorted(found - {0, 5, 17, IGNORE_INDEX})} that were not in it; "
            "resize and warp masks with InterpolationMode.NEAREST and fill them with IGNORE_INDEX"
        )


@pytest.mark.parametrize("name", RANDOM)
def test_transform_returns_image_and_mask_with_their_types_and_shapes(name):
    image, mask = labelled_pair()
    out = run_seeded(RANDOM[name](), 0, image, mask)
    assert isinstance(out, tuple) and len(out) == 2, f"{name}: return the pair (image, mask), got {type(out).__name__}"
    out_image, out_mask = out
    assert isinstance(out_image, tv_tensors.Image), f"{name}: the image must stay a tv_tensors.Image, got {type(out_image).__name__}"
    assert isinstance(out_mask, tv_tensors.Mask), f"{name}: the mask must stay a tv_tensors.Mask, got {type(out_mask).__name__}"
    assert out_image.dtype == torch.uint8, f"{name}: the image must stay uint8, got {out_image.dtype}"
    assert out_mask.dtype == torch.int64, f"{name}: the mask must stay int64, got {out_mask.dtype}"
    assert out_image.shape == (3, HEIGHT, WIDTH), f"{name}: image shape should be (3, {HEIGHT}, {WIDTH}), got {tuple(out_image.shape)}"
    assert out_mask.shape == (HEIGHT, WIDTH), f"{name}: mask shape should be ({HEIGHT}, {WIDTH}), got {tuple(out_mask.shape)}"


def test_resized_crop_returns_the_requested_size():
    image, mask = labelled_pair()
    out_image, out_mask = run_seeded(PairedRandomResizedCrop((24, 40)), 0, image, mask)
    assert out_image.shape == (3, 24, 40), f"resized crop to (24, 40): image shape should be (3, 24, 40), got {tuple(out_image.shape)}"
    assert out_mask.shape == (24, 40), f"resized crop to (24, 40): mask shape should be (24, 40), got {tuple(out_mask.shape)}"


def test_resized_crop_of_the_whole_image_is_a_resize():
    image, mask = labelled_pair()
    whole = PairedRandomResizedCrop((24, 32), scale=(1.0, 1.0), ratio=(WIDTH / HEIGHT, WIDTH / HEIGHT))
    _, out_mask = run_seeded(whole, 0, image, mask)
    expected = TF.resize(mask, [24, 32], interpolation=InterpolationMode.NEAREST)
    assert torch.equal(out_mask, expected), (
        "a crop covering the whole image (scale=(1, 1), the image's aspect ratio) should give the mask "
        "resized with NEAREST to the requested size"
    )


@pytest.mark.parametrize("name", RANDOM)
def test_same_seed_gives_the_same_result(name):
    image, mask = labelled_pair()
    first_image, first_mask = run_seeded(RANDOM[name](), 3, image, mask)
    second_image, second_mask = run_seeded(RANDOM[name](), 3, image, mask)
    assert torch.equal(first_image, second_image) and torch.equal(first_mask, second_mask), (
        f"{name}: two runs after torch.manual_seed(3) differ; draw the random parameters with torch's random generator"
    )


@pytest.mark.parametrize("name", ["flip", "perspective", "resized_crop", "rotation", "color_jitter"])
def test_each_call_draws_new_parameters(name):
    image, mask = labelled_pair()
    transform = RANDOM[name]()
    torch.manual_seed(0)
    outputs = [transform(image, mask)[0] for _ in range(8)]
    assert any(not torch.equal(outputs[0], other) for other in outputs[1:]), (
        f"{name}: eight calls of one transform gave the same image; draw the random parameters inside __call__"
    )


def test_color_jitter_leaves_the_mask_untouched():
    image, mask = labelled_pair()
    _, out_mask = run_seeded(PairedColorJitter(), 0, image, mask)
    assert torch.equal(out_mask, mask), "colour jitter changes colours only: the mask must come back unchanged"


def test_color_jitter_changes_the_image():
    image, mask = labelled_pair()
    out_image, _ = run_seeded(PairedColorJitter(brightness=0.5, contrast=0.5, saturation=0.5, hue=0.2), 0, image, mask)
    assert not torch.equal(out_image, image), "colour jitter with non-zero strengths returned the image unchanged"


def test_color_jitter_with_zero_strength_keeps_the_image():
    image, mask = labelled_pair()
    out_image, _ = run_seeded(PairedColorJitter(brightness=0, contrast=0, saturation=0, hue=0), 0, image, mask)
    assert torch.equal(out_image, image), "colour jitter with all strengths 0 must leave the image as it is"


def test_flip_with_p_one_mirrors_image_and_mask():
    image, mask = labelled_pair()
    out_image, out_mask = PairedRandomHorizontalFlip(p=1.0)(image, mask)
    assert torch.equal(out_image, torch.flip(image, dims=[-1])), "flip with p=1: the image should equal torch.flip(image, dims=[-1])"
    assert torch.equal(out_mask, torch.flip(mask, dims=[-1])), "flip with p=1: the mask should equal torch.flip(mask, dims=[-1])"


def test_flip_with_p_one_half_flips_image_and_mask_together():
    image, mask = labelled_pair()
    flips = []
    for seed in range(16):
        out_image, out_mask = run_seeded(PairedRandomHorizontalFlip(p=0.5), seed, image, mask)
        image_flipped, mask_flipped = torch.equal(out_image, image.flip(-1)), torch.equal(out_mask, mask.flip(-1))
        assert image_flipped == mask_flipped, (
            f"flip with p=0.5 (seed {seed}): the image was {'' if image_flipped else 'not '}flipped but the mask was "
            f"{'' if mask_flipped else 'not '}: draw one random number and flip both or neither"
        )
        flips.append(image_flipped)
    assert any(flips) and not all(flips), f"flip with p=0.5 flipped {sum(flips)} of 16 times; it should flip about half of them"


def test_flip_with_p_zero_keeps_image_and_mask():
    image, mask = labelled_pair()
    out_image, out_mask = PairedRandomHorizontalFlip(p=0.0)(image, mask)
    assert torch.equal(out_image, image) and torch.equal(out_mask, mask), "flip with p=0 must never flip"


def test_perspective_with_p_zero_keeps_image_and_mask():
    image, mask = labelled_pair()
    out_image, out_mask = PairedRandomPerspective(distortion_scale=0.5, p=0.0)(image, mask)
    assert torch.equal(out_image, image) and torch.equal(out_mask, mask), "perspective with p=0 must never warp"


def test_rotation_by_90_degrees_of_a_square_fills_nothing():
    image, mask = labelled_pair()
    image, mask = image[:, :, :HEIGHT], mask[:, :HEIGHT]  # (3, 48, 64) -> (3, 48, 48)
    _, out_mask = PairedRandomRotation(degrees=(90, 90))(image, mask)
    assert not (out_mask == IGNORE_INDEX).any(), "a square turned by 90 degrees covers itself: no mask pixel should be IGNORE_INDEX"
    assert torch.equal(out_mask, torch.rot90(mask, k=1, dims=(0, 1))), (
        "rotation by +90 degrees should turn the mask counter-clockwise, like torch.rot90(mask, k=1)"
    )


def test_rotation_by_45_degrees_fills_the_corners():
    image, mask = labelled_pair()
    out_image, out_mask = PairedRandomRotation(degrees=(45, 45))(image, mask)
    corners = [(0, 0), (0, WIDTH - 1), (HEIGHT - 1, 0), (HEIGHT - 1, WIDTH - 1)]
    for row, column in corners:
        assert out_mask[row, column] == IGNORE_INDEX, (
            f"rotation by 45 degrees: the corner ({row}, {column}) has no source pixel; fill the mask with IGNORE_INDEX there, "
            f"got {out_mask[row, column].item()}"
        )
        assert (out_image[:, row, column] == 0).all(), (
            f"rotation by 45 degrees: the corner ({row}, {column}) has no source pixel; fill the image with 0 there, "
            f"got {out_image[:, row, column].tolist()}"
        )
    assert out_mask[HEIGHT // 2, WIDTH // 2] != IGNORE_INDEX, "rotation by 45 degrees: the centre must keep its label"


def test_perspective_fills_the_uncovered_border():
    image, mask = labelled_pair()
    for seed in SEEDS:
        out_image, out_mask = run_seeded(PairedRandomPerspective(distortion_scale=0.6, p=1.0), seed, image, mask)
        uncovered = interior(out_mask, IGNORE_INDEX)
        assert uncovered.any(), f"perspective (seed {seed}): a strong warp uncovers part of the border; fill the mask with IGNORE_INDEX there"
        assert (out_image[:, uncovered] == 0).all(), f"perspective (seed {seed}): fill the image with 0 where it has no source pixel"
