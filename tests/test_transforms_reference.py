"""Kit tests of the paired augmentations in ``dlvc.datasets.transforms`` (reference build).

Argument checking, the training and evaluation pipelines, and the way datasets
use them through ``apply_paired``. The behaviour students implement is specified
in ``tests/public/test_transforms_public.py``.
"""

import pytest
import torch
from torchvision import tv_tensors

from dlvc.constants import IGNORE_INDEX
from dlvc.datasets.common import apply_paired
from dlvc.datasets.transforms import (
    PairedColorJitter,
    PairedCompose,
    PairedRandomHorizontalFlip,
    PairedRandomPerspective,
    PairedRandomResizedCrop,
    PairedRandomRotation,
    PairedResize,
    eval_transforms,
    train_transforms,
)

HEIGHT, WIDTH = 40, 50
LABELS = {0, 1, 2, 3}

EVERY_TRANSFORM = {
    "compose": lambda: PairedCompose([PairedRandomHorizontalFlip()]),
    "flip": lambda: PairedRandomHorizontalFlip(),
    "color_jitter": lambda: PairedColorJitter(),
    "perspective": lambda: PairedRandomPerspective(),
    "resized_crop": lambda: PairedRandomResizedCrop(32),
    "rotation": lambda: PairedRandomRotation(10),
    "resize": lambda: PairedResize(32),
    "train_transforms": lambda: train_transforms(32),
    "eval_transforms": lambda: eval_transforms(32),
}


def dataset_pair(height: int = HEIGHT, width: int = WIDTH) -> tuple[torch.Tensor, torch.Tensor]:
    """What a dataset reads from disk: a random uint8 (3, H, W) image, an int64 (H, W) mask of labels 0..3."""
    generator = torch.Generator().manual_seed(0)
    image = torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=generator)
    mask = torch.randint(0, len(LABELS), (height, width), generator=generator)
    return image, mask


@pytest.mark.parametrize(
    "make, argument",
    [
        (lambda: PairedRandomHorizontalFlip(p=-0.1), "p"),
        (lambda: PairedRandomHorizontalFlip(p=1.5), "p"),
        (lambda: PairedRandomPerspective(distortion_scale=1.2), "distortion_scale"),
        (lambda: PairedRandomPerspective(p=2), "p"),
        (lambda: PairedRandomResizedCrop(0), "size"),
        (lambda: PairedRandomResizedCrop((32, -1)), "size"),
        (lambda: PairedRandomResizedCrop((32,)), "size"),
        (lambda: PairedRandomResizedCrop(32.5), "size"),
        (lambda: PairedRandomResizedCrop(32, scale=(0.9, 0.5)), "scale"),
        (lambda: PairedRandomResizedCrop(32, scale=(0.0, 0.5)), "scale"),
        (lambda: PairedRandomResizedCrop(32, scale=(0.5, 1.5)), "scale"),
        (lambda: PairedRandomResizedCrop(32, ratio=(4 / 3, 3 / 4)), "ratio"),
        (lambda: PairedRandomResizedCrop(32, ratio=(0.0, 1.0)), "ratio"),
        (lambda: PairedRandomRotation(-5), "degrees"),
        (lambda: PairedRandomRotation((10, -10)), "degrees"),
        (lambda: PairedRandomRotation("10"), "degrees"),
        (lambda: PairedResize(0), "size"),
        (lambda: PairedResize("32"), "size"),
        (lambda: PairedColorJitter(brightness=-0.1), "brightness"),
        (lambda: PairedColorJitter(contrast=-1), "contrast"),
        (lambda: PairedColorJitter(saturation=None), "saturation"),
        (lambda: PairedColorJitter(hue=0.6), "hue"),
        (lambda: train_transforms(0), "image_size"),
        (lambda: eval_transforms((32, 0)), "image_size"),
    ],
)
def test_invalid_argument_raises_value_error_naming_it(make, argument):
    with pytest.raises(ValueError, match=rf"^{argument}: expected"):
        make()


@pytest.mark.parametrize("transforms", [PairedRandomHorizontalFlip(), [PairedRandomHorizontalFlip(), "flip"]])
def test_compose_rejects_what_is_not_a_list_of_transforms(transforms):
    with pytest.raises(TypeError, match=r"^transforms"):
        PairedCompose(transforms)


@pytest.mark.parametrize("name", EVERY_TRANSFORM)
@pytest.mark.parametrize(
    "image, mask, error, argument",
    [
        (torch.zeros(3, HEIGHT, WIDTH), torch.zeros(HEIGHT, WIDTH, dtype=torch.int64), TypeError, "image"),
        (torch.zeros(1, HEIGHT, WIDTH, dtype=torch.uint8), torch.zeros(HEIGHT, WIDTH, dtype=torch.int64), TypeError, "image"),
        (torch.zeros(HEIGHT, WIDTH, dtype=torch.uint8), torch.zeros(HEIGHT, WIDTH, dtype=torch.int64), TypeError, "image"),
        (torch.zeros(3, HEIGHT, WIDTH, dtype=torch.uint8), torch.zeros(HEIGHT, WIDTH), TypeError, "mask"),
        (torch.zeros(3, HEIGHT, WIDTH, dtype=torch.uint8), torch.zeros(HEIGHT, WIDTH, dtype=torch.bool), TypeError, "mask"),
        (torch.zeros(3, HEIGHT, WIDTH, dtype=torch.uint8), torch.zeros(1, HEIGHT, WIDTH, dtype=torch.int64), TypeError, "mask"),
        (torch.zeros(3, HEIGHT, WIDTH, dtype=torch.uint8), torch.zeros(HEIGHT, WIDTH + 1, dtype=torch.int64), ValueError, "mask"),
        (torch.zeros(3, HEIGHT, WIDTH, dtype=torch.uint8).numpy(), torch.zeros(HEIGHT, WIDTH, dtype=torch.int64), TypeError, "image"),
    ],
    ids=["float_image", "one_channel", "no_channels", "float_mask", "bool_mask", "mask_3d", "sizes_differ", "numpy_image"],
)
def test_invalid_input_raises_error_naming_the_argument(name, image, mask, error, argument):
    with pytest.raises(error, match=rf"^{argument}: expected"):
        EVERY_TRANSFORM[name]()(image, mask)


