"""Specification of dlvc.datasets.storage: exact round trips, resizing, errors, DataLoader workers."""

import json

import pytest
import torch
from torch.utils.data import DataLoader

from dlvc.constants import IGNORE_INDEX
from dlvc.datasets.common import SegClass
from dlvc.datasets.storage import FORMATS, CachedSegmentationDataset, write_cache

CLASSES = (
    SegClass("background", 0, (0, 0, 0)),
    SegClass("pet", 1, (200, 50, 50)),
    SegClass("border", 2, (255, 255, 255)),
)


class FakeDataset:
    """Random uint8 images and int64 masks with classes 0..2 and ignored (255) pixels."""

    classes_seg = CLASSES

    def __init__(self, sizes, seed: int = 0, mask_max: int = 2):
        generator = torch.Generator().manual_seed(seed)
        self.pairs = []
        for height, width in sizes:
            image = torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=generator)
            mask = torch.randint(0, mask_max + 1, (height, width), generator=generator)
            mask[torch.rand(height, width, generator=generator) < 0.1] = IGNORE_INDEX
            self.pairs.append((image, mask))

    def __len__(self):
        return len(self.pairs)

    def load_pair(self, index):
        return self.pairs[index]


@pytest.fixture
def fake():
    return FakeDataset([(12, 16)] * 5)


@pytest.mark.parametrize("format", FORMATS)
def test_round_trip_returns_the_source_pairs_exactly(tmp_path, fake, format):
    cache = CachedSegmentationDataset(write_cache(fake, tmp_path / "cache", format))
    assert len(cache) == len(fake), f"{format}: the cache should hold every sample"
    for index in range(len(fake)):
        image, mask = cache.load_pair(index)
        expected_image, expected_mask = fake.load_pair(index)
        assert image.dtype == torch.uint8 and mask.dtype == torch.int64, f"{format}: load_pair gives uint8 and int64"
        assert torch.equal(image, expected_image), f"{format}: image {index} changed in the round trip"
        assert torch.equal(mask, expected_mask), f"{format}: mask {index} (with its 255s) changed in the round trip"


@pytest.mark.parametrize("format", FORMATS)
def test_cache_keeps_the_classes(tmp_path, fake, format):
    cache = CachedSegmentationDataset(write_cache(fake, tmp_path / "cache", format))
    assert cache.classes_seg == CLASSES, f"{format}: classes_seg should come back from meta.json unchanged"


def test_png_cache_keeps_samples_of_different_sizes(tmp_path):
    fake = FakeDataset([(12, 16), (9, 7)])
    cache = CachedSegmentationDataset(write_cache(fake, tmp_path / "cache", "png"))
    assert torch.equal(cache.load_pair(1)[0], fake.load_pair(1)[0]), "a png cache stores every sample at its own size"


@pytest.mark.parametrize("format", ["memmap", "hdf5"])
def test_array_caches_need_a_size_for_samples_of_different_sizes(tmp_path, format):
    fake = FakeDataset([(12, 16), (9, 7)])
    with pytest.raises(ValueError, match=r"sample 1.*size=\(H, W\)"):
        write_cache(fake, tmp_path / "cache", format)
    assert not any(tmp_path.iterdir()), f"{format}: a failed write must leave no folder behind"


@pytest.mark.parametrize("format", FORMATS)
def test_size_resizes_images_bilinear_and_masks_nearest(tmp_path, format):
    fake = FakeDataset([(12, 16), (9, 7)])
    cache = CachedSegmentationDataset(write_cache(fake, tmp_path / "cache", format, size=(6, 8)))
    image, mask = cache.load_pair(1)
    assert image.shape == (3, 6, 8) and mask.shape == (6, 8), f"{format}: every sample should be resized to (6, 8)"
    source_values = set(fake.load_pair(1)[1].unique().tolist())
    assert set(mask.unique().tolist()) <= source_values, "nearest resizing must not invent labels between classes"
    assert cache.size == (6, 8), "the cache should report the size it was written at"


