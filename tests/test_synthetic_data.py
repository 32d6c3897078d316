"""Specification of the synthetic datasets: deterministic, split-aware, real labels, hard for colour alone."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dlvc.constants import IGNORE_INDEX
from dlvc.datasets.cityscapes import CityscapesCustom
from dlvc.datasets.oxfordpets import OxfordPetsCustom
from dlvc.datasets.synthetic import SyntheticCity, SyntheticPets, SyntheticVOC
from dlvc.datasets.voc import VOCSegmentation

PET, BACKGROUND, BORDER = 0, 1, 2


def _pets_masks(count: int = 20, **options) -> torch.Tensor:
    dataset = SyntheticPets(num_samples=count, **options)
    return torch.stack([dataset.load_pair(index)[1] for index in range(count)])


def _neighbourhood_has(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """(N, H, W) bool -> (N, H, W) bool: True where ``mask`` holds within ``radius`` pixels (square)."""
    grown = F.max_pool2d(mask[:, None].float(), kernel_size=2 * radius + 1, stride=1, padding=radius)
    return grown[:, 0] > 0  # (N, 1, H, W) -> (N, H, W)


@pytest.mark.parametrize("dataset_class", [SyntheticPets, SyntheticCity, SyntheticVOC])
def test_same_seed_gives_identical_samples(dataset_class):
    first, second = dataset_class(num_samples=3, seed=7), dataset_class(num_samples=3, seed=7)
    for index in range(3):
        for a, b in zip(first.load_pair(index), second.load_pair(index)):
            assert torch.equal(a, b), f"sample {index} changed between two datasets built with the same seed"


def test_a_sample_does_not_depend_on_the_dataset_length():
    short, long = SyntheticPets(num_samples=2), SyntheticPets(num_samples=50)
    assert torch.equal(short.load_pair(1)[0], long.load_pair(1)[0]), "sample 1 must be the same whatever num_samples is"


@pytest.mark.parametrize("dataset_class", [SyntheticPets, SyntheticCity])
def test_different_seeds_give_different_samples(dataset_class):
    a, b = dataset_class(num_samples=1, seed=0), dataset_class(num_samples=1, seed=1)
    assert not torch.equal(a.load_pair(0)[0], b.load_pair(0)[0]), "seeds 0 and 1 drew the same image"


@pytest.mark.parametrize("dataset_class", [SyntheticPets, SyntheticCity])
def test_train_and_val_splits_differ(dataset_class):
    train, val = dataset_class("train", num_samples=5), dataset_class("val", num_samples=5)
    train_images = {train.load_pair(index)[0].numpy().tobytes() for index in range(5)}
    val_images = {val.load_pair(index)[0].numpy().tobytes() for index in range(5)}
    assert not train_images & val_images, "a validation image also appears in the training split"


def test_default_lengths_are_larger_for_train_than_val():
    assert len(SyntheticPets("train")) > len(SyntheticPets("val")) > 0, "train should hold more samples than val"


@pytest.mark.parametrize(
    ("dataset_class", "size"), [(SyntheticPets, (64, 64)), (SyntheticCity, (64, 128)), (SyntheticVOC, (64, 64))]
)
def test_load_pair_gives_uint8_image_and_int64_mask(dataset_class, size):
    image, mask = dataset_class(num_samples=1).load_pair(0)
    assert image.dtype == torch.uint8 and image.shape == (3, *size), f"image: got {image.dtype} {tuple(image.shape)}"
    assert mask.dtype == torch.int64 and mask.shape == size, f"mask: got {mask.dtype} {tuple(mask.shape)}"


def test_items_are_normalised_float_images():
    image, mask = SyntheticPets(num_samples=1)[0]
    assert image.dtype == torch.float32 and mask.dtype == torch.int64, "items should be float32 images, int64 masks"
    assert image.min() < 0 < image.max(), "items should be ImageNet-normalised (negative and positive values)"


def test_image_size_is_honoured():
    image, mask = SyntheticPets(num_samples=1, image_size=48).load_pair(0)
    assert image.shape == (3, 48, 48) and mask.shape == (48, 48), "image_size=48 should give 48x48 samples"


def test_pets_use_the_trimap_classes_after_the_minus_one():
    masks = _pets_masks()
    assert set(masks.unique().tolist()) == {PET, BACKGROUND, BORDER}, "pets masks should hold exactly 0, 1 and 2"
    assert SyntheticPets.classes_seg == OxfordPetsCustom.classes_seg, "SyntheticPets must share the real classes"


def test_city_uses_train_ids_and_ignores_the_ego_vehicle():
    dataset = SyntheticCity(num_samples=10)
    values = torch.cat([dataset.load_pair(index)[1].flatten() for index in range(10)]).unique().tolist()
    assert set(values) <= set(range(19)) | {IGNORE_INDEX}, f"city labels outside the train ids: {values}"
    assert IGNORE_INDEX in values, "the ego vehicle's bonnet should be labelled IGNORE_INDEX"
    assert len(values) >= 12, f"city scenes should show most classes, got only {values}"
    assert SyntheticCity.classes_seg == CityscapesCustom.classes_seg, "SyntheticCity must share the real classes"


def test_voc_uses_background_twenty_classes_and_outlines():
    dataset = SyntheticVOC(num_samples=10)
    values = torch.cat([dataset.load_pair(index)[1].flatten() for index in range(10)]).unique().tolist()
    assert set(values) <= set(range(21)) | {IGNORE_INDEX} and {0, IGNORE_INDEX} <= set(values), f"got {values}"
    assert SyntheticVOC.classes_seg == VOCSegmentation.classes_seg, "SyntheticVOC must share the real classes"


def test_border_band_separates_pet_from_background():
    masks = _pets_masks()
    touching = _neighbourhood_has(masks == PET, radius=1) & (masks == BACKGROUND)
    assert not touching.any(), "a pet pixel touches the background: the border band must surround the pet"


def test_border_band_is_thin():
    masks = _pets_masks()
    border = masks == BORDER
    near_other = _neighbourhood_has(~border, radius=2)
    share_thin = (border & near_other).sum() / border.sum()
    assert share_thin > 0.99, f"only {share_thin:.1%} of border pixels lie within 2 px of pet or background"
    assert border.float().mean() < 0.2, "the border band should cover a small part of the image"


def test_pets_vary_in_size_and_position():
    pet = _pets_masks() != BACKGROUND
    areas = pet.sum(dim=(1, 2)).float()
    rows = torch.arange(64).view(1, 64, 1)
    centres = (pet * rows).sum(dim=(1, 2)) / areas
    assert areas.std() / areas.mean() > 0.2, "pet sizes should vary between images"
    assert centres.std() > 3, "pet positions should vary between images"


def test_transform_is_applied_to_image_and_mask():
    def flip_both(image, mask):
        return image.flip(-1), mask.flip(-1)

    plain, flipped = SyntheticPets(num_samples=1), SyntheticPets(num_samples=1, transforms=flip_both)
    image, mask = plain[0]
    flipped_image, flipped_mask = flipped[0]
    assert torch.equal(flipped_mask, mask.flip(-1)), "the transform was not applied to the mask"
    assert torch.equal(flipped_image, image.flip(-1)), "the transform was not applied to the image"


def test_bad_split_is_rejected():
    with pytest.raises(ValueError, match="split"):
        SyntheticPets(split="test")


def test_bad_num_samples_is_rejected():
    with pytest.raises(ValueError, match="num_samples"):
        SyntheticPets(num_samples=0)


def test_index_out_of_range_is_rejected():
    with pytest.raises(IndexError, match="index"):
        SyntheticPets(num_samples=2).load_pair(2)


def _pixels(dataset, count):
    images, masks = zip(*(dataset.load_pair(index) for index in range(count)))
    colours = torch.stack(images).permute(0, 2, 3, 1).reshape(-1, 3)  # (N, 3, H, W) -> (N * H * W, 3)
    return colours.numpy() / 255.0, torch.stack(masks).flatten().numpy()


@pytest.mark.slow
def test_colour_alone_cannot_segment_the_pets():
    linear_model = pytest.importorskip("sklearn.linear_model")
    colours, labels = _pixels(SyntheticPets("train", num_samples=200), 200)
    val_colours, val_labels = _pixels(SyntheticPets("val", num_samples=60), 60)
    chosen = np.random.default_rng(0).choice(len(labels), size=20000, replace=False)
    classifier = linear_model.LogisticRegression(max_iter=300).fit(colours[chosen], labels[chosen])
    predicted = classifier.predict(val_colours)
    confusion = np.bincount(val_labels * 3 + predicted, minlength=9).reshape(3, 3)
    iou = np.diag(confusion) / (confusion.sum(0) + confusion.sum(1) - np.diag(confusion))
    miou = float(np.nanmean(iou))
    print(f"\nper-pixel logistic regression on RGB: IoU per class {np.round(iou, 3).tolist()}, mIoU {miou:.3f}")
    assert miou <= 0.60, f"a per-pixel colour classifier reaches mIoU {miou:.3f}; pets must need shape and texture"
