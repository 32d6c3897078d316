"""Synthetic datasets: procedural images with the real datasets' label conventions.

They are the kit's embedded default: everything runs offline, on a CPU, in minutes.

- :class:`SyntheticPets` draws one pet per image in the Oxford-IIIT Pet convention
  (0 pet, 1 background, 2 border). A pet is an irregular body with a head, ears,
  legs and a tail, in a random pose, size and place; the border class is a thin
  band (2 pixels) straddling its outline, like the trimaps' unsure edge. Pets and
  backgrounds draw their colours from the same range, so a per-pixel colour
  classifier cannot tell them apart; what tells them apart is texture (the
  background is grainy and cluttered with shapes, the fur smooth and shaded) and
  shape, which is what a convolutional network learns.
- :class:`SyntheticCity` draws street scenes with the 19 Cityscapes train ids and
  the ego vehicle's bonnet marked ``IGNORE_INDEX``, as in Cityscapes.
- :class:`SyntheticVOC` draws one or two objects of the 20 Pascal VOC classes on a
  background, each outlined by a band of ``IGNORE_INDEX``, as in VOC's masks.

Every sample depends only on ``(seed, split, index)``, so a dataset is the same in
every process and the train and val splits differ.

The ``write_*_tree`` functions write these samples in the real datasets' on-disk
layouts, so that :class:`~dlvc.datasets.oxfordpets.OxfordPetsCustom`,
:class:`~dlvc.datasets.cityscapes.CityscapesCustom` and
:class:`~dlvc.datasets.voc.VOCSegmentation` can load them with ``download=False``.
"""

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..constants import IGNORE_INDEX
from .cityscapes import CITYSCAPES_CLASSES
from .common import PairedTransform, SegmentationDataset
from .oxfordpets import PETS_CLASSES
from .species import SPECIES_CLASSES, species_labels
from .voc import VOC_CLASSES, voc_palette

SPLITS = ("train", "val")
DEFAULT_NUM_SAMPLES = {"train": 1000, "val": 200, "test": 200}

PET, BACKGROUND, BORDER = 0, 1, 2
SPECIES = ("cat", "dog")
BODY_LENGTHS = {None: (0.16, 0.27), "cat": (0.15, 0.22), "dog": (0.20, 0.28)}
"""Range of a pet's body length, as a share of the image's side, by species."""
"""The species a synthetic pet may be drawn as, in the order of Oxford-IIIT Pet's binary category (0 cat, 1 dog)."""
MIN_CONTRAST = 70.0
"""Least RGB distance between a pet's fur colour and its background's base colours."""


# ----------------------------------------------------------------------------------
# Drawing primitives on a pixel grid. `ys`, `xs` are (H, W) float pixel coordinates.
# ----------------------------------------------------------------------------------


def _check_square_size(image_size) -> int:
    """``image_size`` if it is an int of at least 16, else ValueError."""
    if not isinstance(image_size, int) or image_size < 16:
        raise ValueError(f"image_size: expected an int of at least 16, got {image_size!r}")
    return image_size


def _check_street_size(image_size) -> tuple[int, int]:
    """``image_size`` as ``(H, W)`` if both are ints of at least 16, else ValueError."""
    if not (isinstance(image_size, (tuple, list)) and len(image_size) == 2):
        raise ValueError(f"image_size: expected (H, W), got {image_size!r}")
    height, width = (_check_square_size(side) for side in image_size)
    return height, width