def test_resized_mask_equals_nearest_neighbour_downsampling(tmp_path):
    mask = torch.arange(16).view(4, 4).repeat_interleave(2, 0).repeat_interleave(2, 1)
    fake = FakeDataset([(8, 8)])
    fake.pairs[0] = (fake.pairs[0][0], mask)
    cache = CachedSegmentationDataset(write_cache(fake, tmp_path / "cache", "memmap", size=(4, 4)))
    assert torch.equal(cache.load_pair(0)[1], torch.arange(16).view(4, 4)), (
        "halving a mask of 2x2 blocks with nearest neighbour should give one label per block"
    )


def test_meta_json_describes_the_cache(tmp_path, fake):
    path = write_cache(fake, tmp_path / "cache", "hdf5", size=(12, 16))
    meta = json.loads((path / "meta.json").read_text())
    assert meta["format"] == "hdf5" and meta["count"] == 5 and meta["size"] == [12, 16], (
        f"meta.json should hold the format, the number of samples and the size, got {meta}"
    )
    names = [name for name, _, _ in meta["classes"]]
    assert names == ["background", "pet", "border"], f"meta.json should list the classes, got {names}"


def test_getitem_applies_the_transforms_and_converts(tmp_path, fake):
    def flip(image, mask):
        return image.flip(-1), mask.flip(-1)

    cache = CachedSegmentationDataset(write_cache(fake, tmp_path / "cache", "memmap"), transforms=flip)
    image, mask = cache[0]
    assert image.dtype == torch.float32 and image.shape == (3, 12, 16), "items are float32 normalised images"
    assert torch.equal(mask, fake.load_pair(0)[1].flip(-1)), "__getitem__ should apply the paired transforms"


def test_unknown_format_is_rejected(tmp_path, fake):
    with pytest.raises(ValueError, match="format.*zarr"):
        write_cache(fake, tmp_path / "cache", "zarr")


def test_mask_values_above_255_are_rejected(tmp_path):
    fake = FakeDataset([(4, 4)])
    fake.pairs[0][1][0, 0] = 300
    with pytest.raises(ValueError, match=r"sample 0.*\[0, 255\]"):
        write_cache(fake, tmp_path / "cache", "png")


def test_existing_cache_is_not_overwritten_unless_asked(tmp_path, fake):
    path = write_cache(fake, tmp_path / "cache", "png")
    with pytest.raises(FileExistsError, match="overwrite"):
        write_cache(fake, path, "memmap")
    write_cache(fake, path, "memmap", overwrite=True)
    assert CachedSegmentationDataset(path).format == "memmap", "overwrite=True should replace the cache"


def test_missing_cache_names_the_path_and_write_cache(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nowhere.*write_cache"):
        CachedSegmentationDataset(tmp_path / "nowhere")


def test_interrupted_write_leaves_no_cache(tmp_path):
    class Failing(FakeDataset):
        def load_pair(self, index):
            if index == 3:
                raise KeyboardInterrupt
            return super().load_pair(index)

    with pytest.raises(KeyboardInterrupt):
        write_cache(Failing([(4, 4)] * 5), tmp_path / "cache", "hdf5")
    assert not any(tmp_path.iterdir()), "an interrupted write must leave neither the cache nor its temporary folder"


def test_cache_with_a_missing_file_is_reported_incomplete(tmp_path, fake):
    path = write_cache(fake, tmp_path / "cache", "png")
    (path / "masks" / "000004.png").unlink()
    with pytest.raises(FileNotFoundError, match="not a complete cache.*000004"):
        CachedSegmentationDataset(path)


def test_index_out_of_range_raises_index_error(tmp_path, fake):
    cache = CachedSegmentationDataset(write_cache(fake, tmp_path / "cache", "memmap"))
    with pytest.raises(IndexError):
        cache.load_pair(len(fake))


def test_dataloader_with_two_workers_reads_hdf5(tmp_path):
    fake = FakeDataset([(12, 16)] * 8)
    cache = CachedSegmentationDataset(write_cache(fake, tmp_path / "cache", "hdf5"))
    cache[0]  # open the file in this process first: workers must open their own handle
    loader = DataLoader(cache, batch_size=2, num_workers=2)
    masks = torch.cat([mask for _, mask in loader])
    expected = torch.stack([fake.load_pair(index)[1] for index in range(len(fake))])
    assert torch.equal(masks, expected), "two DataLoader workers should read every sample of the hdf5 cache"
