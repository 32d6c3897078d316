"""Assignment 1, part 3: the training loop (TODOs 1.7, 1.8 and 1.9 in dlvc/trainer.py).

These tests train a tiny network for a few epochs on a task a single convolution can
learn, so they take a few seconds on a laptop CPU. They check the contracts of the
TODOs: the history and its validation schedule, losses that are means per sample
(with a loss equal to the batch size, where a mean of batch means gives another
number), model_best.pt scoring the best validation mIoU of the history, validation in
eval mode and inference mode (seen by a forward hook), and a scheduler stepped once
per epoch.
"""

import pytest

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


def make_trainer(folder, num_epochs=3, val_frequency=2, loss_fn=None, scheduler=None, val_samples=16):
    torch.manual_seed(0)
    model = DeepSegmenter(nn.Conv2d(3, 2, kernel_size=1))
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    return ImgSemSegTrainer(
        model,
        optimizer,
        loss_fn or nn.CrossEntropyLoss(ignore_index=IGNORE_INDEX),
        (scheduler or (lambda optimizer: torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=0.98)))(optimizer),
        SegMetrics(CLASSES),
        SegMetrics(CLASSES),
        bright_pixels(32, seed=1),
        bright_pixels(val_samples, seed=2),
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
    assert history[-1]["train_miou"] > 0.8, f"train mIoU {history[-1]['train_miou']:.3f}: update self.train_metric with every batch"
    assert history[-1]["val_miou"] > 0.8, f"val mIoU {history[-1]['val_miou']:.3f} on a task one convolution solves"


def test_validation_runs_every_val_frequency_epochs_and_after_the_last(tmp_path):
    history = make_trainer(tmp_path, num_epochs=5, val_frequency=2).train()
    validated = [row["epoch"] for row in history if row["val_miou"] is not None]
    assert validated == [2, 4, 5], f"validated after epochs {validated}, expected [2, 4, 5]"


def batch_size_loss(logits, target):
    """A "loss" equal to the batch size B: its mean per sample is sum(B * B) / sum(B), the mean of batch means is mean(B)."""
    return logits.sum() * 0.0 + float(logits.shape[0])


def test_losses_are_means_per_sample_not_means_of_batch_means(tmp_path):
    """32 training samples in 4 batches of 8; 20 validation samples in batches of 8, 8 and 4.

    With a loss equal to the batch size, the mean per training sample is 8. The mean per
    validation sample is (8 * 8 + 8 * 8 + 4 * 4) / 20 = 7.2, while a mean of the batch
    means would be (8 + 8 + 4) / 3 = 6.67.
    """
    history = make_trainer(tmp_path, num_epochs=1, val_frequency=1, loss_fn=batch_size_loss, val_samples=20).train()
    assert history[0]["train_loss"] == pytest.approx(8.0), "train_loss must be the mean loss per sample: add loss * B per batch, divide by the samples"
    assert history[0]["val_loss"] == pytest.approx(7.2), (
        f"val_loss is {history[0]['val_loss']:.4f}, expected 7.2: the mean loss per validation sample "
        "(add loss * B for each batch and divide by the number of samples), not a mean of the batches' means"
    )


def test_best_model_holds_the_weights_that_validated_best(tmp_path):
    """The learning rate turns negative after epoch 2, so training climbs the loss afterwards and epoch 2 validates best."""
    trainer = make_trainer(
        tmp_path, num_epochs=4, val_frequency=1, scheduler=lambda optimizer: torch.optim.lr_scheduler.MultiStepLR(optimizer, [2], gamma=-1.0)
    )
    history = trainer.train()
    best = max(history, key=lambda row: row["val_miou"])
    assert best["epoch"] < 4, "this run should validate best before its last epoch; check the validation loop"
    best_model = DeepSegmenter(nn.Conv2d(3, 2, kernel_size=1))
    best_model.load(tmp_path / "model_best.pt")
    metrics = SegMetrics(CLASSES)
    images, targets = bright_pixels(16, seed=2).tensors
    with torch.no_grad():
        metrics.update(best_model(images), targets)
    assert metrics.mIoU() == pytest.approx(best["val_miou"], abs=1e-6), (
        f"model_best.pt scores val mIoU {metrics.mIoU():.4f}, but the best validation (epoch {best['epoch']}) scored "
        f"{best['val_miou']:.4f}: save the model only when the validation mIoU beats self.best_miou"
    )


def test_validation_runs_in_eval_mode_and_does_not_build_a_graph(tmp_path):
    modes = []
    trainer = make_trainer(tmp_path, num_epochs=1, val_frequency=1)
    trainer.model.register_forward_hook(
        lambda module, inputs, output: modes.append((module.training, torch.is_grad_enabled(), torch.is_inference_mode_enabled()))
    )
    trainer.train()
    validation = modes[4:]
    assert validation, "train() did not validate after the last epoch"
    assert all(not training for training, _, _ in validation), (
        "validation must run the model in eval mode: _val_epoch sets it before your code, so do not switch it back to train mode"
    )
    assert all(not grad and inference for _, grad, inference in validation), "run validation inside `with torch.inference_mode():`"


def test_learning_rate_scheduler_steps_once_per_epoch(tmp_path):
    trainer = make_trainer(tmp_path, num_epochs=3)
    trainer.train()
    assert trainer.optimizer.param_groups[0]["lr"] == 0.1 * 0.98**3
