"""Checkpoints that survive a kill, and the random-number state that makes resuming exact.

A training checkpoint is one file holding everything needed to continue: model,
optimizer, scheduler and grad-scaler state, the epoch, the best validation mIoU,
the metric history, the run's configuration and the states of every random number
generator (Python, NumPy, torch CPU and CUDA). It is written to a temporary file in
the same folder and renamed over the old one, so a kill during the write leaves the
previous checkpoint intact.

Everything is stored as tensors, numbers, strings, lists and dicts, so checkpoints
load with ``torch.load(weights_only=True)``: loading one runs no pickled code.

:func:`save_training` and :func:`resume_training` write and read the checkpoint of
an :class:`~dlvc.trainer.ImgSemSegTrainer`, under the keys ``model``, ``optimizer``,
``lr_scheduler``, ``scaler``, ``epoch`` (epochs done), ``best_miou``, ``history``,
``config`` and ``rng``.
"""

import json
import os
import random
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

RESUME_MAY_DIFFER = ("resume", "epochs", "out", "device", "workers", "threads", "progress", "overwrite", "download")
"""Settings that may change when a run is resumed; a change to any other one is warned about."""


def save_atomic(state: dict, path: str | os.PathLike) -> Path:
    """``torch.save(state, path)`` such that ``path`` is either the old file or the complete new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as file:
            torch.save(state, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def load(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint written by :func:`save_atomic`; a missing file names the path."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint: no file at {path}")
    return torch.load(path, map_location=map_location, weights_only=True)


def rng_state() -> dict:
    """The state of every random number generator a training run draws from."""
    kind, keys, position, has_gauss, cached_gauss = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "position": position,
            "has_gauss": has_gauss,
            "cached_gauss": cached_gauss,
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` returned."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy_state = state["numpy"]
    np.random.set_state(
        (
            numpy_state["kind"],
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["position"],
            numpy_state["has_gauss"],
            numpy_state["cached_gauss"],
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) with ``seed``."""
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed: expected an int, got {type(seed).__name__}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def save_training(trainer, path: str | os.PathLike, epochs_done: int) -> None:
    """Write everything needed to resume ``trainer`` after ``epochs_done`` epochs to ``path``, atomically.

    Args:
        trainer: an :class:`~dlvc.trainer.ImgSemSegTrainer`; its ``segmenter``,
            ``optimizer``, ``lr_scheduler``, ``scaler``, ``best_miou``, ``history`` and
            ``config`` are saved, with the random-number states.
        path: the checkpoint file.
        epochs_done: the epochs finished, counting from 1.
    """
    state = {
        "model": trainer.segmenter.state_dict(),
        "optimizer": trainer.optimizer.state_dict(),
        "lr_scheduler": trainer.lr_scheduler.state_dict(),
        "scaler": trainer.scaler.state_dict(),
        "epoch": epochs_done,
        "best_miou": trainer.best_miou,
        "history": trainer.history,
        "config": _plain(trainer.config),
        "rng": rng_state(),
    }
    save_atomic(state, path)


def resume_training(trainer, path: str | os.PathLike) -> tuple[int, float, list[dict]]:
    """Load a checkpoint of :func:`save_training` into ``trainer`` and restore the random-number states.

    Args:
        trainer: an :class:`~dlvc.trainer.ImgSemSegTrainer`; its ``segmenter``,
            ``optimizer``, ``lr_scheduler`` and ``scaler`` take the saved states in
            place. A setting of its ``config`` that differs from the saved run's is
            warned about, unless it is one of :data:`RESUME_MAY_DIFFER`.
        path: the checkpoint file.

    Returns:
        Where the run stands: the epochs done, the best validation mIoU so far and
        the history, one dict per epoch done.
    """
    state = load(path, map_location=trainer.device)
    saved, current = state["config"], _plain(trainer.config)
    changed = [
        f"{key!r} was {saved[key]!r} in the resumed run, now {current[key]!r}"
        for key in sorted(saved.keys() & current.keys() - set(RESUME_MAY_DIFFER))
        if saved[key] != current[key]
    ]
    trainer.segmenter.load_state_dict(state["model"])
    try:
        trainer.optimizer.load_state_dict(state["optimizer"])
    except ValueError as error:
        raise ValueError(
            f"resume: {path} trained other weights than this optimizer holds ({error}); resume with the "
            f"settings that choose which weights train as they were. Changed settings: {'; '.join(changed) or 'none'}"
        ) from error
    trainer.lr_scheduler.load_state_dict(state["lr_scheduler"])
    trainer.scaler.load_state_dict(state["scaler"])
    set_rng_state(state["rng"])
    for change in changed:
        warnings.warn(f"resume: setting {change}", stacklevel=3)
    if state["epoch"] >= trainer.num_epochs and trainer.process.is_main:
        tqdm.write(f"{path}: finished (epoch {trainer.num_epochs} of {trainer.num_epochs}); raise --epochs to train further")
    return state["epoch"], state["best_miou"], list(state["history"])


def _plain(config: dict) -> dict:
    """``config`` as JSON would give it back: paths and other objects become strings."""
    return json.loads(json.dumps(config, default=str))
