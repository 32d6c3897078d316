"""Paired augmentations: random transforms that keep an image and its mask aligned.

A segmentation mask labels every pixel of its image, so a geometric augmentation
(flip, crop, rotation, perspective) must move image and mask in exactly the same
way: draw the random parameters once, then apply the same operation to both.
Photometric augmentations (colour jitter) change the image only.

Every transform here is a callable ``transform(image, mask) -> (image, mask)``:

- ``image``: a ``tv_tensors.Image``, uint8, ``(3, H, W)``;
- ``mask``: a ``tv_tensors.Mask``, integer (int64 in the datasets), ``(H, W)``.

Both come back as the same types (plain tensors are wrapped on the way in). The
operations are torchvision's ``transforms.v2.functional`` (``TF`` below) and
the random parameters come from torchvision's ``get_params`` helpers, which draw
from torch's global random generator: ``torch.manual_seed`` makes a run repeatable.

Two rules hold for every geometric transform:

- the image is interpolated bilinearly, the mask with NEAREST, so that the mask
  only ever holds labels that were in it before;
- where an output pixel has no source pixel (the corners of a rotation, the
  borders of a perspective warp), the image is filled with 0 (black) and the mask
  with ``IGNORE_INDEX``, so that the loss and the metrics skip those pixels.

Sizes are ``(H, W)``; a single int ``s`` means the square ``(s, s)``, so every
item of a batch comes out the same size (unlike ``torchvision``'s ``Resize``,
where an int sets the shorter side).

Datasets apply a transform through :func:`dlvc.datasets.common.apply_paired`.
"""

from collections.abc import Sequence

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2 as T
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from ..checks import describe
from ..constants import IGNORE_INDEX
from .common import PairedTransform

IMAGE_FILL = 0
"""Value of image pixels that have no source pixel (black)."""

__all__ = [
    "PairedColorJitter",
    "PairedCompose",
    "PairedRandomHorizontalFlip",
    "PairedRandomPerspective",
    "PairedRandomResizedCrop",
    "PairedRandomRotation",
    "PairedResize",
    "eval_transforms",
    "train_transforms",
]


def _check_pair(image: torch.Tensor, mask: torch.Tensor) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
    """Check a transform's inputs and return them as ``tv_tensors``.

    Raises:
        TypeError: ``image`` is not a uint8 ``(3, H, W)`` tensor or ``mask`` not an
            integer ``(H, W)`` tensor.
        ValueError: their sizes differ.
    """
    if not isinstance(image, torch.Tensor) or image.dtype != torch.uint8 or image.ndim != 3 or image.shape[0] != 3:
        raise TypeError(f"image: expected a uint8 tensor of shape (3, H, W), got {describe(image)}")
    integer = isinstance(mask, torch.Tensor) and not (mask.is_floating_point() or mask.is_complex())
    if not integer or mask.dtype == torch.bool or mask.ndim != 2:
        raise TypeError(f"mask: expected an integer tensor of shape (H, W), got {describe(mask)}")
    if image.shape[1:] != mask.shape:
        raise ValueError(f"mask: expected the image's size {tuple(image.shape[1:])}, got {tuple(mask.shape)}")
    return tv_tensors.Image(image), tv_tensors.Mask(mask)


def _check_probability(name: str, value: float) -> float:
    """``value`` as a float, or ValueError unless it lies in [0, 1]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name}: expected a probability in [0, 1], got {value!r}")
    return float(value)


def _check_size(name: str, size: int | Sequence[int]) -> tuple[int, int]:
    """``size`` as ``(H, W)``: an int ``s`` means ``(s, s)``; both sides must be positive ints."""
    sides = (size, size) if isinstance(size, int) else size
    valid = (
        isinstance(sides, Sequence)
        and len(sides) == 2
        and all(isinstance(side, int) and not isinstance(side, bool) and side > 0 for side in sides)
    )
    if not valid:
        raise ValueError(f"{name}: expected a positive int or a pair (H, W) of positive ints, got {size!r}")
    return int(sides[0]), int(sides[1])


def _check_range(name: str, value: Sequence[float], minimum: float | None = None) -> tuple[float, float]:
    """``value`` as ``(low, high)`` with ``low <= high`` (and ``low > minimum`` if given)."""
    valid = (
        isinstance(value, Sequence)
        and len(value) == 2
        and all(isinstance(bound, (int, float)) and not isinstance(bound, bool) for bound in value)
        and value[0] <= value[1]
    )
    if not valid:
        raise ValueError(f"{name}: expected a pair (low, high) of numbers with low <= high, got {value!r}")
    if minimum is not None and value[0] <= minimum:
        raise ValueError(f"{name}: expected both bounds above {minimum}, got {value!r}")
    return float(value[0]), float(value[1])


def _check_strength(name: str, value: float, maximum: float | None = None) -> float:
    """A jitter strength: a number >= 0 (and <= ``maximum`` if given)."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not number or value < 0 or (maximum is not None and value > maximum):
        upper = f" and at most {maximum}" if maximum is not None else ""
        raise ValueError(f"{name}: expected a number at least 0{upper}, got {value!r}")
    return float(value)


