"""Storage caches: a preprocessed dataset written once, read fast in every epoch.

Decoding JPEGs and resizing them again in every epoch can cost more than the
training step itself. :func:`write_cache` stores a dataset's pairs, optionally
resized, in one of three formats, and :class:`CachedSegmentationDataset` reads
them back with the same contract as the other datasets:

- ``"png"``: one lossless PNG per image (``images/000000.png``, RGB) and per mask
  (``masks/000000.png``, grayscale); samples may differ in size.
- ``"memmap"``: two ``.npy`` files, ``images.npy`` uint8 ``(N, H, W, 3)`` and
  ``masks.npy`` uint8 ``(N, H, W)``, opened with ``np.load(mmap_mode="r")``, so that
  reading a sample is a copy out of the page cache.
- ``"hdf5"``: one ``data.h5`` holding the same two arrays as datasets chunked one
  sample per chunk, read with h5py.

Each cache folder holds a ``meta.json`` (format, count, size, classes). A cache is
written under a temporary name and renamed when complete, so an interrupted write
never looks like a cache. Masks are stored as uint8: class ids up to 254 and the
ignore label ``IGNORE_INDEX`` (255).

Shapes: N samples, H and W the height and width.
"""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..checks import describe
from .common import PairedTransform, SegClass, SegmentationDataset, read_image, read_label_map
from .transforms import PairedResize

FORMATS = ("png", "memmap", "hdf5")
META_FILENAME = "meta.json"
MEMMAP_FILES = {"images": "images.npy", "masks": "masks.npy"}
HDF5_FILENAME = "data.h5"
PNG_FOLDERS = {"images": "images", "masks": "masks"}
MASK_MAX = 255
"""Largest mask value a uint8 cache holds; 255 is the ignore label."""


