"""The Oxford-IIIT Pet dataset for semantic segmentation (pet, background, border).

Dataset: Parkhi, Vedaldi, Zisserman and Jawahar, "Cats and Dogs", CVPR 2012;
https://www.robots.ox.ac.uk/~vgg/data/pets/. File lists, folder checks and the
download come from ``torchvision.datasets.OxfordIIITPet``; this class reads the
files itself so that it returns tensors and names any file it cannot read.

On disk a trimap holds 1 pet, 2 background, 3 border (the unsure band around the
pet's outline); this class returns 0 pet, 1 background, 2 border. Split ``"train"``
is the official ``trainval`` list, ``"val"`` the official ``test`` list.
"""

import torch
from torchvision.datasets import OxfordIIITPet

from ..constants import IGNORE_INDEX
from .common import FileSegmentationDataset, PairedTransform, SegClass, missing_dataset_error

PETS_CLASSES = (
    SegClass("pet", 0, (220, 20, 60)),
    SegClass("background", 1, (0, 0, 0)),
    SegClass("border", 2, (255, 255, 255)),
)

OFFICIAL_SPLITS = {"train": "trainval", "val": "test"}
"""dlvc split -> the split name torchvision uses for the official lists."""

TRIMAP_TO_LABEL = torch.full((256,), IGNORE_INDEX, dtype=torch.int64)
TRIMAP_TO_LABEL[1:4] = torch.tensor([0, 1, 2])
"""Lookup table: trimap value on disk -> class id; values other than 1, 2, 3 become IGNORE_INDEX."""

LAYOUT = """\
  <root>/oxford-iiit-pet/images/Abyssinian_1.jpg ...
  <root>/oxford-iiit-pet/annotations/trimaps/Abyssinian_1.png ...   (1 pet, 2 background, 3 border)
  <root>/oxford-iiit-pet/annotations/trainval.txt                   (lines 'Abyssinian_1 1 1 1')
  <root>/oxford-iiit-pet/annotations/test.txt"""

DOWNLOAD = (
    "Download images.tar.gz and annotations.tar.gz from https://www.robots.ox.ac.uk/~vgg/data/pets/ "
    "and unpack both into <root>/oxford-iiit-pet, or let the kit do it: download=True "
    "(train.py --download)."
)


class OxfordPetsCustom(FileSegmentationDataset):
    """Oxford-IIIT Pet images with their trimaps as 3-class segmentation masks.

    Args:
        root: folder holding ``oxford-iiit-pet/`` (see ``LAYOUT``).
        split: ``"train"`` (the official trainval list) or ``"val"`` (the test list).
        transforms: paired transform ``(Image, Mask) -> (Image, Mask)``, or None.
        download: fetch and unpack the dataset into ``root`` when it is missing.

    Items are float32 ``(3, H, W)`` ImageNet-normalised images and int64 ``(H, W)``
    masks with 0 pet, 1 background, 2 border.
    """

    classes_seg = PETS_CLASSES
    num_classes = len(PETS_CLASSES)

    def __init__(self, root, split: str = "train", transforms: PairedTransform | None = None, download: bool = False):
        super().__init__(root, split, transforms, OFFICIAL_SPLITS)
        base = self.root / "oxford-iiit-pet"
        present = (base / "images").is_dir() and (base / "annotations" / f"{OFFICIAL_SPLITS[split]}.txt").is_file()
        if not download and not present:
            raise missing_dataset_error("Oxford-IIIT Pet", root, LAYOUT, DOWNLOAD)
        source = OxfordIIITPet(root, split=OFFICIAL_SPLITS[split], target_types="segmentation", download=download)
        # torchvision keeps the file lists in private attributes; the version is pinned.
        self.images = list(source._images)
        self.masks = list(source._segs)

    def convert_mask(self, stored: torch.Tensor) -> torch.Tensor:
        """Trimap values 1 pet, 2 background, 3 border -> 0, 1, 2 (anything else -> ignored)."""
        return TRIMAP_TO_LABEL[stored]
