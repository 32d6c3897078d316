"""How fast SegMetrics.update counts a Cityscapes-sized batch, beside two other ways.

Times, on the CPU, one update with an 8x512x1024 batch of 19-class labels (about a
tenth of the target pixels set to the ignore label), for uint8 and for int64 labels:

- ``SegMetrics.update`` (the reference build, input checks included);
- torchmetrics' ``MulticlassJaccardIndex(num_classes=19, ignore_index=255).update``,
  its other arguments left at their defaults;
- a per-class Python loop: for each class, the intersection and the union from
  boolean masks.

Each time is the median of ``--repeats`` runs, the three methods taking turns; the ratios say how many times slower
the other two are than SegMetrics. Run it with ``python benchmarks/bench_metrics.py``.
"""

import argparse
import statistics
import time

import torch
from torchmetrics.classification import MulticlassJaccardIndex

from dlvc.constants import IGNORE_INDEX
from dlvc.metrics import SegMetrics


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7, help="timed runs of each method; the median is shown (default: %(default)s)")
    parser.add_argument("--batch", type=int, nargs=3, default=(8, 512, 1024), metavar=("B", "H", "W"), help="label map shape (default: %(default)s)")
    parser.add_argument("--classes", type=int, default=19, help="number of classes C (default: %(default)s)")
    parser.add_argument("--ignored", type=float, default=0.1, help="share of target pixels set to the ignore label (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the labels (default: %(default)s)")
    return parser.parse_args(argv)


def median_seconds(functions: dict, repeats: int) -> dict[str, float]:
    """Median wall time of each of ``functions`` (name -> callable) over ``repeats`` runs.

    The functions take turns within each repeat, so that a busy machine slows them alike;
    each runs once untimed first.
    """
    times = {name: [] for name in functions}
    for function in functions.values():
        function()
    for _ in range(repeats):
        for name, function in functions.items():
            start = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(runs) for name, runs in times.items()}


def per_class_loop(prediction: torch.Tensor, target: torch.Tensor, num_classes: int) -> list[tuple[int, int]]:
    """(intersection, union) of each class, one boolean mask at a time."""
    labelled = target != IGNORE_INDEX
    counts = []
    for label in range(num_classes):
        predicted = (prediction == label) & labelled
        expected = target == label
        counts.append((int((predicted & expected).sum()), int((predicted | expected).sum())))
    return counts


def random_labels(shape, num_classes: int, ignored: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """int64 prediction and target (B, H, W); a share ``ignored`` of the target is IGNORE_INDEX."""
    generator = torch.Generator().manual_seed(seed)
    prediction = torch.randint(0, num_classes, shape, generator=generator)
    target = torch.randint(0, num_classes, shape, generator=generator)
    target[torch.rand(shape, generator=generator) < ignored] = IGNORE_INDEX
    return prediction, target


def main(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    print(f"configuration: {vars(args)}, torch {torch.__version__}")
    prediction, target = random_labels(tuple(args.batch), args.classes, args.ignored, args.seed)
    for dtype in (torch.uint8, torch.int64):
        labels, expected = prediction.to(dtype), target.to(dtype)
        metrics = SegMetrics(range(args.classes))
        jaccard = MulticlassJaccardIndex(num_classes=args.classes, ignore_index=IGNORE_INDEX)
        times = median_seconds(
            {
                "SegMetrics.update": lambda: metrics.update(labels, expected),
                "torchmetrics update": lambda: jaccard.update(labels, expected),
                "per-class loop": lambda: per_class_loop(labels, expected, args.classes),
            },
            args.repeats,
        )
        ours = times["SegMetrics.update"]
        print(f"{dtype} labels, shape {tuple(args.batch)}, {args.classes} classes:")
        for name, seconds in times.items():
            print(f"  {name:<20} {1000 * seconds:9.2f} ms  {seconds / ours:7.1f}x SegMetrics")


if __name__ == "__main__":
    main(parse_args())