@pytest.mark.parametrize("image_size, expected", [(32, (32, 32)), ((24, 36), (24, 36))])
@pytest.mark.parametrize("pipeline", [train_transforms, eval_transforms])
def test_pipelines_return_image_size(pipeline, image_size, expected):
    image, mask = dataset_pair()
    torch.manual_seed(0)
    out_image, out_mask = pipeline(image_size)(tv_tensors.Image(image), tv_tensors.Mask(mask))
    assert out_image.shape == (3, *expected), f"{pipeline.__name__}({image_size}): image shape {tuple(out_image.shape)}"
    assert out_mask.shape == expected, f"{pipeline.__name__}({image_size}): mask shape {tuple(out_mask.shape)}"


@pytest.mark.parametrize("pipeline", [train_transforms, eval_transforms])
def test_apply_paired_turns_a_dataset_item_into_model_input_of_the_requested_size(pipeline):
    image, mask = dataset_pair()
    for seed in range(5):
        torch.manual_seed(seed)
        model_image, target = apply_paired(pipeline((32, 48)), image, mask)
        assert model_image.dtype == torch.float32 and model_image.shape == (3, 32, 48), (
            f"{pipeline.__name__}, seed {seed}: model input {model_image.dtype} {tuple(model_image.shape)}"
        )
        assert target.dtype == torch.int64 and target.shape == (32, 48), (
            f"{pipeline.__name__}, seed {seed}: target {target.dtype} {tuple(target.shape)}"
        )
        assert set(target.unique().tolist()) <= LABELS | {IGNORE_INDEX}, f"{pipeline.__name__}, seed {seed}: new labels appeared"


def test_eval_transforms_are_deterministic():
    image, mask = dataset_pair()
    first = eval_transforms(32)(tv_tensors.Image(image), tv_tensors.Mask(mask))
    torch.manual_seed(123)
    second = eval_transforms(32)(tv_tensors.Image(image), tv_tensors.Mask(mask))
    assert all(torch.equal(a, b) for a, b in zip(first, second)), "eval_transforms must not depend on the random state"


def test_resize_keeps_mask_labels_and_fills_nothing():
    image, mask = dataset_pair()
    _, out_mask = PairedResize((17, 23))(tv_tensors.Image(image), tv_tensors.Mask(mask))
    assert set(out_mask.unique().tolist()) <= LABELS, "resize must use NEAREST on the mask and fill nothing"


def test_resize_to_the_same_size_changes_nothing():
    image, mask = dataset_pair()
    out_image, out_mask = PairedResize((HEIGHT, WIDTH))(tv_tensors.Image(image), tv_tensors.Mask(mask))
    assert torch.equal(out_image, image) and torch.equal(out_mask, mask), "resizing to the input's own size must be the identity"


def test_train_transforms_mark_uncovered_pixels_as_ignore():
    image, mask = dataset_pair()
    ignored = 0
    for seed in range(10):
        torch.manual_seed(seed)
        _, out_mask = train_transforms(32)(tv_tensors.Image(image), tv_tensors.Mask(mask))
        ignored += int((out_mask == IGNORE_INDEX).sum())
    assert ignored > 0, "the rotation and perspective of train_transforms should leave some IGNORE_INDEX pixels in ten draws"


@pytest.mark.parametrize("name", EVERY_TRANSFORM)
def test_plain_tensors_come_back_as_tv_tensors(name):
    image, mask = dataset_pair()
    torch.manual_seed(0)
    out_image, out_mask = EVERY_TRANSFORM[name]()(image, mask)
    assert isinstance(out_image, tv_tensors.Image) and isinstance(out_mask, tv_tensors.Mask), (
        f"{name}: got {type(out_image).__name__}, {type(out_mask).__name__}"
    )


@pytest.mark.parametrize("name", EVERY_TRANSFORM)
def test_uint8_mask_keeps_its_dtype(name):
    image, mask = dataset_pair()
    torch.manual_seed(0)
    _, out_mask = EVERY_TRANSFORM[name]()(tv_tensors.Image(image), tv_tensors.Mask(mask.to(torch.uint8)))
    assert out_mask.dtype == torch.uint8, f"{name}: a uint8 mask came back as {out_mask.dtype}"


def test_compose_applies_transforms_in_order():
    image, mask = dataset_pair()
    calls = []

    def record(label):
        def transform(image, mask):
            calls.append(label)
            return image, mask

        return transform

    PairedCompose([record("first"), record("second")])(tv_tensors.Image(image), tv_tensors.Mask(mask))
    assert calls == ["first", "second"], f"transforms ran in the order {calls}"


def test_train_transforms_repr_names_every_step():
    text = repr(train_transforms(32))
    for part in ["PairedRandomResizedCrop", "PairedRandomHorizontalFlip", "PairedRandomRotation", "PairedRandomPerspective", "PairedColorJitter"]:
        assert part in text, f"repr(train_transforms(32)) should name {part}: {text}"