def _grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(H, W) row and column coordinates of every pixel centre."""
    return np.mgrid[0:height, 0:width].astype(np.float32)


def _capsule(ys, xs, start, end, radius) -> np.ndarray:
    """(H, W) bool: pixels within ``radius`` of the segment from ``start`` to ``end`` ((y, x) pairs)."""
    start, end = np.asarray(start, np.float32), np.asarray(end, np.float32)
    direction = end - start
    length2 = max(float(direction @ direction), 1e-6)
    t = ((ys - start[0]) * direction[0] + (xs - start[1]) * direction[1]) / length2
    t = np.clip(t, 0.0, 1.0)
    dy, dx = ys - (start[0] + t * direction[0]), xs - (start[1] + t * direction[1])
    return dy * dy + dx * dx <= radius * radius


def _wobbly_ellipse(rng, ys, xs, centre, radii, angle, wobble) -> np.ndarray:
    """(H, W) bool: an ellipse whose radius varies with the angle by up to ``wobble`` (a fraction)."""
    cos, sin = np.cos(angle), np.sin(angle)
    u = ((xs - centre[1]) * cos + (ys - centre[0]) * sin) / radii[0]
    v = (-(xs - centre[1]) * sin + (ys - centre[0]) * cos) / radii[1]
    radius2 = u * u + v * v
    direction = (u + 1j * v) / np.sqrt(np.maximum(radius2, 1e-12))  # e^(i phi), phi the polar angle
    edge = np.ones_like(u)
    for frequency in (2, 3, 5):
        phase = np.exp(1j * rng.uniform(0, 2 * np.pi))
        edge += wobble * rng.uniform(-1, 1) * (direction**frequency * phase).real  # cos(k phi + phase)
    return radius2 <= edge * edge


def _dilate(mask: np.ndarray) -> np.ndarray:
    """(H, W) bool -> (H, W) bool grown by one pixel (3x3 square)."""
    padded = np.pad(mask, 1)
    height, width = mask.shape
    out = np.zeros_like(mask)
    for dy in range(3):
        for dx in range(3):
            out |= padded[dy : dy + height, dx : dx + width]
    return out


def _erode(mask: np.ndarray) -> np.ndarray:
    """(H, W) bool -> (H, W) bool shrunk by one pixel (3x3 square); outside the image counts as inside."""
    return ~_dilate(~mask)


def _smooth_noise(rng, height: int, width: int, cells: int, channels: int = 1) -> np.ndarray:
    """(H, W, channels) float noise in [0, 1], smooth at the scale of ``cells`` cells per side."""
    coarse = torch.from_numpy(rng.random((1, channels, cells + 1, cells + 1), dtype=np.float32))
    fine = torch.nn.functional.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=True)
    return fine[0].permute(1, 2, 0).clamp(0, 1).numpy()  # (1, C, H, W) -> (H, W, C)


def _random_colour(rng, size: int = 1) -> np.ndarray:
    """(size, 3) RGB colours in [0, 255], the same range for pets and backgrounds."""
    return rng.uniform(25, 230, size=(size, 3)).astype(np.float32)


def _finish(rng, canvas: np.ndarray, noise: float) -> np.ndarray:
    """Photometric jitter (contrast, brightness, sensor noise) on (H, W, 3) floats -> uint8 (3, H, W)."""
    contrast = rng.uniform(0.8, 1.2)
    brightness = rng.uniform(-20, 20)
    canvas = (canvas - 128.0) * contrast + 128.0 + brightness
    canvas = canvas + rng.normal(0.0, noise, size=canvas.shape)
    image = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
    return image.transpose(2, 0, 1)  # (H, W, 3) -> (3, H, W)


# ----------------------------------------------------------------------------------
# Pets
# ----------------------------------------------------------------------------------


def _pet_silhouette(rng, ys, xs, size: int, species: str | None = None) -> np.ndarray:
    """(H, W) bool: a body with a head, two ears, four legs and a tail in a random pose.

    A dog is larger and its ears hang; a cat is smaller and its ears stand up, as do
    those of a pet of no given species.
    """
    body_length = rng.uniform(*BODY_LENGTHS[species]) * size
    body_width = body_length * rng.uniform(0.5, 0.8)
    centre = rng.uniform(0.3, 0.7, size=2) * size
    angle = rng.uniform(0, 2 * np.pi)
    axis = np.array([np.sin(angle), np.cos(angle)])  # (y, x) along the body
    side = np.array([axis[1], -axis[0]])  # (y, x) across the body
    shape = _wobbly_ellipse(rng, ys, xs, centre, (body_length, body_width), angle, wobble=0.12)

    head_radius = body_width * rng.uniform(0.7, 1.0)
    head_centre = centre + axis * (body_length + head_radius * 0.4) + side * rng.uniform(-0.4, 0.4) * body_width
    shape |= _wobbly_ellipse(rng, ys, xs, head_centre, (head_radius, head_radius * 0.9), angle, wobble=0.08)
    for ear_side in (-1, 1):
        base = head_centre + side * ear_side * head_radius * 0.6
        if species == "dog":  # broad ears that hang back along the head
            tip = base + (side * ear_side * 0.6 - axis * 0.8) * head_radius * rng.uniform(1.0, 1.4)
            shape |= _capsule(ys, xs, base, tip, head_radius * rng.uniform(0.35, 0.45))
        else:  # pointed ears that stand up
            tip = base + (axis * 0.7 + side * ear_side * 0.5) * head_radius * rng.uniform(0.8, 1.4)
            shape |= _capsule(ys, xs, base, tip, head_radius * rng.uniform(0.25, 0.35))

    leg_radius = max(1.2, body_width * rng.uniform(0.18, 0.26))
    for along in (-0.6, 0.6):
        for leg_side in (-1, 1):
            base = centre + axis * along * body_length + side * leg_side * body_width * 0.6
            swing = rng.uniform(-0.6, 0.6)
            tip = base + (side * leg_side + axis * swing) * body_width * rng.uniform(0.9, 1.6)
            shape |= _capsule(ys, xs, base, tip, leg_radius)

    tail_base = centre - axis * body_length * 0.9
    tail_tip = tail_base - (axis + side * rng.uniform(-1, 1)) * body_length * rng.uniform(0.5, 1.0)
    shape |= _capsule(ys, xs, tail_base, tail_tip, leg_radius * 0.8)
    return shape


def _cluttered_background(rng, ys, xs, size: int, colours: np.ndarray) -> np.ndarray:
    """(H, W, 3) float: a grainy field blending three ``colours`` (3, 3), cluttered with rectangles, bars and discs."""
    height, width = ys.shape
    weights = _smooth_noise(rng, height, width, cells=3, channels=3) + 0.05
    weights = weights / weights.sum(axis=2, keepdims=True)
    canvas = weights @ colours  # (H, W, 3) @ (3, 3) -> (H, W, 3)
    for _ in range(rng.integers(3, 8)):
        kind = rng.integers(3)
        centre = rng.uniform(0, size, size=2)
        extent = rng.uniform(0.05, 0.25, size=2) * size
        if kind == 0:
            region = (np.abs(ys - centre[0]) <= extent[0]) & (np.abs(xs - centre[1]) <= extent[1])
        elif kind == 1:
            end = centre + rng.uniform(-0.5, 0.5, size=2) * size
            region = _capsule(ys, xs, centre, end, rng.uniform(1.0, 3.0))
        else:
            region = (ys - centre[0]) ** 2 + (xs - centre[1]) ** 2 <= extent[0] ** 2
        canvas[region] = _random_colour(rng)
    grain = rng.normal(0.0, 1.0, size=(height, width, 1)) * rng.uniform(18, 30)
    return canvas + grain


def _pet_fur(rng, ys, xs, size: int, avoid: np.ndarray, species: str | None = None) -> np.ndarray:
    """(H, W, 3) float: a smooth fur colour, shaded, with soft patches; a dog's warm, a cat's cool and striped.

    The fur colour keeps a distance of ``MIN_CONTRAST`` from each of the ``avoid``
    colours (N, 3), so that the outline stays visible against the background.
    """
    height, width = ys.shape
    candidates = _random_colour(rng, 16)
    if species is not None:  # a dog's fur is warm (red >= green >= blue), a cat's cool (blue >= green >= red)
        candidates = np.sort(candidates, axis=1)[:, ::-1] if species == "dog" else np.sort(candidates, axis=1)
    distances = np.linalg.norm(candidates[:, None] - avoid[None], axis=2).min(axis=1)  # (16, N, 3) -> (16,)
    far_enough = distances >= MIN_CONTRAST
    base = candidates[np.argmax(far_enough) if far_enough.any() else np.argmax(distances)]
    patch = _random_colour(rng)[0]
    patches = _smooth_noise(rng, height, width, cells=4) > rng.uniform(0.55, 0.8)
    fur = np.where(patches, 0.6 * patch + 0.4 * base, base)
    if species == "cat":  # tabby stripes, a few pixels apart
        across = rng.uniform(0, np.pi)
        period = rng.uniform(4.0, 7.0)
        stripes = np.sin(2 * np.pi * (ys * np.sin(across) + xs * np.cos(across)) / period) > 0.2
        fur = np.where(stripes[..., None], 0.5 * fur, fur)
    direction = rng.uniform(-1, 1, size=2)
    shading = 1.0 + 0.25 * ((ys - size / 2) * direction[0] + (xs - size / 2) * direction[1]) / size
    return fur * shading[..., None]


def generate_pet(rng: np.random.Generator, image_size: int = 64, species: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Draw one synthetic pet.

    Args:
        rng: the random generator that decides everything.
        image_size: side of the square image in pixels.
        species: ``"cat"`` (striped fur, ears that stand up), ``"dog"`` (hanging
            ears, no stripes), or None for a pet of neither kind (the ears stand up,
            no stripes).

    Returns:
        uint8 ``(3, image_size, image_size)`` image and uint8 ``(image_size, image_size)``
        trimap labels (0 pet, 1 background, 2 border).
    """
    size = _check_square_size(image_size)
    if species not in (None, *SPECIES):
        raise ValueError(f"species: expected None or one of {SPECIES}, got {species!r}")
    ys, xs = _grid(size, size)
    shape = _pet_silhouette(rng, ys, xs, size, species)
    background_colours = _random_colour(rng, 3)
    canvas = _cluttered_background(rng, ys, xs, size, background_colours)
    canvas[shape] = _pet_fur(rng, ys, xs, size, background_colours, species)[shape]
    labels = np.full((size, size), BACKGROUND, dtype=np.uint8)
    labels[_dilate(shape)] = BORDER
    labels[_erode(shape)] = PET
    return _finish(rng, canvas, noise=6.0), labels


