"""Pet species segmentation: background, cat and dog, on Oxford-IIIT Pet (Assignment 3's notebook).

torchvision's ``OxfordIIITPet`` gives, with target types ``"segmentation"`` and
``"binary-category"``, each image's trimap (1 pet, 2 background, 3 border) and its
species (0 cat, 1 dog). :func:`species_labels` turns the two into one mask: the
pet's pixels become its species, and the unsure border band around the outline is
``IGNORE_INDEX``, so that it counts in no loss and no metric.

Splits: ``"train"`` and ``"val"`` share the official ``trainval`` list (every tenth
image is val), ``"test"`` is the official ``test`` list. The synthetic twin,
:class:`~dlvc.datasets.synthetic.SyntheticPetSpecies`, draws cats with striped fur
and standing ears and dogs with hanging ears;
``write_oxford_pets_tree(root, ..., species=True)`` writes it in the official
layout, so that this class reads it with torchvision's own loader.
"""

from pathlib import Path

import torch
from torchvision.datasets import OxfordIIITPet
from torchvision.transforms.v2 import functional as TF

from ..constants import IGNORE_INDEX
from .common import PairedTransform, SegClass, SegmentationDataset, missing_dataset_error
from .oxfordpets import DOWNLOAD, LAYOUT, TRIMAP_TO_LABEL

SPECIES_CLASSES = (
    SegClass("background", 0, (0, 0, 0)),
    SegClass("cat", 1, (255, 160, 0)),
    SegClass("dog", 2, (30, 120, 255)),
)

TRIMAP_PET, TRIMAP_BACKGROUND = 0, 1
"""Class ids of :class:`~dlvc.datasets.oxfordpets.OxfordPetsCustom`'s trimap labels (2 is the border)."""

VAL_EVERY = 10
"""Every tenth image of the official trainval list is in the val split."""

OFFICIAL_LISTS = {"train": "trainval", "val": "trainval", "test": "test"}


def species_labels(trimap: torch.Tensor, is_dog: int) -> torch.Tensor:
    """Trimap labels and a species -> species labels.

    Args:
        trimap: int64 ``(H, W)`` with 0 pet, 1 background, 2 border (and 255).
        is_dog: the binary category, 0 cat or 1 dog.

    Returns:
        int64 ``(H, W)``: 0 background, 1 cat, 2 dog, and 255 on the border and
        wherever the trimap was 255.
    """
    if is_dog not in (0, 1):
        raise ValueError(f"is_dog: expected 0 (cat) or 1 (dog), got {is_dog!r}")
    labels = torch.full_like(trimap, IGNORE_INDEX)
    labels[trimap == TRIMAP_BACKGROUND] = SPECIES_CLASSES[0].id
    labels[trimap == TRIMAP_PET] = SPECIES_CLASSES[1 + is_dog].id
    return labels


class PetSpecies(SegmentationDataset):
    """Oxford-IIIT Pet images with species masks: 0 background, 1 cat, 2 dog, 255 border.

    Args:
        root: folder holding ``oxford-iiit-pet/`` (the layout of
            :class:`~dlvc.datasets.oxfordpets.OxfordPetsCustom`).
        split: ``"train"``, ``"val"`` (every tenth image of the official trainval list)
            or ``"test"`` (the official test list).
        transforms: paired transform ``(Image, Mask) -> (Image, Mask)``, or None.
        download: fetch and unpack the dataset into ``root`` when it is missing.

    Items are float32 ``(3, H, W)`` ImageNet-normalised images and int64 ``(H, W)`` masks.
    """

    classes_seg = SPECIES_CLASSES
    num_classes = len(SPECIES_CLASSES)

    def __init__(self, root, split: str = "train", transforms: PairedTransform | None = None, download: bool = False):
        if split not in OFFICIAL_LISTS:
            raise ValueError(f"split: expected one of {tuple(OFFICIAL_LISTS)}, got {split!r}")
        base = Path(root) / "oxford-iiit-pet"
        present = (base / "images").is_dir() and (base / "annotations" / f"{OFFICIAL_LISTS[split]}.txt").is_file()
        if not download and not present:
            raise missing_dataset_error("Oxford-IIIT Pet", root, LAYOUT, DOWNLOAD)
        self.source = OxfordIIITPet(root, split=OFFICIAL_LISTS[split], target_types=["segmentation", "binary-category"], download=download)
        indices = range(len(self.source))
        if split != "test":
            indices = [index for index in indices if (index % VAL_EVERY == VAL_EVERY - 1) == (split == "val")]
        self.indices = list(indices)
        self.split = split
        self.transforms = transforms

    def __len__(self) -> int:
        return len(self.indices)

    def load_pair(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The raw pair: uint8 ``(3, H, W)`` image and int64 ``(H, W)`` species mask."""
        image, (trimap, is_dog) = self.source[self.indices[index]]
        stored = TF.pil_to_tensor(trimap)[0].to(torch.int64)
        return TF.pil_to_tensor(image.convert("RGB")), species_labels(TRIMAP_TO_LABEL[stored], is_dog)
