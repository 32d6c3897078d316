"""Specification of the real datasets' classes, exercised on synthetic trees in the official on-disk layouts.

Each tree is written by a ``write_*_tree`` function from :mod:`dlvc.datasets.synthetic`;
loading it back must give the masks the generator drew, in the dataset's label
convention (pets 0..2 after the -1, Cityscapes train ids with 255 kept, VOC 0..20
with 255 kept).
"""

import re
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from dlvc.constants import IGNORE_INDEX
from dlvc.datasets.cityscapes import CityscapesCustom
from dlvc.datasets.oxfordpets import OxfordPetsCustom
from dlvc.datasets.synthetic import (
    SyntheticCity,
    SyntheticPets,
    SyntheticVOC,
    write_cityscapes_tree,
    write_oxford_pets_tree,
    write_voc_tree,
)
from dlvc.datasets.voc import VOCSegmentation

NUM_TRAIN, NUM_VAL = 4, 3

# dataset class, tree writer, generator the writer draws from, number of classes, image (H, W)
KINDS = {
    "pets": (OxfordPetsCustom, write_oxford_pets_tree, SyntheticPets, 3, (64, 64)),
    "cityscapes": (CityscapesCustom, write_cityscapes_tree, SyntheticCity, 19, (64, 128)),
    "voc": (VOCSegmentation, write_voc_tree, SyntheticVOC, 21, (64, 64)),
}


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    """One written tree per dataset kind: name -> root."""
    return {
        name: writer(tmp_path_factory.mktemp(name), NUM_TRAIN, NUM_VAL, seed=3)
        for name, (_, writer, _, _, _) in KINDS.items()
    }


def _all_labels(dataset) -> set[int]:
    return set(torch.cat([dataset.load_pair(index)[1].flatten() for index in range(len(dataset))]).unique().tolist())


@pytest.mark.parametrize("name", KINDS)
@pytest.mark.parametrize(("split", "length"), [("train", NUM_TRAIN), ("val", NUM_VAL)])
def test_split_holds_the_written_samples(trees, name, split, length):
    dataset = KINDS[name][0](trees[name], split=split)
    assert len(dataset) == length, f"{name} {split}: expected {length} samples, found {len(dataset)}"


@pytest.mark.parametrize("name", KINDS)
def test_load_pair_gives_uint8_image_and_int64_mask(trees, name):
    dataset_class, _, _, _, size = KINDS[name]
    image, mask = dataset_class(trees[name]).load_pair(0)
    assert image.dtype == torch.uint8 and image.shape == (3, *size), f"image: got {image.dtype} {tuple(image.shape)}"
    assert mask.dtype == torch.int64 and mask.shape == size, f"mask: got {mask.dtype} {tuple(mask.shape)}"


@pytest.mark.parametrize("name", KINDS)
def test_items_are_normalised_float_images_and_int64_masks(trees, name):
    image, mask = KINDS[name][0](trees[name])[0]
    assert image.dtype == torch.float32 and mask.dtype == torch.int64, f"got {image.dtype} and {mask.dtype}"
    assert image.min() < 0 < image.max(), "items should be ImageNet-normalised (negative and positive values)"


@pytest.mark.parametrize("name", KINDS)
@pytest.mark.parametrize("split", ["train", "val"])
def test_masks_round_trip_from_the_generator(trees, name, split):
    dataset_class, _, generator_class, _, _ = KINDS[name]
    dataset, generator = dataset_class(trees[name], split=split), generator_class(split, seed=3)
    for index in range(len(dataset)):
        loaded, drawn = dataset.load_pair(index)[1], generator.load_pair(index)[1]
        assert torch.equal(loaded, drawn), f"{name} {split} sample {index}: the loaded mask differs from the drawn one"


def test_cityscapes_images_round_trip_exactly(trees):
    image, _ = CityscapesCustom(trees["cityscapes"]).load_pair(1)
    assert torch.equal(image, SyntheticCity(seed=3).load_pair(1)[0]), "PNG images should load back unchanged"


