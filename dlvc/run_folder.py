"""The run folder: what a training run leaves behind, for people to read and for resuming.

::

    <run>/config.json        the run's settings (the parsed flags)
    <run>/metrics.csv        one row per epoch, the columns of CSV_FIELDS
    <run>/tensorboard/       TensorBoard events: train/loss, train/miou, val/loss, val/miou, lr, seconds
    <run>/curves.png         loss and mIoU per epoch, redrawn after each validation
    <run>/predictions.png    predictions on the first validation samples, redrawn after each validation
    <run>/model_best.pt      the weights that scored the best validation mIoU
    <run>/model_last.pt      the weights after the last epoch
    <run>/checkpoint.pt      everything needed to resume the run (:mod:`dlvc.checkpoint`)

In a run of several processes only rank 0 writes: a :class:`RunFolder` made with
``writes=False`` does nothing in the methods that write.
"""

import csv
import json
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset
from torch.utils.tensorboard import SummaryWriter
from tqdm.auto import tqdm

from . import checkpoint, viz
from .models.segmenter import DeepSegmenter

CHECKPOINT_NAME = "checkpoint.pt"
CSV_FIELDS = ("epoch", "train_loss", "train_miou", "val_loss", "val_miou", "lr", "seconds")
"""The columns of metrics.csv, the keys of a history row."""


class RunFolder:
    """The files of one training run in ``path``.

    Args:
        path: the run folder; created by :meth:`open`.
        writes: False on every process but rank 0.
    """

    def __init__(self, path: str | os.PathLike, writes: bool = True):
        self.path = Path(path)
        self.writes = writes
        self._tensorboard = None

    @property
    def checkpoint_path(self) -> Path:
        return self.path / CHECKPOINT_NAME

    def check_no_earlier_run(self) -> None:
        """FileExistsError when the folder holds the checkpoint of an earlier run."""
        if self.checkpoint_path.exists():
            raise FileExistsError(
                f"training_save_dir: {self.path} already holds a run ({CHECKPOINT_NAME}); "
                "resume it (--resume), choose another folder (--out), or start afresh over it (--overwrite)"
            )

    def open(self, config: dict, first_epoch: int) -> None:
        """Create the folder, write config.json and start the TensorBoard log at ``first_epoch`` (counting from 1).

        TensorBoard events of ``first_epoch`` and later left by an interrupted run are dropped.
        """
        if not self.writes:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / "config.json").write_text(json.dumps(config, indent=2, default=str) + "\n")
        self._tensorboard = SummaryWriter(self.path / "tensorboard", purge_step=first_epoch)

    def save_model(self, model: nn.Module, suffix: str) -> None:
        """Write ``model``'s weights to ``model_<suffix>.pt`` (the wrapped network's, for a DeepSegmenter)."""
        if not self.writes:
            return
        if isinstance(model, DeepSegmenter):
            model.save(self.path, suffix)
        else:
            torch.save(model.state_dict(), self.path / f"model_{suffix}.pt")

    def save_checkpoint(self, trainer, epochs_done: int) -> None:
        """Write checkpoint.pt: ``trainer``'s state after ``epochs_done`` epochs (:func:`dlvc.checkpoint.save_training`)."""
        if not self.writes:
            return
        checkpoint.save_training(trainer, self.checkpoint_path, epochs_done)

    def log_epoch(self, history: Sequence[dict], num_epochs: int) -> None:
        """Record the last row of ``history`` in metrics.csv and TensorBoard, redraw curves.png after a validation, print a summary line."""
        if not self.writes:
            return
        row = history[-1]
        with open(self.path / "metrics.csv", "w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=CSV_FIELDS)
            writer.writeheader()
            writer.writerows({key: earlier.get(key) for key in CSV_FIELDS} for earlier in history)
        for key in CSV_FIELDS[1:]:
            if row.get(key) is not None:
                self._tensorboard.add_scalar(key.replace("_", "/", 1), row[key], row["epoch"])
        self._tensorboard.flush()
        if row["val_miou"] is not None:
            viz.plot_curves(history, self.path / "curves.png")
        tqdm.write(_summary(row, num_epochs))

    def draw_predictions(self, model: nn.Module, dataset: Dataset, classes: Sequence, epoch: int, count: int, autocast) -> None:
        """predictions.png: ``model``'s predictions on the first ``count`` samples of ``dataset``, beside their targets.

        Args:
            model: maps (N, 3, H, W) images to (N, K, H, W) logits on its parameters'
                device; left in eval mode.
            dataset: (image (3, H, W), target (H, W)) pairs.
            classes: the classes' names and colours, unless ``dataset`` has its own ``classes_seg``.
            epoch: the epoch in the title, counting from 1.
            count: how many samples to draw.
            autocast: the context manager the forward pass runs in (mixed precision or none).
        """
        if not self.writes:
            return
        images, targets = zip(*(dataset[index] for index in range(min(count, len(dataset)))))
        images, targets = torch.stack(images), torch.stack(targets)  # N x (3, H, W) -> (N, 3, H, W); N x (H, W) -> (N, H, W)
        model.eval()
        with torch.inference_mode(), autocast:
            predictions = model(images.to(next(model.parameters()).device)).argmax(dim=1).cpu()  # (N, K, H, W) -> (N, H, W)
        classes = getattr(dataset, "classes_seg", None) or classes
        viz.prediction_grid(images, targets, predictions, classes, self.path / "predictions.png", title=f"epoch {epoch}")

    def close(self) -> None:
        """Finish the TensorBoard log."""
        if self._tensorboard is not None:
            self._tensorboard.close()


def _summary(row: dict, num_epochs: int) -> str:
    """One line per epoch: ``epoch   2/8  train loss 0.4312 mIoU 0.6120 | val loss ... | lr 1.00e-03 | 12.3 s``."""
    text = f"epoch {row['epoch']:>3}/{num_epochs}  train loss {row['train_loss']:.4f} mIoU {row['train_miou']:.4f}"
    if row["val_miou"] is not None:
        text += f" | val loss {row['val_loss']:.4f} mIoU {row['val_miou']:.4f}"
    return text + f" | lr {row['lr']:.2e} | {row['seconds']:.1f} s"
