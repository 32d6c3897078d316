"""How fast each storage cache reads a preprocessed dataset, beside the others.

Writes the same fake data set (``--samples`` pairs of ``--size`` x ``--size``
images and masks) as a PNG cache, a numpy memmap cache and an HDF5 cache into a
temporary folder, then times ``CachedSegmentationDataset.load_pair`` over every
sample of each, in sequential and in shuffled order, and prints samples per second,
the ratio to the PNG cache, and the size on disk.

The images are smooth (upsampled low-resolution noise) and the masks blocky, so
that PNG compresses them about as well as photographs and label maps; pure noise
would be PNG's worst case. The files were just written, so they are read from the
operating system's page cache: this measures decoding and copying, not the disk.
Run it with ``python benchmarks/bench_storage.py --samples 2000 --size 128``.
"""

import argparse
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from dlvc.constants import IGNORE_INDEX
from dlvc.datasets.common import SegClass
from dlvc.datasets.storage import FORMATS, CachedSegmentationDataset, write_cache


class FakeDataset:
    """``count`` smooth uint8 images (3, S, S) and blocky int64 masks (S, S), made on demand from a seed."""

    classes_seg = tuple(SegClass(f"class {i}", i, (40 * i, 255 - 40 * i, 128)) for i in range(5))

    def __init__(self, count: int, size: int, seed: int):
        self.count = count
        self.size = size
        self.seed = seed

    def __len__(self) -> int:
        return self.count

    def load_pair(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        coarse = torch.rand(1, 3, 8, 8, generator=generator)
        image = F.interpolate(coarse, size=(self.size, self.size), mode="bilinear", align_corners=False)
        image = (255 * image[0]).round().to(torch.uint8)  # (1, 3, S, S) -> (3, S, S)
        blocks = torch.randint(0, len(self.classes_seg), (1, 1, 8, 8), generator=generator).float()
        mask = F.interpolate(blocks, size=(self.size, self.size), mode="nearest")[0, 0].long()  # (1, 1, S, S) -> (S, S)
        mask[:, :2] = IGNORE_INDEX
        return image, mask


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=2000, help="number of pairs in the data set (default: %(default)s)")
    parser.add_argument("--size", type=int, default=128, help="side of the square images (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the fake data and the shuffled order (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads; more only add overhead to these small tensors (default: %(default)s)")
    parser.add_argument("--folder", type=Path, default=None, help="where to write the caches (default: a temporary folder, removed at the end)")
    return parser.parse_args(argv)


def samples_per_second(dataset: CachedSegmentationDataset, order: list[int]) -> float:
    """Samples read per second by ``load_pair`` over ``order``, after one warm-up read."""
    dataset.load_pair(order[0])
    start = time.perf_counter()
    for index in order:
        dataset.load_pair(index)
    return len(order) / (time.perf_counter() - start)


def disk_megabytes(path: Path) -> float:
    return sum(file.stat().st_size for file in path.rglob("*") if file.is_file()) / 2**20


def run(args: argparse.Namespace, folder: Path) -> None:
    fake = FakeDataset(args.samples, args.size, args.seed)
    sequential = list(range(args.samples))
    shuffled = torch.randperm(args.samples, generator=torch.Generator().manual_seed(args.seed)).tolist()
    results = {}
    for format in FORMATS:
        start = time.perf_counter()
        path = write_cache(fake, folder / format, format, size=(args.size, args.size))
        write_seconds = time.perf_counter() - start
        dataset = CachedSegmentationDataset(path)
        results[format] = {
            "write s": write_seconds,
            "sequential": samples_per_second(dataset, sequential),
            "random": samples_per_second(dataset, shuffled),
            "disk MiB": disk_megabytes(path),
        }
    print(f"{args.samples} samples of {args.size}x{args.size}, load_pair (uint8 image, int64 mask), page cache warm")
    print(f"{'format':<8} {'write s':>8} {'seq/s':>9} {'x png':>6} {'random/s':>9} {'x png':>6} {'disk MiB':>9}")
    png = results["png"]
    for format, result in results.items():
        print(
            f"{format:<8} {result['write s']:>8.2f} {result['sequential']:>9.0f} "
            f"{result['sequential'] / png['sequential']:>6.1f} {result['random']:>9.0f} "
            f"{result['random'] / png['random']:>6.1f} {result['disk MiB']:>9.1f}"
        )


def main(args: argparse.Namespace) -> None:
    print(f"configuration: {vars(args)}")
    torch.set_num_threads(args.threads)
    if args.folder is not None:
        args.folder.mkdir(parents=True, exist_ok=True)
        run(args, args.folder)
        return
    with tempfile.TemporaryDirectory(prefix="bench_storage_") as folder:
        run(args, Path(folder))


if __name__ == "__main__":
    main(parse_args())