class PairedCompose:
    """Apply paired transforms one after the other.

    Args:
        transforms: callables ``(image, mask) -> (image, mask)``, applied in order.
    """

    def __init__(self, transforms: Sequence[PairedTransform]):
        if isinstance(transforms, (str, bytes)) or not isinstance(transforms, Sequence):
            raise TypeError(f"transforms: expected a list of paired transforms, got {type(transforms).__name__}")
        for index, transform in enumerate(transforms):
            if not callable(transform):
                raise TypeError(
                    f"transforms[{index}]: expected a callable (image, mask) -> (image, mask), got {type(transform).__name__}"
                )
        self.transforms = list(transforms)

    def __call__(self, image: tv_tensors.Image, mask: tv_tensors.Mask) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
        """uint8 ``(3, H, W)`` image, integer ``(H, W)`` mask -> both, transformed in order."""
        image, mask = _check_pair(image, mask)
        for transform in self.transforms:
            image, mask = transform(image, mask)
        return image, mask

    def __repr__(self) -> str:
        inner = "".join(f"\n    {transform!r}," for transform in self.transforms)
        return f"{type(self).__name__}([{inner}\n])"


class PairedRandomHorizontalFlip:
    """Mirror image and mask left to right, both or neither.

    Args:
        p: probability of flipping.
    """

    def __init__(self, p: float = 0.5):
        self.p = _check_probability("p", p)

    def __call__(self, image: tv_tensors.Image, mask: tv_tensors.Mask) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
        """uint8 ``(3, H, W)`` image, integer ``(H, W)`` mask -> both, flipped with probability ``p``."""
        image, mask = _check_pair(image, mask)
        # TODO 1.11 (Assignment 1, part 5): flip `image` and `mask` together with probability `self.p`.
        # In: `image` uint8 (3, H, W), `mask` integer (H, W), as tv_tensors.
        # Out: `image, mask` both mirrored left to right, or both as they came; of the
        # same types and sizes.
        # Randomness (the graded tests replay a seed): one `torch.rand(1)` decides,
        # flipping when it is below `self.p`; draw nothing else.
        # About 3 lines; hint 1.11 in the assignment's README.
        # BEGIN SOLUTION
        if torch.rand(1) < self.p:
            image = TF.horizontal_flip(image)
            mask = TF.horizontal_flip(mask)
        # END SOLUTION
        return image, mask

    def __repr__(self) -> str:
        return f"{type(self).__name__}(p={self.p})"


class PairedColorJitter:
    """Randomly change brightness, contrast, saturation and hue of the image; the mask is untouched.

    Each factor is drawn uniformly: brightness, contrast and saturation from
    ``[max(0, 1 - s), 1 + s]`` for strength ``s`` (1 leaves the image as it is), the hue
    shift from ``[-hue, hue]`` (in turns of the colour wheel). The four adjustments are
    applied in a random order.

    Args:
        brightness: strength of the brightness change, >= 0.
        contrast: strength of the contrast change, >= 0.
        saturation: strength of the saturation change, >= 0.
        hue: largest hue shift, in [0, 0.5].
    """

    def __init__(self, brightness: float = 0.4, contrast: float = 0.4, saturation: float = 0.4, hue: float = 0.1):
        self.brightness = self._factor_range(_check_strength("brightness", brightness))
        self.contrast = self._factor_range(_check_strength("contrast", contrast))
        self.saturation = self._factor_range(_check_strength("saturation", saturation))
        hue = _check_strength("hue", hue, maximum=0.5)
        self.hue = (-hue, hue)

    @staticmethod
    def _factor_range(strength: float) -> tuple[float, float]:
        """The interval a multiplicative factor of the given strength is drawn from."""
        return max(0.0, 1.0 - strength), 1.0 + strength

    def __call__(self, image: tv_tensors.Image, mask: tv_tensors.Mask) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
        """uint8 ``(3, H, W)`` image, integer ``(H, W)`` mask -> jittered image, the same mask."""
        image, mask = _check_pair(image, mask)
        # TODO 1.12 (Assignment 1, part 5): jitter the colours of `image`; leave `mask` as it is.
        # In: `image` uint8 (3, H, W), `mask` integer (H, W), as tv_tensors.
        # Out: `image` with its brightness, contrast, saturation and hue changed by
        # factors drawn from the ranges of __init__, applied in a random order; `mask`
        # untouched. Colours change, pixels do not move.
        # Randomness (the graded tests replay a seed): draw the order and the four
        # factors in one call of torchvision's ColorJitter parameter sampler.
        # About 9 lines; hint 1.12 in the assignment's README.
        # BEGIN SOLUTION
        order, brightness, contrast, saturation, hue = T.ColorJitter.get_params(
            self.brightness, self.contrast, self.saturation, self.hue
        )
        adjustments = [
            (TF.adjust_brightness, brightness),
            (TF.adjust_contrast, contrast),
            (TF.adjust_saturation, saturation),
            (TF.adjust_hue, hue),
        ]
        for index in order.tolist():
            adjust, factor = adjustments[index]
            image = adjust(image, factor)
        # END SOLUTION
        return image, mask

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(brightness={self.brightness}, contrast={self.contrast},"
            f" saturation={self.saturation}, hue={self.hue})"
        )


