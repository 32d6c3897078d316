"""Assignment 1, part 2: the training loop (TODOs 5, 6 and 7 in dlvc/trainer.py).

These tests train a tiny network for a few epochs on a task a single convolution can
learn, so they take a few seconds on a laptop CPU.
"""

import math

import torch
from torch import nn
from torch.utils.data import TensorDataset

from dlvc.constants import IGNORE_INDEX
from dlvc.datasets.common import SegClass
from dlvc.metrics import SegMetrics
from dlvc.models.segmenter import DeepSegmenter
from dlvc.trainer import ImgSemSegTrainer

CLASSES = (SegClass("dark", 0, (0, 0, 0)), SegClass("bright", 1, (255, 255, 255)))


def bright_pixels(count: int, seed: int) -> TensorDataset:
    """Images of noise; a pixel is class 1 where its first channel is positive."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(count, 3, 8, 8, generator=generator)
    targets = (images[:, 0] > 0).long()
    return TensorDataset(images, targets)


def make_trainer(folder, num_epochs=3, val_frequency=2, loss_fn=None):
    torch.manual_seed(0)
    model = DeepSegmenter(nn.Conv2d(3, 2, kernel_size=1))
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    return ImgSemSegTrainer(
        model,
        optimizer,
        loss_fn or nn.CrossEntropyLoss(ignore_index=IGNORE_INDEX),
        torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=0.98),
        SegMetrics(CLASSES),
        SegMetrics(CLASSES),
        bright_pixels(32, seed=1),
        bright_pixels(16, seed=2),
        torch.device("cpu"),
        num_epochs,
        folder,
        batch_size=8,
        val_frequency=val_frequency,
        progress=False,
    )


def test_training_reduces_the_loss_and_learns_the_task(tmp_path):
    history = make_trainer(tmp_path, num_epochs=4).train()
    assert len(history) == 4, "train() must run every epoch and return one history row per epoch"
    assert history[-1]["train_loss"] < history[0]["train_loss"], "the training loss did not go down: is the optimizer stepping?"
    assert history[-1]["val_miou"] > 0.8, f"val mIoU {history[-1]['val_miou']:.3f} on a task one convolution solves"


def test_validation_runs_every_val_frequency_epochs_and_after_the_last(tmp_path):
    history = make_trainer(tmp_path, num_epochs=5, val_frequency=2).train()
    validated = [row["epoch"] for row in history if row["val_miou"] is not None]
    assert validated == [2, 4, 5], f"validated after epochs {validated}, expected [2, 4, 5]"


def test_losses_are_finite_means_per_sample(tmp_path):
    history = make_trainer(tmp_path, num_epochs=2, val_frequency=1).train()
    for row in history:
        assert math.isfinite(row["train_loss"]) and math.isfinite(row["val_loss"])
        assert 0 < row["train_loss"] < 5, "train_loss must be the mean loss per sample, not a sum"


def test_best_model_is_saved(tmp_path):
    make_trainer(tmp_path, num_epochs=2, val_frequency=1).train()
    assert (tmp_path / "model_best.pt").is_file(), "save the best model with self._save_model('best')"


def test_validation_does_not_build_a_graph(tmp_path):
    without_grad = []

    def loss_fn(logits, target):
        if not torch.is_grad_enabled():
            without_grad.append(torch.is_inference_mode_enabled())
        return nn.functional.cross_entropy(logits, target, ignore_index=IGNORE_INDEX)

    make_trainer(tmp_path, num_epochs=1, val_frequency=1, loss_fn=loss_fn).train()
    assert without_grad and all(without_grad), "run validation inside `with torch.inference_mode():`"


def test_learning_rate_scheduler_steps_once_per_epoch(tmp_path):
    trainer = make_trainer(tmp_path, num_epochs=3)
    trainer.train()
    assert trainer.optimizer.param_groups[0]["lr"] == 0.1 * 0.98**3
