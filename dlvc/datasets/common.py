"""What every dataset in :mod:`dlvc.datasets` shares.

A dataset item is a pair ``(image, mask)``:

- ``image``: float32 ``(3, H, W)``, ImageNet-normalised (see :mod:`dlvc.constants`);
- ``mask``: int64 ``(H, W)``, class ids in ``[0, K)`` and ``IGNORE_INDEX`` (255)
  where a pixel has no label.

Paired transforms run before that conversion, on a ``tv_tensors.Image`` (uint8,
``(3, H, W)``) and a ``tv_tensors.Mask`` (int64, ``(H, W)``), so that geometric
transforms move image and mask together (see :mod:`dlvc.datasets.transforms`).
"""

from collections import namedtuple
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as TF

from ..checks import describe
from ..constants import IMAGENET_MEAN, IMAGENET_STD

SegClass = namedtuple("SegClass", ["name", "id", "color"])
SegClass.__doc__ = "One class of a segmentation dataset: its name, its label id and an RGB colour for plots."

PairedTransform = Callable[[tv_tensors.Image, tv_tensors.Mask], tuple[tv_tensors.Image, tv_tensors.Mask]]


def to_model_input(image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Turn a uint8 image and an integer mask into what models and losses take.

    Args:
        image: uint8 ``(3, H, W)``.
        mask: integer ``(H, W)``.

    Returns:
        float32 ``(3, H, W)`` ImageNet-normalised image, int64 ``(H, W)`` mask, both
        plain tensors.
    """
    if not isinstance(image, torch.Tensor) or image.dtype != torch.uint8 or image.ndim != 3 or image.shape[0] != 3:
        raise TypeError(f"image: expected a uint8 tensor of shape (3, H, W), got {describe(image)}")
    if not isinstance(mask, torch.Tensor) or mask.ndim != 2 or mask.is_floating_point():
        raise TypeError(f"mask: expected an integer tensor of shape (H, W), got {describe(mask)}")
    if image.shape[1:] != mask.shape:
        raise ValueError(f"mask: expected the image's size {tuple(image.shape[1:])}, got {tuple(mask.shape)}")
    floats = TF.to_dtype(image.as_subclass(torch.Tensor), torch.float32, scale=True)
    normalized = TF.normalize(floats, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    return normalized, mask.as_subclass(torch.Tensor).to(torch.int64)


def apply_paired(
    transforms: PairedTransform | None, image: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Wrap ``image`` (uint8 (3, H, W)) and ``mask`` ((H, W)) as tv_tensors, transform, convert.

    The one path every dataset's ``__getitem__`` ends with.
    """
    image = tv_tensors.Image(image)
    mask = tv_tensors.Mask(mask.to(torch.int64))
    if transforms is not None:
        image, mask = transforms(image, mask)
    return to_model_input(image, mask)



class SegmentationDataset(Dataset):
    """What every dlvc dataset promises.

    A subclass defines ``__len__``, ``load_pair(index)`` (the raw uint8 ``(3, H, W)``
    image and int64 ``(H, W)`` mask) and ``classes_seg``; an item is that pair after
    ``self.transforms`` and :func:`to_model_input`.
    """

    transforms: PairedTransform | None = None

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return apply_paired(self.transforms, *self.load_pair(index))


class FileSegmentationDataset(SegmentationDataset):
    """A dataset of image files and label files, listed by a subclass in ``self.images`` and ``self.masks``."""

    images: list
    masks: list

    def __init__(self, root, split: str, transforms: PairedTransform | None, splits):
        if split not in splits:
            raise ValueError(f"split: expected one of {tuple(splits)}, got {split!r}")
        self.root = Path(root)
        self.split = split
        self.transforms = transforms

    def __len__(self) -> int:
        return len(self.images)

    def load_pair(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The raw pair: uint8 ``(3, H, W)`` image and int64 ``(H, W)`` mask of class ids."""
        return read_image(self.images[index]), self.convert_mask(read_label_map(self.masks[index]))

    def convert_mask(self, stored: torch.Tensor) -> torch.Tensor:
        """The labels as stored on disk -> the dataset's class ids; unchanged unless a subclass says otherwise."""
        return stored


def read_image(path) -> torch.Tensor:
    """Read an image file as uint8 ``(3, H, W)`` RGB; an unreadable file raises an error naming it."""
    with _naming_file(path):
        with Image.open(path) as file:
            pixels = np.array(file.convert("RGB"))
    return torch.from_numpy(pixels).permute(2, 0, 1).contiguous()  # (H, W, 3) -> (3, H, W)


def read_label_map(path) -> torch.Tensor:
    """Read a label PNG as int64 ``(H, W)``: the stored values, palette indices for palette PNGs."""
    with _naming_file(path):
        with Image.open(path) as file:
            if file.mode not in ("L", "P"):
                raise ValueError(f"expected a single-channel (mode L or P) label image, got mode {file.mode}")
            labels = np.array(file)
    return torch.from_numpy(labels).to(torch.int64)


def missing_dataset_error(name: str, root, layout: str, download: str) -> FileNotFoundError:
    """The error a dataset raises when ``root`` does not hold its files.

    Args:
        name: the dataset's name.
        root: the folder that was given.
        layout: a few lines showing the expected folders and file names under ``root``.
        download: where and how to get the files.
    """
    return FileNotFoundError(
        f"{name} not found under root={str(root)!r}. Expected this layout:\n{layout}\n{download}"
    )


@contextmanager
def _naming_file(path):
    """Re-raise any failure to read ``path`` as an OSError whose message names the file."""
    try:
        yield
    except (OSError, ValueError, SyntaxError) as error:
        raise OSError(f"cannot read {path}: {error}") from error