# ----------------------------------------------------------------------------------
# Street scenes (Cityscapes train ids) and VOC objects
# ----------------------------------------------------------------------------------

ROAD, SIDEWALK, BUILDING, WALL, FENCE, POLE, TRAFFIC_LIGHT, TRAFFIC_SIGN, VEGETATION, TERRAIN, SKY = range(11)
PERSON, RIDER, CAR, TRUCK, BUS, TRAIN, MOTORCYCLE, BICYCLE = range(11, 19)
CITY_COLOURS = np.array([label.color for label in CITYSCAPES_CLASSES], dtype=np.float32)


def _paint(rng, canvas, labels, region, class_id) -> None:
    """Fill ``region`` of ``canvas`` with a jittered Cityscapes colour of ``class_id`` and label it."""
    canvas[region] = CITY_COLOURS[class_id] * rng.uniform(0.75, 1.15) + rng.uniform(-15, 15, size=3)
    labels[region] = class_id


def generate_street(rng: np.random.Generator, image_size: tuple[int, int] = (64, 128)) -> tuple[np.ndarray, np.ndarray]:
    """Draw one synthetic street scene.

    Args:
        rng: the random generator that decides everything.
        image_size: ``(H, W)`` of the image in pixels.

    Returns:
        uint8 ``(3, H, W)`` image and uint8 ``(H, W)`` labels: Cityscapes train ids,
        and ``IGNORE_INDEX`` on the ego vehicle's bonnet at the bottom.
    """
    height, width = _check_street_size(image_size)
    ys, xs = _grid(height, width)
    canvas = np.zeros((height, width, 3), dtype=np.float32)
    labels = np.zeros((height, width), dtype=np.uint8)
    horizon = rng.uniform(0.35, 0.5) * height
    _paint(rng, canvas, labels, ys >= 0, SKY)

    left = 0.0
    while left < width:
        right = left + rng.uniform(0.1, 0.3) * width
        top = horizon - rng.uniform(0.1, 0.45) * height
        _paint(rng, canvas, labels, (xs >= left) & (xs < right) & (ys >= top), BUILDING)
        left = right
    for _ in range(rng.integers(1, 4)):
        centre = (horizon - rng.uniform(0.05, 0.25) * height, rng.uniform(0, width))
        radii = (rng.uniform(0.06, 0.15) * width, rng.uniform(0.08, 0.2) * height)
        _paint(rng, canvas, labels, _wobbly_ellipse(rng, ys, xs, centre, radii, angle=0.0, wobble=0.15), VEGETATION)
    low_class = rng.choice([WALL, FENCE, TERRAIN])
    low_top = horizon - rng.uniform(0.03, 0.08) * height
    _paint(rng, canvas, labels, (ys >= low_top) & (xs < rng.uniform(0.2, 0.6) * width), low_class)

    ground = ys >= horizon
    _paint(rng, canvas, labels, ground, SIDEWALK)
    spread = (ys - horizon) * rng.uniform(1.0, 2.0) + rng.uniform(0.05, 0.15) * width
    road = ground & (np.abs(xs - width / 2 - rng.uniform(-0.1, 0.1) * width) <= spread)
    _paint(rng, canvas, labels, road, ROAD)

    for _ in range(rng.integers(1, 5)):
        vehicle = rng.choice([CAR, CAR, CAR, TRUCK, BUS, TRAIN])
        bottom = horizon + rng.uniform(0.05, 0.4) * height
        scale = (bottom - horizon) / height + 0.1
        vehicle_height = scale * height * rng.uniform(0.5, 0.8)
        vehicle_width = vehicle_height * rng.uniform(1.3, 2.5)
        centre_x = rng.uniform(0.2, 0.8) * width
        box = (ys <= bottom) & (ys >= bottom - vehicle_height) & (np.abs(xs - centre_x) <= vehicle_width / 2)
        _paint(rng, canvas, labels, box, vehicle)
    for _ in range(rng.integers(1, 4)):
        foot = np.array([horizon + rng.uniform(0.1, 0.45) * height, rng.uniform(0.02, 0.98) * width])
        body_height = (foot[0] - horizon + 0.1 * height) * rng.uniform(0.6, 0.9)
        head = foot - np.array([body_height, 0.0])
        on_wheels = rng.random() < 0.3
        if on_wheels:
            wheels = _capsule(ys, xs, foot, foot + (0, body_height * 0.5), radius=1.5)
            _paint(rng, canvas, labels, wheels, rng.choice([BICYCLE, MOTORCYCLE]))
        body = _capsule(ys, xs, foot, head, radius=max(1.0, body_height / 7))
        _paint(rng, canvas, labels, body, RIDER if on_wheels else PERSON)
    for _ in range(rng.integers(1, 3)):
        x = rng.uniform(0, width)
        pole_top = horizon - rng.uniform(0.15, 0.35) * height
        pole = (np.abs(xs - x) <= 0.7) & (ys >= pole_top) & (ys <= horizon + 0.1 * height)
        _paint(rng, canvas, labels, pole, POLE)
        sign = (np.abs(xs - x) <= 2.5) & (ys >= pole_top) & (ys <= pole_top + 4)
        _paint(rng, canvas, labels, sign, rng.choice([TRAFFIC_LIGHT, TRAFFIC_SIGN]))

    bonnet = ((xs - width / 2) / (0.7 * width)) ** 2 + ((ys - 1.25 * height) / (0.35 * height)) ** 2 <= 1
    canvas[bonnet] = rng.uniform(20, 80)
    labels[bonnet] = IGNORE_INDEX
    canvas += _smooth_noise(rng, height, width, cells=6) * 30 - 15
    return _finish(rng, canvas, noise=4.0), labels