class PairedRandomPerspective:
    """Warp image and mask with the same random perspective transform.

    Each corner of the image moves inwards by up to ``distortion_scale`` times half the
    image's side. The uncovered border is filled with 0 in the image and
    ``IGNORE_INDEX`` in the mask.

    Args:
        distortion_scale: how far the corners may move, in [0, 1].
        p: probability of warping.
    """

    def __init__(self, distortion_scale: float = 0.5, p: float = 0.5):
        self.distortion_scale = _check_probability("distortion_scale", distortion_scale)
        self.p = _check_probability("p", p)

    def __call__(self, image: tv_tensors.Image, mask: tv_tensors.Mask) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
        """uint8 ``(3, H, W)`` image, integer ``(H, W)`` mask -> both, warped with probability ``p``."""
        image, mask = _check_pair(image, mask)
        # TODO 1.13 (Assignment 1, part 5): warp `image` and `mask` with one random perspective.
        # In: `image` uint8 (3, H, W), `mask` integer (H, W), as tv_tensors.
        # Out: both warped by the same perspective transform (or both as they came),
        # at the same size. The image is interpolated, the mask keeps labels only
        # (no blend of two labels), and pixels with no source are `IMAGE_FILL` in the
        # image and `IGNORE_INDEX` in the mask.
        # Randomness (the graded tests replay a seed): one `torch.rand(1)` decides,
        # warping when it is below `self.p`; then one call of torchvision's
        # RandomPerspective parameter sampler draws the corners.
        # About 6 lines; hint 1.13 in the assignment's README.
        # BEGIN SOLUTION
        if torch.rand(1) < self.p:
            height, width = image.shape[-2:]
            startpoints, endpoints = T.RandomPerspective.get_params(width, height, self.distortion_scale)
            image = TF.perspective(image, startpoints, endpoints, interpolation=InterpolationMode.BILINEAR, fill=IMAGE_FILL)
            mask = TF.perspective(mask, startpoints, endpoints, interpolation=InterpolationMode.NEAREST, fill=IGNORE_INDEX)
        # END SOLUTION
        return image, mask

    def __repr__(self) -> str:
        return f"{type(self).__name__}(distortion_scale={self.distortion_scale}, p={self.p})"


class PairedRandomResizedCrop:
    """Crop the same random region of image and mask and resize it to ``size``.

    The region covers a random fraction ``scale`` of the image's area and has a random
    aspect ratio (width / height) in ``ratio``.

    Args:
        size: output ``(H, W)``, or an int for a square.
        scale: ``(low, high)``, the range of the region's area as a fraction of the image's.
        ratio: ``(low, high)``, the range of the region's aspect ratio.
    """

    def __init__(
        self,
        size: int | Sequence[int],
        scale: Sequence[float] = (0.5, 1.0),
        ratio: Sequence[float] = (3 / 4, 4 / 3),
    ):
        self.size = _check_size("size", size)
        self.scale = _check_range("scale", scale, minimum=0.0)
        if self.scale[1] > 1.0:
            raise ValueError(f"scale: expected fractions of the image's area, at most 1, got {scale!r}")
        self.ratio = _check_range("ratio", ratio, minimum=0.0)

    def __call__(self, image: tv_tensors.Image, mask: tv_tensors.Mask) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
        """uint8 ``(3, H, W)`` image, integer ``(H, W)`` mask -> both cropped, of size ``size``."""
        image, mask = _check_pair(image, mask)
        # TODO 1.14 (Assignment 1, part 5): crop one random region of `image` and `mask` and resize it.
        # In: `image` uint8 (3, H, W), `mask` integer (H, W), as tv_tensors.
        # Out: the same region of both, resized to `self.size`: the image interpolated
        # (and antialiased), the mask keeping labels only. The region lies inside the
        # image, so nothing needs filling.
        # Randomness (the graded tests replay a seed): one call of torchvision's
        # RandomResizedCrop parameter sampler draws the region.
        # About 3 lines; hint 1.14 in the assignment's README.
        # BEGIN SOLUTION
        top, left, height, width = T.RandomResizedCrop.get_params(image, list(self.scale), list(self.ratio))
        image = TF.resized_crop(
            image, top, left, height, width, size=list(self.size), interpolation=InterpolationMode.BILINEAR, antialias=True
        )
        mask = TF.resized_crop(mask, top, left, height, width, size=list(self.size), interpolation=InterpolationMode.NEAREST)
        # END SOLUTION
        return image, mask

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size={self.size}, scale={self.scale}, ratio={self.ratio})"


