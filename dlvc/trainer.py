"""ImgSemSegTrainer: the reference training loop for semantic segmentation.

One epoch of training, one pass of validation and the loop that alternates them
(`_train_epoch`, `_val_epoch`, `train`) are what students write in Assignment 1,
part 2. Everything around them is given:

- data loaders whose shuffling depends only on ``seed`` and the epoch, so a resumed
  run sees the same batches as an uninterrupted one;
- mixed precision (``amp="bf16"`` or ``"fp16"``), gradient clipping and a stop with
  a clear message when the loss stops being finite (:meth:`_optimization_step`);
- a checkpoint after every epoch, written atomically, holding everything needed to
  resume exactly: model, optimizer, scheduler, grad scaler, epoch, best mIoU,
  history and random-number states (:mod:`dlvc.checkpoint`);
- ``torchrun`` with DistributedDataParallel: each process trains on its share of the
  batches, the metrics merge their confusion matrices, and only rank 0 writes;
- the run folder: ``metrics.csv``, TensorBoard events under ``tensorboard/``,
  ``curves.png`` and ``predictions.png`` (redrawn after each validation), ``config.json``, ``checkpoint.pt`` (to resume),
  ``model_best.pt`` (best validation mIoU) and ``model_last.pt``.

Shapes: B batch, K classes, H and W the image size.
"""

import contextlib
import csv
import json
import math
import os
import time
import warnings
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler
from torch.utils.tensorboard import SummaryWriter
from tqdm.auto import tqdm

from . import checkpoint, distributed, viz
from .models.segmenter import DeepSegmenter

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
CHECKPOINT_NAME = "checkpoint.pt"
RESUME_MAY_DIFFER = ("resume", "epochs", "out", "device", "workers", "progress", "overwrite", "download")
"""Settings that may change when a run is resumed; a change to any other one is warned about."""
CSV_FIELDS = ("epoch", "train_loss", "train_miou", "val_loss", "val_miou", "lr", "seconds")


