"""ImgSemSegTrainer: the training loop for semantic segmentation.

Students write one training epoch, one validation pass and the loop over epochs
(`_train_epoch`, `_val_epoch`, `train`; Assignment 1, part 3). Given here: mixed
precision (:meth:`_autocast`) and the optimisation step with gradient clipping and a
stop on a non-finite loss (:meth:`_optimization_step`). Given in modules of their own:
the data loaders (:mod:`dlvc.loaders`), the checkpoint to resume from
(:mod:`dlvc.checkpoint`), ``torchrun`` with DistributedDataParallel
(:mod:`dlvc.distributed`) and the run folder's logs, plots and weights
(:mod:`dlvc.run_folder`).

Shapes: B batch, K classes, H and W the image size.
"""

import contextlib
import math
import os
import time

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from . import checkpoint, distributed, loaders
from .loaders import batches_per_epoch
from .run_folder import CHECKPOINT_NAME, RunFolder

__all__ = ["CHECKPOINT_NAME", "ImgSemSegTrainer", "batches_per_epoch"]

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class ImgSemSegTrainer:
    """Trains a segmentation model and validates it every few epochs.

    Args:
        model: a :class:`~dlvc.models.segmenter.DeepSegmenter` (or any module mapping
            (B, 3, H, W) images to (B, K, H, W) logits), already on ``device``.
        optimizer: the optimizer over the model's parameters.
        loss_fn: ``loss_fn(logits (B, K, H, W), target (B, H, W)) -> scalar``, the mean over the batch.
        lr_scheduler: stepped once per epoch, or once per optimisation step when
            ``scheduler_interval="step"``.
        train_metric, val_metric: :class:`~dlvc.metrics.SegMetrics` objects.
        train_data, val_data: datasets of (image (3, H, W), target (H, W)) pairs.
        device: where the model and batches live.
        num_epochs: number of epochs in the whole run (a resumed run included).
        training_save_dir: the run folder.
        batch_size: batch size per process.
        val_frequency: validate after every ``val_frequency``-th epoch, and always
            after the last one.
        scheduler_interval: ``"epoch"`` or ``"step"``.
        amp: None, ``"bf16"`` or ``"fp16"`` (CUDA only): autocast the forward pass.
        clip_grad_norm: clip the gradients' total norm to this value; None: no clipping.
        num_workers: DataLoader worker processes.
        seed: fixes the shuffling of every epoch.
        resume: a checkpoint written by this trainer to continue from.
        overwrite: allow starting afresh in a folder that holds a checkpoint.
        config: the run's settings (the parsed flags), saved in ``config.json`` and
            in every checkpoint.
        progress: show tqdm progress bars.
        num_preview: validation samples drawn in ``predictions.png``.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        loss_fn: nn.Module,
        lr_scheduler: torch.optim.lr_scheduler.LRScheduler,
        train_metric,
        val_metric,
        train_data: Dataset,
        val_data: Dataset,
        device: torch.device,
        num_epochs: int,
        training_save_dir: str | os.PathLike,
        batch_size: int = 4,
        val_frequency: int = 5,
        *,
        scheduler_interval: str = "epoch",
        amp: str | None = None,
        clip_grad_norm: float | None = None,
        num_workers: int = 0,
        seed: int = 0,
        resume: str | os.PathLike | None = None,
        overwrite: bool = False,
        config: dict | None = None,
        progress: bool = True,
        num_preview: int = 4,
    ):
        _check_positive_int(num_epochs=num_epochs, batch_size=batch_size, val_frequency=val_frequency)
        if scheduler_interval not in ("epoch", "step"):
            raise ValueError(f"scheduler_interval: expected 'epoch' or 'step', got {scheduler_interval!r}")
        device = torch.device(device)
        if amp is not None and amp not in AMP_DTYPES:
            raise ValueError(f"amp: expected None, 'bf16' or 'fp16', got {amp!r}")
        if amp == "fp16" and device.type != "cuda":
            raise ValueError(f"amp: 'fp16' needs a CUDA device, got {device}; use 'bf16' on the CPU")
        if clip_grad_norm is not None and clip_grad_norm <= 0:
            raise ValueError(f"clip_grad_norm: expected a positive number or None, got {clip_grad_norm}")
        for name, data in (("train_data", train_data), ("val_data", val_data)):
            if len(data) == 0:
                raise ValueError(f"{name}: the dataset is empty")

        self.process = distributed.current()
        self.segmenter = model
        self.model = distributed.wrap(model, device, self.process)
        self.optimizer = optimizer
        self.loss_fn = loss_fn
        self.lr_scheduler = lr_scheduler
        self.scheduler_interval = scheduler_interval
        self.train_metric = train_metric
        self.val_metric = val_metric
        self.val_data = val_data
        self.device = device
        self.num_epochs = num_epochs
        self.val_frequency = val_frequency
        self.amp = amp
        self.clip_grad_norm = clip_grad_norm
        self.seed = seed
        self.config = dict(config or {})
        self.progress = progress and self.process.is_main
        self.num_preview = num_preview
        self.scaler = torch.amp.GradScaler(device.type, enabled=amp == "fp16")
        self.train_loader = loaders.training_loader(train_data, batch_size, seed=seed, num_workers=num_workers, device=device, process=self.process)
        self.val_loader = loaders.validation_loader(val_data, batch_size, num_workers=num_workers, device=device, process=self.process)
        self.run = RunFolder(training_save_dir, writes=self.process.is_main)

        self.start_epoch, self.best_miou, self.history = 0, -math.inf, []
        if resume is not None:
            self.start_epoch, self.best_miou, self.history = checkpoint.resume_training(self, resume)
        elif not overwrite:
            self.run.check_no_earlier_run()
        self.run.open(self.config, first_epoch=self.start_epoch + 1)

    def _train_epoch(self, epoch: int) -> tuple[float, float]:
        """Train for epoch ``epoch`` (counting from 0); returns its mean loss per sample and mIoU, merged over all processes."""
        self.model.train()
        self.train_metric.reset()
        loaders.seed_epoch(self.train_loader, self.seed, epoch)
        loss_sum = torch.zeros((), device=self.device)
        samples = 0
        # TODO 1.7 (Assignment 1, part 3): one epoch of training.
        # In: the epoch's batches, `self._progress(self.train_loader, "train", epoch)`:
        # `(images, targets)` pairs, float (B, 3, H, W) and int64 (B, H, W), on the CPU.
        # `self.model` (in train mode) maps images to logits (B, K, H, W) on
        # `self.device`; `self.loss_fn(logits, targets)` is the batch's mean loss.
        # Out: one optimisation step per batch, as `self._optimization_step` takes it;
        # `self.train_metric` has seen every batch; `loss_sum` (a 0-d tensor) over
        # `samples` (an int) is the mean loss per sample over the whole epoch, not a
        # mean of the batches' means (the last batch may be smaller).
        # Invariants: the forward pass and the loss run under `self._autocast()`;
        # nothing kept across batches holds an autograd graph (it would keep every
        # batch's graph in memory). About 10 lines; hint 1.7 in the assignment's README.
        # BEGIN SOLUTION
        for step, (images, targets) in enumerate(self._progress(self.train_loader, "train", epoch)):
            images = images.to(self.device, non_blocking=True)
            targets = targets.to(self.device, non_blocking=True)
            with self._autocast():
                logits = self.model(images)
                loss = self.loss_fn(logits, targets)
            self._optimization_step(loss, epoch, step)
            self.train_metric.update(logits.detach(), targets)
            loss_sum += loss.detach() * images.shape[0]
            samples += images.shape[0]
        # END SOLUTION
        self.train_metric.all_reduce()
        return distributed.mean_across_processes(loss_sum, samples), self.train_metric.mIoU()

    def _val_epoch(self, epoch: int) -> tuple[float, float]:
        """Validate once, without gradients; returns the mean loss per sample and the mIoU, merged over all processes."""
        self.model.eval()
        self.val_metric.reset()
        loss_sum = torch.zeros((), device=self.device)
        samples = 0
        # TODO 1.8 (Assignment 1, part 3): one pass over the validation data.
        # In: the batches of `self._progress(self.val_loader, "val", epoch)`, pairs as
        # in TODO 1.7; `self.model` is in eval mode.
        # Out: `self.val_metric` has seen every batch; `loss_sum` over `samples` is
        # the mean loss per validation sample, not a mean of the batches' means.
        # Invariants: the weights do not change; the model stays in eval mode (dropout
        # off, BatchNorm uses its running statistics); every forward pass runs in
        # torch's inference mode, so that no autograd graph is built; the forward pass
        # and the loss run under `self._autocast()`.
        # About 10 lines; hint 1.8 in the assignment's README.
        # BEGIN SOLUTION
        with torch.inference_mode():
            for images, targets in self._progress(self.val_loader, "val", epoch):
                images = images.to(self.device, non_blocking=True)
                targets = targets.to(self.device, non_blocking=True)
                with self._autocast():
                    logits = self.model(images)
                    loss = self.loss_fn(logits, targets)
                self.val_metric.update(logits, targets)
                loss_sum += loss * images.shape[0]
                samples += images.shape[0]
        # END SOLUTION
        self.val_metric.all_reduce()
        return distributed.mean_across_processes(loss_sum, samples), self.val_metric.mIoU()

    def train(self) -> list[dict]:
        """Run the remaining epochs; returns the history, one dict per epoch.

        Each history row holds ``epoch`` (counting from 1), ``train_loss``,
        ``train_miou``, ``val_loss`` and ``val_miou`` (None in epochs that did not
        validate), ``lr`` and ``seconds``.
        """
        for epoch in range(self.start_epoch, self.num_epochs):
            started = time.perf_counter()
            row = {"epoch": epoch + 1, "val_loss": None, "val_miou": None, "lr": self.optimizer.param_groups[0]["lr"]}
            # TODO 1.9 (Assignment 1, part 3): the epoch loop.
            # In: `row`, this epoch's history row: `epoch` (counting from 1), the `lr`
            # it trains with, `val_loss` and `val_miou` None.
            # Out: `row["train_loss"]`, `row["train_miou"]` from one training epoch;
            # after every `self.val_frequency`-th epoch and after the last one, and only
            # then, `row["val_loss"]`, `row["val_miou"]` from one validation. With
            # `self.scheduler_interval == "epoch"` the scheduler has stepped once, after
            # training (per step otherwise, in `self._optimization_step`). When a
            # validation mIoU beats `self.best_miou`, `self.best_miou` is that mIoU and
            # the run folder's `model_best.pt` holds the weights that scored it
            # (`self.run` writes the run folder). About 10 lines; hint 1.9 in the
            # assignment's README.
            # BEGIN SOLUTION
            row["train_loss"], row["train_miou"] = self._train_epoch(epoch)
            if self.scheduler_interval == "epoch":
                self.lr_scheduler.step()
            if (epoch + 1) % self.val_frequency == 0 or epoch + 1 == self.num_epochs:
                row["val_loss"], row["val_miou"] = self._val_epoch(epoch)
                if row["val_miou"] > self.best_miou:
                    self.best_miou = row["val_miou"]
                    self.run.save_model(self.segmenter, "best")
            # END SOLUTION
            row["seconds"] = time.perf_counter() - started
            self._end_epoch(row)
        self.run.close()
        return self.history

    # ----- given to students: everything below -----

    def _autocast(self):
        """Mixed precision for the forward pass when ``amp`` is set; a no-op otherwise."""
        if self.amp is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=AMP_DTYPES[self.amp])

    def _optimization_step(self, loss: torch.Tensor, epoch: int, step: int) -> None:
        """Backward pass of ``loss`` (0-d), optional clipping and one optimizer step; stops on a non-finite loss."""
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"the training loss became {loss.item()} at epoch {epoch + 1}, step {step + 1}; training stopped. "
                "Lower the learning rate, clip the gradients (--clip-grad-norm), or look for NaN in the inputs. "
                f"The last good checkpoint is {self.run.checkpoint_path}"
            )
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.clip_grad_norm is not None:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.segmenter.parameters(), self.clip_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.scheduler_interval == "step":
            self.lr_scheduler.step()

    def _progress(self, loader: DataLoader, phase: str, epoch: int):
        """``loader``'s batches behind a progress bar named ``"<phase> <epoch + 1>/<num_epochs>"``."""
        # disable=None: bars on a terminal only, so that logs of batch jobs stay readable
        disable = None if self.progress else True
        return tqdm(loader, desc=f"{phase} {epoch + 1}/{self.num_epochs}", leave=False, disable=disable, dynamic_ncols=True)

    def _end_epoch(self, row: dict) -> None:
        """Record a finished epoch: the history, model_last.pt, the checkpoint, the logs and, after a validation, the plots."""
        self.history.append(row)
        self.run.save_model(self.segmenter, "last")
        self.run.save_checkpoint(self, row["epoch"])
        self.run.log_epoch(self.history, self.num_epochs)
        if row["val_miou"] is not None:
            self.run.draw_predictions(self.segmenter, self.val_data, self.val_metric.classes, row["epoch"], self.num_preview, self._autocast())


def _check_positive_int(**values) -> None:
    for name, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name}: expected a positive int, got {value!r}")