class PairedRandomRotation:
    """Rotate image and mask about their centre by the same random angle.

    The output keeps the input's size; the corners that the rotation uncovers are
    filled with 0 in the image and ``IGNORE_INDEX`` in the mask.

    Args:
        degrees: a number ``d`` >= 0 draws the angle from ``[-d, d]``; a pair
            ``(low, high)`` draws it from ``[low, high]``. Positive angles turn
            counter-clockwise.
    """

    def __init__(self, degrees: float | Sequence[float]):
        if isinstance(degrees, (int, float)) and not isinstance(degrees, bool):
            if degrees < 0:
                raise ValueError(f"degrees: expected a number at least 0 or a pair (low, high), got {degrees!r}")
            degrees = (-degrees, degrees)
        self.degrees = _check_range("degrees", degrees)

    def __call__(self, image: tv_tensors.Image, mask: tv_tensors.Mask) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
        """uint8 ``(3, H, W)`` image, integer ``(H, W)`` mask -> both rotated, same size."""
        image, mask = _check_pair(image, mask)
        # TODO 1.15 (Assignment 1, part 5): rotate `image` and `mask` by one random angle.
        # In: `image` uint8 (3, H, W), `mask` integer (H, W), as tv_tensors.
        # Out: both rotated about their centre by the same angle, counter-clockwise for
        # positive angles, at the same size; the image interpolated, the mask keeping
        # labels only; uncovered corners `IMAGE_FILL` in the image, `IGNORE_INDEX` in
        # the mask.
        # Randomness (the graded tests replay a seed): one call of torchvision's
        # RandomRotation parameter sampler draws the angle.
        # About 3 lines; hint 1.15 in the assignment's README.
        # BEGIN SOLUTION
        angle = T.RandomRotation.get_params(list(self.degrees))
        image = TF.rotate(image, angle, interpolation=InterpolationMode.BILINEAR, fill=IMAGE_FILL)
        mask = TF.rotate(mask, angle, interpolation=InterpolationMode.NEAREST, fill=IGNORE_INDEX)
        # END SOLUTION
        return image, mask

    def __repr__(self) -> str:
        return f"{type(self).__name__}(degrees={self.degrees})"


class PairedResize:
    """Resize image (bilinear, antialiased) and mask (nearest) to ``size``; nothing random.

    Args:
        size: output ``(H, W)``, or an int for a square.
    """

    def __init__(self, size: int | Sequence[int]):
        self.size = _check_size("size", size)

    def __call__(self, image: tv_tensors.Image, mask: tv_tensors.Mask) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
        """uint8 ``(3, H, W)`` image, integer ``(H, W)`` mask -> both of size ``size``."""
        image, mask = _check_pair(image, mask)
        image = TF.resize(image, list(self.size), interpolation=InterpolationMode.BILINEAR, antialias=True)
        mask = TF.resize(mask, list(self.size), interpolation=InterpolationMode.NEAREST)
        return image, mask

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size={self.size})"


def train_transforms(image_size: int | Sequence[int]) -> PairedCompose:
    """The training augmentation: random resized crop to ``image_size``, flip, small
    rotation, mild perspective, colour jitter.

    Args:
        image_size: output ``(H, W)``, or an int for a square.
    """
    size = _check_size("image_size", image_size)
    return PairedCompose(
        [
            PairedRandomResizedCrop(size),
            PairedRandomHorizontalFlip(p=0.5),
            PairedRandomRotation(degrees=10),
            PairedRandomPerspective(distortion_scale=0.2, p=0.5),
            PairedColorJitter(),
        ]
    )


def eval_transforms(image_size: int | Sequence[int]) -> PairedCompose:
    """The evaluation transform: resize to ``image_size``, nothing random.

    Args:
        image_size: output ``(H, W)``, or an int for a square.
    """
    return PairedCompose([PairedResize(_check_size("image_size", image_size))])