def generate_voc_scene(rng: np.random.Generator, image_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Draw one or two objects of random VOC classes on a cluttered background.

    Args:
        rng: the random generator that decides everything.
        image_size: side of the square image in pixels.

    Returns:
        uint8 ``(3, image_size, image_size)`` image and uint8 ``(image_size, image_size)``
        labels: 0 background, 1..20 the objects, ``IGNORE_INDEX`` on a band along each outline.
    """
    size = _check_square_size(image_size)
    ys, xs = _grid(size, size)
    background_colours = _random_colour(rng, 3)
    canvas = _cluttered_background(rng, ys, xs, size, background_colours)
    labels = np.zeros((size, size), dtype=np.uint8)
    for _ in range(rng.integers(1, 3)):
        shape = _pet_silhouette(rng, ys, xs, size)
        canvas[shape] = _pet_fur(rng, ys, xs, size, background_colours)[shape]
        labels[_dilate(shape)] = IGNORE_INDEX
        labels[_erode(shape)] = rng.integers(1, len(VOC_CLASSES))
    return _finish(rng, canvas, noise=6.0), labels


# ----------------------------------------------------------------------------------
# Datasets
# ----------------------------------------------------------------------------------


class _SyntheticSegmentation(SegmentationDataset):
    """Shared machinery: seeding per (seed, split, index), caching, the dataset contract.

    Subclasses set ``classes_seg``, ``stream`` (keeps the kinds' random streams
    apart) and ``default_size``, and implement ``draw(rng)``.
    """

    classes_seg: tuple = ()
    stream = 0
    default_size: int | tuple[int, int] = 64
    splits = SPLITS

    def __init__(self, split: str, num_samples: int | None, image_size, seed: int, transforms: PairedTransform | None):
        if split not in self.splits:
            raise ValueError(f"split: expected one of {self.splits}, got {split!r}")
        if num_samples is None:
            num_samples = DEFAULT_NUM_SAMPLES[split]
        if not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"num_samples: expected a positive int or None, got {num_samples!r}")
        if not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed: expected a non-negative int, got {seed!r}")
        self.split = split
        self.num_samples = num_samples
        self.image_size = image_size
        self.seed = seed
        self.transforms = transforms
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    @property
    def num_classes(self) -> int:
        return len(self.classes_seg)

    def draw(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """One sample: uint8 (3, H, W) image and uint8 (H, W) labels."""
        raise NotImplementedError(f"{type(self).__name__} must implement draw(rng)")

    def __len__(self) -> int:
        return self.num_samples

    def load_pair(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The raw pair: uint8 ``(3, H, W)`` image and int64 ``(H, W)`` mask."""
        if not -self.num_samples <= index < self.num_samples:
            raise IndexError(f"index: expected an int in [0, {self.num_samples}), got {index}")
        index %= self.num_samples
        if index not in self._cache:
            rng = np.random.default_rng([self.seed, self.stream, self.splits.index(self.split), index])
            self._cache[index] = self.draw(rng)
        image, labels = self._cache[index]
        return torch.from_numpy(image.copy()), torch.from_numpy(labels).to(torch.int64)


class SyntheticPets(_SyntheticSegmentation):
    """Procedural pets with Oxford-IIIT Pet labels: 0 pet, 1 background, 2 border.

    Args:
        split: ``"train"`` or ``"val"``; the two draw different samples.
        num_samples: number of samples (default 1000 for train, 200 for val).
        image_size: side of the square images in pixels.
        seed: picks the whole dataset; sample ``i`` depends on ``(seed, split, i)`` only.
        transforms: paired transform ``(Image, Mask) -> (Image, Mask)``, or None.
    """

    classes_seg = PETS_CLASSES
    stream = 1

    def __init__(self, split="train", num_samples=None, image_size=64, seed=0, transforms=None):
        super().__init__(split, num_samples, _check_square_size(image_size), seed, transforms)

    def draw(self, rng):
        return generate_pet(rng, self.image_size)


class SyntheticPetSpecies(_SyntheticSegmentation):
    """Procedural cats and dogs with the species labels of :mod:`~dlvc.datasets.species`: 0 background, 1 cat, 2 dog.

    The pets of :class:`SyntheticPets`, each drawn as a cat (striped fur, ears that
    stand up) or a dog (hanging ears), half and half at random; the border band
    around the outline is ``IGNORE_INDEX``.

    Args:
        split: ``"train"``, ``"val"`` or ``"test"``; the three draw different samples.
        num_samples: number of samples (default 1000 for train, 200 for val and test).
        image_size: side of the square images in pixels.
        seed: picks the whole dataset; sample ``i`` depends on ``(seed, split, i)`` only.
        transforms: paired transform ``(Image, Mask) -> (Image, Mask)``, or None.
    """

    classes_seg = SPECIES_CLASSES
    stream = 4
    splits = ("train", "val", "test")

    def __init__(self, split="train", num_samples=None, image_size=64, seed=0, transforms=None):
        super().__init__(split, num_samples, _check_square_size(image_size), seed, transforms)

    def draw(self, rng):
        is_dog = int(rng.integers(2))
        image, trimap = generate_pet(rng, self.image_size, SPECIES[is_dog])
        labels = species_labels(torch.from_numpy(trimap).to(torch.int64), is_dog)
        return image, labels.to(torch.uint8).numpy()


class SyntheticCity(_SyntheticSegmentation):
    """Procedural street scenes with Cityscapes labels: 19 train ids, 255 on the ego vehicle.

    Args:
        split: ``"train"`` or ``"val"``; the two draw different samples.
        num_samples: number of samples (default 1000 for train, 200 for val).
        image_size: ``(H, W)`` of the images in pixels.
        seed: picks the whole dataset; sample ``i`` depends on ``(seed, split, i)`` only.
        transforms: paired transform ``(Image, Mask) -> (Image, Mask)``, or None.
    """

    classes_seg = CITYSCAPES_CLASSES
    stream = 2

    def __init__(self, split="train", num_samples=None, image_size=(64, 128), seed=0, transforms=None):
        super().__init__(split, num_samples, _check_street_size(image_size), seed, transforms)

    def draw(self, rng):
        return generate_street(rng, self.image_size)


class SyntheticVOC(_SyntheticSegmentation):
    """Procedural objects with Pascal VOC labels: 0 background, 1..20 objects, 255 outlines.

    Args: as :class:`SyntheticPets`.
    """

    classes_seg = VOC_CLASSES
    stream = 3

    def __init__(self, split="train", num_samples=None, image_size=64, seed=0, transforms=None):
        super().__init__(split, num_samples, _check_square_size(image_size), seed, transforms)

    def draw(self, rng):
        return generate_voc_scene(rng, self.image_size)


# ----------------------------------------------------------------------------------
# Writers of the real on-disk layouts
# ----------------------------------------------------------------------------------

PET_BREEDS = (("Abyssinian", 1, 1, 1), ("american_bulldog", 2, 2, 1), ("Bengal", 6, 1, 2), ("beagle", 5, 2, 4))
"""(breed, class id, species 1 cat / 2 dog, breed id) as in the official lists."""

TRAIN_CITIES = ("aachen", "bochum", "bremen")
VAL_CITIES = ("frankfurt", "lindau", "munster")


def _check_counts(num_train, num_val) -> None:
    for name, value in (("num_train", num_train), ("num_val", num_val)):
        if not isinstance(value, int) or value < 0:
            raise ValueError(f"{name}: expected a non-negative int, got {value!r}")


def _save(array: np.ndarray, path: Path, **options) -> None:
    """Save uint8 (3, H, W) as RGB or (H, W) as a single-channel image, creating folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = array.transpose(1, 2, 0) if array.ndim == 3 else array  # (3, H, W) -> (H, W, 3)
    Image.fromarray(np.ascontiguousarray(pixels)).save(path, **options)


def _samples(dataset_class, split: str, count: int, image_size, seed: int):
    """Yield (index, uint8 (3, H, W) image, uint8 (H, W) labels) for the first ``count`` samples of a split."""
    if count == 0:
        return
    dataset = dataset_class(split, count, image_size, seed)
    for index in range(count):
        image, mask = dataset.load_pair(index)
        yield index, image.numpy(), mask.numpy().astype(np.uint8)


def write_oxford_pets_tree(root, num_train: int, num_val: int, image_size: int = 64, seed: int = 0, species: bool = False) -> Path:
    """Write synthetic pets in the Oxford-IIIT Pet layout under ``root``.

    Writes ``oxford-iiit-pet/images/<breed>_<n>.jpg``, trimaps with 1 pet, 2
    background, 3 border in ``annotations/trimaps/<breed>_<n>.png``, and the
    ``annotations/trainval.txt`` (train) and ``test.txt`` (val; with ``species``,
    the test split) lists in the official line format, in sample order.

    Args:
        species: write :class:`SyntheticPetSpecies` samples, each listed under a breed
            of its species, so that the binary category can be seen in the image (the
            synthetic twin of :class:`~dlvc.datasets.species.PetSpecies`); without it,
            :class:`SyntheticPets` samples under breeds taken in turn.

    Returns:
        ``root`` as a Path.
    """
    _check_counts(num_train, num_val)
    root = Path(root)
    base = root / "oxford-iiit-pet"
    number = 0
    held_out = "test" if species else "val"  # the species twin's test list holds its test split
    for split, count, listed in (("train", num_train, "trainval"), (held_out, num_val, "test")):
        lines = []
        for index, image, labels in _samples(SyntheticPetSpecies if species else SyntheticPets, split, count, image_size, seed):
            number += 1
            if species:
                pet = (labels == SPECIES_CLASSES[1].id) | (labels == SPECIES_CLASSES[2].id)
                dog = bool((labels == SPECIES_CLASSES[2].id).any())
                breeds = [entry for entry in PET_BREEDS if entry[2] == 1 + dog]
                breed, class_id, pet_species, breed_id = breeds[index % len(breeds)]
                labels = np.where(pet, PET, np.where(labels == IGNORE_INDEX, BORDER, BACKGROUND)).astype(np.uint8)
            else:
                breed, class_id, pet_species, breed_id = PET_BREEDS[index % len(PET_BREEDS)]
            name = f"{breed}_{number}"
            _save(image, base / "images" / f"{name}.jpg", quality=95)
            _save(labels + 1, base / "annotations" / "trimaps" / f"{name}.png")
            lines.append(f"{name} {class_id} {pet_species} {breed_id}\n")
        (base / "annotations").mkdir(parents=True, exist_ok=True)
        (base / "annotations" / f"{listed}.txt").write_text("".join(lines))
    return root


def write_cityscapes_tree(root, num_train: int, num_val: int, image_size=(64, 128), seed: int = 0) -> Path:
    """Write :class:`SyntheticCity` samples in the Cityscapes layout under ``root``.

    Writes ``leftImg8bit/<split>/<city>/<city>_<seq>_000019_leftImg8bit.png`` and
    ``gtFine/<split>/<city>/<city>_<seq>_000019_gtFine_labelTrainIds.png``; sample
    ``i`` gets sequence number ``i`` and the cities take consecutive blocks in
    alphabetical order, so sorted file names follow the sample order.

    Returns:
        ``root`` as a Path.
    """
    _check_counts(num_train, num_val)
    root = Path(root)
    for split, count, cities in (("train", num_train, TRAIN_CITIES), ("val", num_val, VAL_CITIES)):
        for folder in ("leftImg8bit", "gtFine"):
            (root / folder / split).mkdir(parents=True, exist_ok=True)
        for index, image, labels in _samples(SyntheticCity, split, count, image_size, seed):
            city = cities[index * len(cities) // count]
            stem = f"{city}_{index:06d}_000019"
            _save(image, root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png")
            _save(labels, root / "gtFine" / split / city / f"{stem}_gtFine_labelTrainIds.png")
    return root


def write_voc_tree(root, num_train: int, num_val: int, image_size: int = 64, seed: int = 0) -> Path:
    """Write :class:`SyntheticVOC` samples in the Pascal VOC 2012 layout under ``root``.

    Writes ``VOCdevkit/VOC2012/JPEGImages/<id>.jpg``, palette PNG masks in
    ``SegmentationClass/<id>.png`` and the ``ImageSets/Segmentation/{train,val}.txt``
    lists, in sample order.

    Returns:
        ``root`` as a Path.
    """
    _check_counts(num_train, num_val)
    root = Path(root)
    base = root / "VOCdevkit" / "VOC2012"
    lists = base / "ImageSets" / "Segmentation"
    lists.mkdir(parents=True, exist_ok=True)
    palette = voc_palette().ravel().tolist()
    for split, count in (("train", num_train), ("val", num_val)):
        names = []
        for index, image, labels in _samples(SyntheticVOC, split, count, image_size, seed):
            name = f"2012_{split}_{index:06d}"
            _save(image, base / "JPEGImages" / f"{name}.jpg", quality=95)
            mask = Image.fromarray(labels, mode="P")
            mask.putpalette(palette)
            (base / "SegmentationClass").mkdir(parents=True, exist_ok=True)
            mask.save(base / "SegmentationClass" / f"{name}.png")
            names.append(name + "\n")
        (lists / f"{split}.txt").write_text("".join(names))
    return root