@pytest.mark.parametrize("name", KINDS)
def test_classes_are_numbered_from_zero(name):
    dataset_class, _, _, num_classes, _ = KINDS[name]
    ids = [segment_class.id for segment_class in dataset_class.classes_seg]
    assert ids == list(range(num_classes)), f"{name}: class ids should be 0..{num_classes - 1}, got {ids}"
    assert dataset_class.num_classes == num_classes


def test_pets_trimaps_on_disk_hold_one_to_three(trees):
    trimaps = sorted((trees["pets"] / "oxford-iiit-pet" / "annotations" / "trimaps").glob("*.png"))
    values = set(np.unique(np.array(Image.open(trimaps[0]))).tolist())
    assert values == {1, 2, 3}, f"the written trimap should hold 1, 2, 3 as the real ones do, got {values}"


def test_pets_masks_are_shifted_to_zero_one_two(trees):
    labels = _all_labels(OxfordPetsCustom(trees["pets"]))
    assert labels == {0, 1, 2}, f"pets masks should hold 0 pet, 1 background, 2 border, got {labels}"


def test_cityscapes_masks_keep_train_ids_and_255(trees):
    labels = _all_labels(CityscapesCustom(trees["cityscapes"]))
    assert labels <= set(range(19)) | {IGNORE_INDEX}, f"labels outside the train ids: {labels}"
    assert IGNORE_INDEX in labels and len(labels) > 5, f"expected many train ids and 255, got {labels}"


def test_voc_masks_keep_class_ids_and_255(trees):
    labels = _all_labels(VOCSegmentation(trees["voc"]))
    assert labels <= set(range(21)) | {IGNORE_INDEX}, f"labels outside 0..20 and 255: {labels}"
    assert {0, IGNORE_INDEX} <= labels and labels & set(range(1, 21)), f"expected background, objects, 255: {labels}"


def test_transform_is_applied_to_image_and_mask(trees):
    def flip_both(image, mask):
        return image.flip(-1), mask.flip(-1)

    image, mask = OxfordPetsCustom(trees["pets"])[0]
    flipped_image, flipped_mask = OxfordPetsCustom(trees["pets"], transforms=flip_both)[0]
    assert torch.equal(flipped_mask, mask.flip(-1)) and torch.equal(flipped_image, image.flip(-1))


@pytest.mark.parametrize("name", KINDS)
def test_unknown_split_is_rejected(trees, name):
    with pytest.raises(ValueError, match="split"):
        KINDS[name][0](trees[name], split="test")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("pets", ["oxford-iiit-pet/images/", "annotations/trimaps/", "trainval.txt", "https://www.robots.ox.ac.uk/~vgg/data/pets/", "--download"]),
        ("cityscapes", ["leftImg8bit/train/", "_gtFine_labelTrainIds.png", "https://www.cityscapes-dataset.com/", "no automatic download"]),
        ("voc", ["VOCdevkit/VOC2012/JPEGImages/", "SegmentationClass/", "ImageSets/Segmentation/train.txt", "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/", "--download"]),
    ],
)  # fmt: skip
def test_missing_root_explains_layout_and_download(tmp_path, name, expected):
    with pytest.raises(FileNotFoundError) as error:
        KINDS[name][0](tmp_path / "nowhere")
    message = str(error.value)
    for text in expected:
        assert text in message, f"the missing-dataset error should mention {text!r}; it says:\n{message}"


def test_cityscapes_download_request_says_there_is_no_downloader(tmp_path):
    with pytest.raises(FileNotFoundError, match="no automatic download"):
        CityscapesCustom(tmp_path, download=True)


@pytest.mark.parametrize("name", KINDS)
def test_corrupt_image_error_names_the_file(trees, name, tmp_path):
    root = shutil.copytree(trees[name], tmp_path / "copy")
    dataset = KINDS[name][0](root)
    broken = dataset.images[0]
    with open(broken, "wb") as file:
        file.write(b"not an image at all")
    with pytest.raises(OSError, match=re.escape(str(broken))) as error:
        dataset.load_pair(0)
    assert "cannot read" in str(error.value)