def write_cache(
    dataset,
    path: str | os.PathLike,
    format: str,
    size: tuple[int, int] | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> Path:
    """Write every pair of ``dataset`` to a cache folder at ``path``.

    Args:
        dataset: has ``len()``, ``load_pair(i)`` returning a uint8 image ``(3, H, W)``
            and an integer mask ``(H, W)``, and ``classes_seg`` (``SegClass`` tuples).
        path: the cache folder to create.
        format: one of ``FORMATS``: ``"png"``, ``"memmap"`` or ``"hdf5"``.
        size: ``(H, W)`` to resize every sample to (image bilinear with antialiasing,
            mask nearest); required for ``"memmap"`` and ``"hdf5"`` when the samples'
            sizes differ.
        overwrite: replace an existing cache at ``path`` instead of refusing.
        progress: show a tqdm progress bar.

    Returns:
        The cache folder.
    """
    if format not in FORMATS:
        raise ValueError(f"format: expected one of {FORMATS}, got {format!r}")
    size = _check_size(size)
    for attribute in ("__len__", "load_pair", "classes_seg"):
        if not hasattr(dataset, attribute):
            raise TypeError(
                f"dataset: expected an object with __len__, load_pair and classes_seg, "
                f"got a {type(dataset).__name__} without {attribute}"
            )
    if len(dataset) == 0:
        raise ValueError("dataset: expected at least one sample, got an empty dataset")
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"path: {path} exists already; pass overwrite=True to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    try:
        pairs = (_prepared_pair(dataset, index, size) for index in range(len(dataset)))
        if progress:
            from tqdm import tqdm

            pairs = tqdm(pairs, total=len(dataset), desc=f"writing {format} cache", unit="sample")
        WRITERS[format](pairs, len(dataset), partial)
        meta = {
            "format": format,
            "count": len(dataset),
            "size": list(size) if size is not None else None,
            "classes": [[c.name, int(c.id), list(c.color)] for c in dataset.classes_seg],
        }
        (partial / META_FILENAME).write_text(json.dumps(meta, indent=2))
        if path.exists():
            shutil.rmtree(path)
        partial.rename(path)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return path


def _check_size(size) -> tuple[int, int] | None:
    if size is None:
        return None
    if not (isinstance(size, (tuple, list)) and len(size) == 2 and all(isinstance(s, int) and s > 0 for s in size)):
        raise ValueError(f"size: expected None or (H, W), two positive ints, got {size!r}")
    return tuple(size)


def _prepared_pair(dataset, index: int, size: tuple[int, int] | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample ``index``, checked, resized to ``size`` if given: uint8 (3, H, W) and uint8 (H, W)."""
    image, mask = dataset.load_pair(index)
    if not isinstance(image, torch.Tensor) or image.dtype != torch.uint8 or image.ndim != 3 or image.shape[0] != 3:
        raise TypeError(f"dataset: sample {index}: expected a uint8 image of shape (3, H, W), got {describe(image)}")
    if not isinstance(mask, torch.Tensor) or mask.is_floating_point() or mask.shape != image.shape[1:]:
        raise TypeError(
            f"dataset: sample {index}: expected an integer mask of shape {tuple(image.shape[1:])}, "
            f"got {describe(mask)}"
        )
    if mask.numel() and (mask.min() < 0 or mask.max() > MASK_MAX):
        raise ValueError(
            f"dataset: sample {index}: expected mask values in [0, {MASK_MAX}] to store them as uint8, "
            f"got values in [{int(mask.min())}, {int(mask.max())}]"
        )
    if size is not None and tuple(image.shape[1:]) != size:
        image, mask = PairedResize(size)(image, mask)
    return image.as_subclass(torch.Tensor), mask.as_subclass(torch.Tensor).to(torch.uint8)


def _write_png(pairs, count: int, folder: Path) -> None:
    """One RGB PNG per image in ``images/``, one grayscale PNG per mask in ``masks/``."""
    for name in PNG_FOLDERS.values():
        (folder / name).mkdir()
    for index, (image, mask) in enumerate(pairs):
        pixels = image.permute(1, 2, 0).numpy()  # (3, H, W) -> (H, W, 3)
        Image.fromarray(pixels).save(_png_path(folder, "images", index))  # uint8 (H, W, 3): RGB
        Image.fromarray(mask.numpy()).save(_png_path(folder, "masks", index))  # uint8 (H, W): grayscale


def _png_path(folder: Path, kind: str, index: int) -> Path:
    return folder / PNG_FOLDERS[kind] / f"{index:06d}.png"


def _fill_arrays(pairs, allocate):
    """Write ``pairs`` into the arrays that ``allocate(shape (H, W))`` returns, all of one size."""
    images = masks = None
    for index, (image, mask) in enumerate(pairs):
        if images is None:
            first_size = tuple(mask.shape)
            images, masks = allocate(first_size)
        elif tuple(mask.shape) != first_size:
            raise ValueError(
                f"dataset: sample {index} has size {tuple(mask.shape)} but sample 0 has {first_size}; "
                f"a memmap or hdf5 cache holds one size: pass size=(H, W) to resize every sample"
            )
        images[index] = image.permute(1, 2, 0).numpy()  # (3, H, W) -> (H, W, 3)
        masks[index] = mask.numpy()
    return images, masks


def _write_memmap(pairs, count: int, folder: Path) -> None:
    """``images.npy`` uint8 (N, H, W, 3) and ``masks.npy`` uint8 (N, H, W), filled through a memmap."""
    def allocate(size):
        def open_array(kind, shape):
            return np.lib.format.open_memmap(folder / MEMMAP_FILES[kind], mode="w+", dtype=np.uint8, shape=shape)

        return open_array("images", (count, *size, 3)), open_array("masks", (count, *size))

    images, masks = _fill_arrays(pairs, allocate)
    images.flush()
    masks.flush()


def _write_hdf5(pairs, count: int, folder: Path) -> None:
    """``data.h5`` with datasets ``images`` (N, H, W, 3) and ``masks`` (N, H, W), one sample per chunk."""
    import h5py

    with h5py.File(folder / HDF5_FILENAME, "w") as file:

        def allocate(size):
            images = file.create_dataset("images", shape=(count, *size, 3), dtype=np.uint8, chunks=(1, *size, 3))
            masks = file.create_dataset("masks", shape=(count, *size), dtype=np.uint8, chunks=(1, *size))
            return images, masks

        _fill_arrays(pairs, allocate)


WRITERS = {"png": _write_png, "memmap": _write_memmap, "hdf5": _write_hdf5}


class CachedSegmentationDataset(SegmentationDataset):
    """A cache folder written by :func:`write_cache`, read as a segmentation dataset.

    Files are opened on first access in each process, so the dataset can be handed
    to a DataLoader with worker processes (each worker opens its own HDF5 handle).

    Args:
        path: the cache folder.
        transforms: optional paired transform applied to (image, mask), as in the
            other datasets.

    Items: float32 ``(3, H, W)`` ImageNet-normalised image, int64 ``(H, W)`` mask.
    """

    def __init__(self, path: str | os.PathLike, transforms: PairedTransform | None = None):
        self.path = Path(path)
        self.transforms = transforms
        meta = _read_meta(self.path)
        self.format = meta["format"]
        self.size = tuple(meta["size"]) if meta["size"] is not None else None
        self.classes_seg = tuple(SegClass(name, class_id, tuple(color)) for name, class_id, color in meta["classes"])
        self._count = meta["count"]
        self._arrays = None
        self._opened_in = None
        if self.format in ("memmap", "hdf5"):
            lengths = {len(array) for array in self._open()}
            if lengths != {self._count}:
                raise _incomplete(self.path, f"meta.json says {self._count} samples, the arrays hold {sorted(lengths)}")

    def __len__(self) -> int:
        return self._count

    def load_pair(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample ``index`` as stored: uint8 image ``(3, H, W)`` and int64 mask ``(H, W)``."""
        if not -self._count <= index < self._count:
            raise IndexError(f"index: expected a value in [-{self._count}, {self._count}), got {index}")
        index = index % self._count
        if self.format == "png":
            image = read_image(_png_path(self.path, "images", index))
            mask = read_label_map(_png_path(self.path, "masks", index))
        else:
            images, masks = self._open()
            image = torch.from_numpy(np.array(images[index])).permute(2, 0, 1)  # (H, W, 3) -> (3, H, W)
            mask = torch.from_numpy(np.array(masks[index]))
        return image, mask.to(torch.int64)

    def _open(self):
        """The (images, masks) arrays of a memmap or hdf5 cache, opened once per process."""
        if self._arrays is None or self._opened_in != os.getpid():
            if self.format == "memmap":
                self._arrays = tuple(np.load(self.path / MEMMAP_FILES[kind], mmap_mode="r") for kind in MEMMAP_FILES)
            else:
                import h5py

                file = h5py.File(self.path / HDF5_FILENAME, "r")
                self._arrays = (file["images"], file["masks"])
            self._opened_in = os.getpid()
        return self._arrays

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_arrays"] = None
        state["_opened_in"] = None
        return state

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r}, format={self.format!r}, samples={self._count})"


def _incomplete(path: Path, reason: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"path: {path} is not a complete cache ({reason}); write one with "
        f"dlvc.datasets.storage.write_cache(dataset, {str(path)!r}, format) with format in {FORMATS}"
    )


def _read_meta(path: Path) -> dict:
    """The cache's meta.json, after checking that the files it names are there."""
    meta_file = path / META_FILENAME
    if not meta_file.is_file():
        raise _incomplete(path, f"no {META_FILENAME}")
    meta = json.loads(meta_file.read_text())
    if meta.get("format") not in FORMATS:
        raise _incomplete(path, f"unknown format {meta.get('format')!r} in {META_FILENAME}")
    if meta["format"] == "png":
        expected = [_png_path(path, kind, meta["count"] - 1) for kind in PNG_FOLDERS]
    elif meta["format"] == "memmap":
        expected = [path / name for name in MEMMAP_FILES.values()]
    else:
        expected = [path / HDF5_FILENAME]
    missing = [str(file.relative_to(path)) for file in expected if not file.is_file()]
    if missing:
        raise _incomplete(path, f"missing {', '.join(missing)}")
    return meta
