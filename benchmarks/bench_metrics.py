"""How fast SegMetrics.update counts a Cityscapes-sized batch, beside two other ways.

Times, on the CPU, one update with an 8x512x1024 batch of 19-class labels (about a
tenth of the target pixels set to the ignore label), for uint8 and for int64 labels:

- ``SegMetrics.update`` (the reference build, input checks included);
- torchmetrics' ``MulticlassJaccardIndex(num_classes=19, ignore_index=255).update``,
  its other arguments left at their defaults;
- a per-class Python loop: for each class, the intersection and the union from
  boolean masks.

The three are first checked to give the same IoU on the batch, so that the ratios
compare like with like. Each time is the median of ``--repeats`` runs, the three
methods taking turns; the ratios say how many times slower the other two are than
SegMetrics. Beside the wall time, each line shows the CPU time the operating system
spent for the call (mostly on page faults: every fresh temporary tensor of a few MB is
new memory to map) and the number of page faults, where the platform reports them.
On a shared machine that kernel time varies from run to run, and with it the ratios.
Run it with ``python benchmarks/bench_metrics.py``.
"""

import argparse
import math
import statistics
import time

import torch
from torchmetrics.classification import MulticlassJaccardIndex

from dlvc.constants import IGNORE_INDEX
from dlvc.metrics import SegMetrics

try:
    import resource  # kernel time and page faults of this process; Unix only
except ImportError:
    resource = None


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7, help="timed runs of each method; the median is shown (default: %(default)s)")
    parser.add_argument("--batch", type=int, nargs=3, default=(8, 512, 1024), metavar=("B", "H", "W"), help="label map shape (default: %(default)s)")
    parser.add_argument("--classes", type=int, default=19, help="number of classes C (default: %(default)s)")
    parser.add_argument("--ignored", type=float, default=0.1, help="share of target pixels set to the ignore label (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the labels (default: %(default)s)")
    return parser.parse_args(argv)


def kernel_seconds_and_faults() -> tuple[float, float]:
    """CPU seconds this process has spent in the kernel, and its minor page faults; NaN where unknown."""
    if resource is None:
        return math.nan, math.nan
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_stime, usage.ru_minflt


def median_costs(functions: dict, repeats: int) -> dict[str, dict[str, float]]:
    """Median wall seconds, kernel seconds and page faults of each of ``functions`` (name -> callable).

    The functions take turns within each repeat, so that a busy machine slows them alike;
    each runs once untimed first.
    """
    costs = {name: {"wall": [], "kernel": [], "faults": []} for name in functions}
    for function in functions.values():
        function()
    for _ in range(repeats):
        for name, function in functions.items():
            kernel_before, faults_before = kernel_seconds_and_faults()
            start = time.perf_counter()
            function()
            wall = time.perf_counter() - start
            kernel_after, faults_after = kernel_seconds_and_faults()
            costs[name]["wall"].append(wall)
            costs[name]["kernel"].append(kernel_after - kernel_before)
            costs[name]["faults"].append(faults_after - faults_before)
    return {name: {key: statistics.median(values) for key, values in runs.items()} for name, runs in costs.items()}


def per_class_loop(prediction: torch.Tensor, target: torch.Tensor, num_classes: int) -> list[tuple[int, int]]:
    """(intersection, union) of each class, one boolean mask at a time."""
    labelled = target != IGNORE_INDEX
    counts = []
    for label in range(num_classes):
        predicted = (prediction == label) & labelled
        expected = target == label
        counts.append((int((predicted & expected).sum()), int((predicted | expected).sum())))
    return counts


def check_agreement(prediction: torch.Tensor, target: torch.Tensor, num_classes: int) -> None:
    """Raise RuntimeError unless the three methods give the same IoU of each class on this batch."""
    metrics = SegMetrics(range(num_classes))
    metrics.update(prediction, target)
    counts = per_class_loop(prediction, target, num_classes)
    loop_iou = torch.tensor([intersection / union if union else math.nan for intersection, union in counts], dtype=torch.float64)
    if not torch.allclose(metrics.iou(), loop_iou, rtol=0, atol=1e-12, equal_nan=True):
        raise RuntimeError(f"SegMetrics and the per-class loop disagree: IoU {metrics.iou().tolist()} against {loop_iou.tolist()}")
    jaccard = MulticlassJaccardIndex(num_classes=num_classes, ignore_index=IGNORE_INDEX)
    jaccard.update(prediction, target)
    jaccard_miou = jaccard.compute().item()
    if abs(jaccard_miou - metrics.mIoU()) > 1e-6:
        raise RuntimeError(f"SegMetrics and torchmetrics disagree: mIoU {metrics.mIoU()} against {jaccard_miou}")


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
        check_agreement(labels, expected, args.classes)
        metrics = SegMetrics(range(args.classes))
        jaccard = MulticlassJaccardIndex(num_classes=args.classes, ignore_index=IGNORE_INDEX)
        costs = median_costs(
            {
                "SegMetrics.update": lambda: metrics.update(labels, expected),
                "torchmetrics update": lambda: jaccard.update(labels, expected),
                "per-class loop": lambda: per_class_loop(labels, expected, args.classes),
            },
            args.repeats,
        )
        ours = costs["SegMetrics.update"]["wall"]
        print(f"{dtype} labels, shape {tuple(args.batch)}, {args.classes} classes:")
        print(f"  {'method':<20} {'wall ms':>9} {'x SegMetrics':>13} {'kernel ms':>10} {'page faults':>12}")
        for name, cost in costs.items():
            print(f"  {name:<20} {1000 * cost['wall']:9.2f} {cost['wall'] / ours:13.1f} {1000 * cost['kernel']:10.1f} {cost['faults']:12.0f}")


if __name__ == "__main__":
    main(parse_args())
