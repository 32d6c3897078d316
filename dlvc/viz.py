"""Pictures of a training run: learning curves, coloured masks and prediction grids.

Everything writes PNG files with matplotlib's non-interactive backend, so it works on
a lab server without a screen.
"""

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from .constants import IGNORE_INDEX, IMAGENET_MEAN, IMAGENET_STD  # noqa: E402

IGNORE_COLOR = (255, 255, 255)
METRIC_NAMES = {"loss": "loss", "miou": "mIoU"}
"""How the history's metrics (``train_loss``, ``val_miou``, ...) are named on the plots."""


def denormalize(images: torch.Tensor) -> torch.Tensor:
    """Undo the ImageNet normalisation: (B, 3, H, W) normalised -> (B, 3, H, W) in [0, 1]."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images: expected shape (B, 3, H, W), got {tuple(images.shape)}")
    mean = torch.tensor(IMAGENET_MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=images.device).view(1, 3, 1, 1)
    return (images.float() * std + mean).clamp(0, 1)


def colorize(masks: torch.Tensor, classes: Sequence) -> torch.Tensor:
    """Label masks (..., H, W) -> RGB (..., H, W, 3) uint8 with each class's colour, ignored pixels white."""
    palette = torch.zeros(256, 3, dtype=torch.uint8)
    palette[IGNORE_INDEX] = torch.tensor(IGNORE_COLOR, dtype=torch.uint8)
    for seg_class in classes:
        palette[seg_class.id] = torch.tensor(seg_class.color, dtype=torch.uint8)
    if masks.is_floating_point() or masks.min() < 0 or masks.max() > 255:
        raise ValueError(f"masks: expected integer labels in [0, 255], got {masks.dtype} in [{masks.min()}, {masks.max()}]")
    return palette[masks.long().cpu()]


def plot_curves(history: Sequence[dict], path: str | os.PathLike) -> Path:
    """Loss and mIoU per epoch, train and validation, in one PNG.

    Args:
        history: one dict per epoch with ``epoch``, ``train_loss``, ``train_miou`` and,
            after the epochs that validated, ``val_loss`` and ``val_miou``.
    """
    figure, (loss_axis, miou_axis) = plt.subplots(1, 2, figsize=(10, 4))
    for key, axis in (("loss", loss_axis), ("miou", miou_axis)):
        for split, style in (("train", "-o"), ("val", "-s")):
            _plot_series(axis, history, f"{split}_{key}", style, label=split)
        _label_axis(axis, "epoch", key)
    figure.tight_layout()
    return _save(figure, path)


def plot_runs(runs: Mapping[str, Sequence[dict]], path: str | os.PathLike, title: str | None = None) -> Path:
    """Train and validation loss and mIoU of several runs, one line per run, in one PNG.

    Four panels (train loss, val loss, train mIoU, val mIoU) with the runs overlaid:
    the figure that compares training strategies in a report.

    Args:
        runs: run name -> history, as for :func:`plot_curves`.
    """
    if not runs:
        raise ValueError("runs: expected at least one run, got none")
    figure, axes = plt.subplots(2, 2, figsize=(11, 8), sharex=True)
    for row, key in enumerate(("loss", "miou")):
        for column, split in enumerate(("train", "val")):
            axis = axes[row][column]
            for name, history in runs.items():
                _plot_series(axis, history, f"{split}_{key}", "-o", label=name)
            _label_axis(axis, "epoch" if key == "miou" else None, key)
            axis.set_title(f"{split} {METRIC_NAMES[key]}")
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return _save(figure, path)


def _plot_series(axis, history: Sequence[dict], column: str, style: str, label: str) -> None:
    """One line of ``column`` against ``epoch``, skipping the epochs without a value."""
    points = [(row["epoch"], row[column]) for row in history if row.get(column) is not None]
    if points:
        epochs, values = zip(*points)
        axis.plot(epochs, values, style, markersize=3, label=label)


def _label_axis(axis, x_label: str | None, key: str) -> None:
    if x_label:
        axis.set_xlabel(x_label)
    axis.set_ylabel(METRIC_NAMES[key])
    axis.grid(alpha=0.3)
    if axis.get_legend_handles_labels()[0]:
        axis.legend()
    if key == "miou":
        axis.set_ylim(0, 1)


def prediction_grid(
    images: torch.Tensor,
    targets: torch.Tensor,
    predictions: torch.Tensor,
    classes: Sequence,
    path: str | os.PathLike,
    title: str | None = None,
) -> Path:
    """One row per sample: the image, its ground truth and the predicted mask.

    Args:
        images: (B, 3, H, W) normalised images.
        targets: (B, H, W) ground-truth labels.
        predictions: (B, H, W) predicted labels.
        classes: the dataset's ``classes_seg`` (their colours colour the masks).
    """
    if not (images.shape[0] == targets.shape[0] == predictions.shape[0]) or targets.shape != predictions.shape:
        raise ValueError(
            f"expected images (B, 3, H, W), targets and predictions (B, H, W) of one batch, "
            f"got {tuple(images.shape)}, {tuple(targets.shape)}, {tuple(predictions.shape)}"
        )
    pictures = denormalize(images).permute(0, 2, 3, 1).cpu()  # (B, 3, H, W) -> (B, H, W, 3)
    target_colors, prediction_colors = colorize(targets, classes), colorize(predictions, classes)
    rows = images.shape[0]
    figure, axes = plt.subplots(rows, 3, figsize=(7.5, 2.5 * rows), squeeze=False)
    for row in range(rows):
        for column, (picture, name) in enumerate(
            ((pictures[row], "image"), (target_colors[row], "ground truth"), (prediction_colors[row], "prediction"))
        ):
            axes[row, column].imshow(picture.numpy())
            axes[row, column].set_axis_off()
            if row == 0:
                axes[row, column].set_title(name)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return _save(figure, path)


def _save(figure, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