class ImgSemSegTrainer:
    """Trains a segmentation model and validates it every few epochs.

    Args:
        model: a :class:`~dlvc.models.segmenter.DeepSegmenter` (or any module mapping
            (B, 3, H, W) images to (B, K, H, W) logits), already on ``device``.
        optimizer: the optimizer over the model's parameters.
        loss_fn: ``loss_fn(logits (B, K, H, W), target (B, H, W)) -> scalar``.
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

        self.process = distributed.current()
        self.segmenter = model
        self.model = model
        if self.process.distributed:
            self.model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        self.optimizer = optimizer
        self.loss_fn = loss_fn
        self.lr_scheduler = lr_scheduler
        self.scheduler_interval = scheduler_interval
        self.train_metric = train_metric
        self.val_metric = val_metric
        self.val_data = val_data
        self.device = device
        self.num_epochs = num_epochs
        self.save_dir = Path(training_save_dir)
        self.val_frequency = val_frequency
        self.amp = amp
        self.clip_grad_norm = clip_grad_norm
        self.seed = seed
        self.config = dict(config or {})
        self.progress = progress and self.process.is_main
        self.num_preview = num_preview
        self.scaler = torch.amp.GradScaler(device.type, enabled=amp == "fp16")

        self._generator = torch.Generator()
        self.train_loader = self._loader(train_data, batch_size, num_workers, train=True)
        self.val_loader = self._loader(val_data, batch_size, num_workers, train=False)

        self.start_epoch = 0
        self.best_miou = -math.inf
        self.history: list[dict] = []
        if resume is not None:
            self._resume(resume)
        elif (self.save_dir / CHECKPOINT_NAME).exists() and not overwrite:
            raise FileExistsError(
                f"training_save_dir: {self.save_dir} already holds a run ({CHECKPOINT_NAME}); "
                "resume it (--resume), choose another folder (--out), or start afresh over it (--overwrite)"
            )
        self._writer = None
        if self.process.is_main:
            self.save_dir.mkdir(parents=True, exist_ok=True)
            (self.save_dir / "config.json").write_text(json.dumps(self.config, indent=2, default=str) + "\n")
            self._writer = SummaryWriter(self.save_dir / "tensorboard", purge_step=self.start_epoch + 1)

    def _train_epoch(self, epoch: int) -> tuple[float, float]:
        """Train for one epoch.

        Args:
            epoch: the epoch's index, counting from 0.

        Returns:
            The mean loss per sample and the training mIoU of the epoch, both merged
            over all processes.
        """
        self.model.train()
        self.train_metric.reset()
        self._set_epoch(epoch)
        loss_sum = torch.zeros((), device=self.device)
        samples = 0
        batches = self._progress(self.train_loader, f"train {epoch + 1}/{self.num_epochs}")
        # TODO 5 (Assignment 1, part 2): one epoch of training.
        # For each `step, (images, targets)` of `batches`: move both to `self.device`;
        # inside `with self._autocast():` compute `logits = self.model(images)`
        # (B, K, H, W) and `loss = self.loss_fn(logits, targets)`; then call
        # `self._optimization_step(loss, epoch, step)` (it does backward, clipping,
        # the optimizer step). Update `self.train_metric` with the detached logits,
        # add `loss.detach() * B` to `loss_sum` and B to `samples`. About 10 lines.
        raise NotImplementedError(
            'TODO 5 (Assignment 1, part 2) in dlvc/trainer.py, ImgSemSegTrainer._train_epoch: one epoch of training.'
        )
        self.train_metric.all_reduce()
        return self._mean_loss(loss_sum, samples), self.train_metric.mIoU()

    def _val_epoch(self, epoch: int) -> tuple[float, float]:
        """Validate once, without gradients.

        Returns:
            The mean validation loss per sample and the validation mIoU, both merged
            over all processes.
        """
        self.model.eval()
        self.val_metric.reset()
        loss_sum = torch.zeros((), device=self.device)
        samples = 0
        batches = self._progress(self.val_loader, f"val {epoch + 1}/{self.num_epochs}")
        # TODO 6 (Assignment 1, part 2): one pass over the validation data.
        # Like the training loop, without `self._optimization_step`, and inside
        # `with torch.inference_mode():` so that no graph is kept. Update
        # `self.val_metric`, `loss_sum` and `samples`. About 10 lines.
        raise NotImplementedError(
            'TODO 6 (Assignment 1, part 2) in dlvc/trainer.py, ImgSemSegTrainer._val_epoch: one pass over the validation data.'
        )
        self.val_metric.all_reduce()
        return self._mean_loss(loss_sum, samples), self.val_metric.mIoU()

    def train(self) -> list[dict]:
        """Run the remaining epochs; returns the history, one dict per epoch.

        Each history row holds ``epoch`` (counting from 1), ``train_loss``,
        ``train_miou``, ``val_loss`` and ``val_miou`` (None in epochs that did not
        validate), ``lr`` and ``seconds``.
        """
        for epoch in range(self.start_epoch, self.num_epochs):
            started = time.perf_counter()
            row = {"epoch": epoch + 1, "val_loss": None, "val_miou": None, "lr": self.optimizer.param_groups[0]["lr"]}
            # TODO 7 (Assignment 1, part 2): the epoch loop.
            # Fill `row["train_loss"], row["train_miou"]` from `self._train_epoch(epoch)`;
            # step `self.lr_scheduler` once here if `self.scheduler_interval == "epoch"`.
            # Validate with `self._val_epoch(epoch)` after every `self.val_frequency`-th
            # epoch and after the last one, filling `row["val_loss"], row["val_miou"]`;
            # when the val mIoU beats `self.best_miou`, update it and call
            # `self._save_model("best")`. About 10 lines.
            raise NotImplementedError(
                'TODO 7 (Assignment 1, part 2) in dlvc/trainer.py, ImgSemSegTrainer.train: the epoch loop.'
            )
            row["seconds"] = time.perf_counter() - started
            self._end_epoch(row)
        if self._writer is not None:
            self._writer.close()
        return self.history

    # ----- given to students: everything below -----

    def _autocast(self):
        """Mixed precision for the forward pass when ``amp`` is set; a no-op otherwise."""
        if self.amp is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=AMP_DTYPES[self.amp])

    def _optimization_step(self, loss: torch.Tensor, epoch: int, step: int) -> None:
        """Backward pass, optional clipping and one optimizer step; stops on a non-finite loss."""
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"the training loss became {loss.item()} at epoch {epoch + 1}, step {step + 1}; training stopped. "
                "Lower the learning rate, clip the gradients (--clip-grad-norm), or look for NaN in the inputs. "
                f"The last good checkpoint is {self.save_dir / CHECKPOINT_NAME}"
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

    def _loader(self, dataset: Dataset, batch_size: int, num_workers: int, train: bool) -> DataLoader:
        if len(dataset) == 0:
            raise ValueError(f"{'train' if train else 'val'}_data: the dataset is empty")
        if train and self.process.distributed:
            sampler = DistributedSampler(dataset, self.process.world_size, self.process.rank, shuffle=True, seed=self.seed)
        elif train:
            sampler = RandomSampler(dataset, generator=self._generator)
        else:
            sampler = distributed.ShardSampler(len(dataset), self.process)
        return DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            num_workers=num_workers,
            pin_memory=self.device.type == "cuda",
            drop_last=train and _drops_last(len(sampler), batch_size),
            persistent_workers=num_workers > 0,
            generator=self._generator if train else None,
        )

    def _set_epoch(self, epoch: int) -> None:
        """Make the epoch's shuffling a function of ``seed`` and ``epoch`` alone."""
        self._generator.manual_seed(self.seed + epoch)
        if isinstance(self.train_loader.sampler, DistributedSampler):
            self.train_loader.sampler.set_epoch(epoch)

    def _progress(self, loader: DataLoader, description: str):
        # disable=None: bars on a terminal only, so that logs of batch jobs stay readable
        return tqdm(loader, desc=description, leave=False, disable=None if self.progress else True, dynamic_ncols=True)

    def _mean_loss(self, loss_sum: torch.Tensor, samples: int) -> float:
        totals = distributed.sum_across_processes(torch.stack([loss_sum.float(), torch.tensor(float(samples), device=self.device)]))
        return (totals[0] / totals[1]).item() if totals[1] > 0 else math.nan

    def _save_model(self, suffix: str) -> None:
        """Rank 0 writes the model's weights to ``model_<suffix>.pt``."""
        if not self.process.is_main:
            return
        if isinstance(self.segmenter, DeepSegmenter):
            self.segmenter.save(self.save_dir, suffix)
        else:
            torch.save(self.segmenter.state_dict(), self.save_dir / f"model_{suffix}.pt")

    def _end_epoch(self, row: dict) -> None:
        """Record the epoch: history, logs, plots, the last model and the checkpoint."""
        self.history.append(row)
        if not self.process.is_main:
            return
        self._save_model("last")
        self._save_checkpoint(row["epoch"])
        self._write_csv()
        for key in CSV_FIELDS[1:]:
            if row.get(key) is not None:
                self._writer.add_scalar(key.replace("_", "/", 1), row[key], row["epoch"])
        self._writer.flush()
        if row["val_miou"] is not None:
            viz.plot_curves(self.history, self.save_dir / "curves.png")
            self._write_predictions(row["epoch"])
        tqdm.write(_format_row(row, self.num_epochs))

    def _save_checkpoint(self, epochs_done: int) -> None:
        state = {
            "model": self.segmenter.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "lr_scheduler": self.lr_scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": epochs_done,
            "best_miou": self.best_miou,
            "history": self.history,
            "config": json.loads(json.dumps(self.config, default=str)),
            "rng": checkpoint.rng_state(),
        }
        checkpoint.save_atomic(state, self.save_dir / CHECKPOINT_NAME)

    def _resume(self, path: str | os.PathLike) -> None:
        state = checkpoint.load(path, map_location=self.device)
        saved, current = state["config"], json.loads(json.dumps(self.config, default=str))
        changed = [
            f"{key!r} was {saved[key]!r} in the resumed run, now {current[key]!r}"
            for key in sorted(saved.keys() & current.keys() - set(RESUME_MAY_DIFFER))
            if saved[key] != current[key]
        ]
        self.segmenter.load_state_dict(state["model"])
        try:
            self.optimizer.load_state_dict(state["optimizer"])
        except ValueError as error:
            raise ValueError(
                f"resume: {path} trained other weights than this optimizer holds ({error}); resume with the "
                f"settings that choose which weights train as they were. Changed settings: {'; '.join(changed) or 'none'}"
            ) from error
        self.lr_scheduler.load_state_dict(state["lr_scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.start_epoch = state["epoch"]
        self.best_miou = state["best_miou"]
        self.history = list(state["history"])
        checkpoint.set_rng_state(state["rng"])
        for change in changed:
            warnings.warn(f"resume: setting {change}", stacklevel=3)
        if self.start_epoch >= self.num_epochs and self.process.is_main:
            tqdm.write(f"{path}: finished (epoch {self.num_epochs} of {self.num_epochs}); raise --epochs to train further")

    def _write_csv(self) -> None:
        with open(self.save_dir / "metrics.csv", "w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=CSV_FIELDS)
            writer.writeheader()
            writer.writerows({key: row.get(key) for key in CSV_FIELDS} for row in self.history)

    def _write_predictions(self, epoch: int) -> None:
        count = min(self.num_preview, len(self.val_data))
        images, targets = zip(*(self.val_data[index] for index in range(count)))
        images, targets = torch.stack(images), torch.stack(targets)
        self.segmenter.eval()
        with torch.inference_mode(), self._autocast():
            predictions = self.segmenter(images.to(self.device)).argmax(dim=1).cpu()
        classes = getattr(self.val_data, "classes_seg", None) or self.val_metric.classes
        viz.prediction_grid(images, targets, predictions, classes, self.save_dir / "predictions.png", title=f"epoch {epoch}")


def batches_per_epoch(num_samples: int, batch_size: int, world_size: int = 1) -> int:
    """Training batches per epoch and process, as the trainer's loader makes them.

    Each process gets ``ceil(num_samples / world_size)`` samples (torch's
    DistributedSampler pads the last shard); the last incomplete batch is dropped,
    unless it is the only one. Per-step schedules need this number up front.
    """
    per_process = math.ceil(num_samples / world_size)
    return per_process // batch_size if _drops_last(per_process, batch_size) else math.ceil(per_process / batch_size)


def _drops_last(samples: int, batch_size: int) -> bool:
    """Drop the last incomplete batch (a batch of one breaks BatchNorm) unless it is the only one."""
    return samples > batch_size


def _format_row(row: dict, num_epochs: int) -> str:
    text = f"epoch {row['epoch']:>3}/{num_epochs}  train loss {row['train_loss']:.4f} mIoU {row['train_miou']:.4f}"
    if row["val_miou"] is not None:
        text += f" | val loss {row['val_loss']:.4f} mIoU {row['val_miou']:.4f}"
    return text + f" | lr {row['lr']:.2e} | {row['seconds']:.1f} s"


def _check_positive_int(**values) -> None:
    for name, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name}: expected a positive int, got {value!r}")
