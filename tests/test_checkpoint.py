"""Checkpoints: atomic writes, safe loading, and random states that restore exactly."""

import random
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from dlvc import checkpoint
from dlvc.distributed import ProcessInfo


def test_checkpoint_round_trips_with_weights_only_loading(tmp_path):
    state = {"model": {"w": torch.arange(3.0)}, "epoch": 2, "history": [{"val_miou": None, "loss": 0.5}], "rng": checkpoint.rng_state()}
    checkpoint.save_atomic(state, tmp_path / "checkpoint.pt")
    loaded = checkpoint.load(tmp_path / "checkpoint.pt")
    assert torch.equal(loaded["model"]["w"], state["model"]["w"])
    assert loaded["epoch"] == 2 and loaded["history"] == state["history"]


def test_a_write_killed_halfway_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    checkpoint.save_atomic({"epoch": 1}, path)

    def write_half_then_die(state, file):
        file.write(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", write_half_then_die)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save_atomic({"epoch": 2}, path)
    monkeypatch.undo()
    assert checkpoint.load(path) == {"epoch": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"], "the partial file was left behind"


def test_restored_random_state_repeats_every_generator():
    checkpoint.seed_everything(3)
    state = checkpoint.rng_state()
    first = (random.random(), np.random.rand(), torch.rand(1).item())
    checkpoint.seed_everything(99)
    checkpoint.set_rng_state(state)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == first


def test_missing_checkpoint_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.pt"):
        checkpoint.load(tmp_path / "nothing.pt")


def test_seed_must_be_an_int():
    with pytest.raises(TypeError, match="seed"):
        checkpoint.seed_everything(1.5)


def training_objects(seed: int, config: dict) -> SimpleNamespace:
    """What save_training and resume_training read of a trainer, around a one-layer model."""
    torch.manual_seed(seed)
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    return SimpleNamespace(
        segmenter=model,
        optimizer=optimizer,
        lr_scheduler=torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=0.5),
        scaler=torch.amp.GradScaler("cpu", enabled=False),
        best_miou=0.75,
        history=[{"epoch": 1, "val_miou": 0.75}],
        config=config,
        device=torch.device("cpu"),
        num_epochs=4,
        process=ProcessInfo(),
    )


def test_resumed_training_state_is_the_saved_one(tmp_path):
    saved = training_objects(seed=0, config={"lr": 0.1, "out": tmp_path})
    saved.segmenter(torch.randn(5, 3)).sum().backward()
    saved.optimizer.step()
    saved.lr_scheduler.step()
    checkpoint.save_training(saved, tmp_path / "checkpoint.pt", epochs_done=1)

    resumed = training_objects(seed=1, config={"lr": 0.1, "out": "elsewhere"})
    progress = checkpoint.resume_training(resumed, tmp_path / "checkpoint.pt")
    assert progress == (1, 0.75, [{"epoch": 1, "val_miou": 0.75}]), f"resume_training returned {progress}"
    assert torch.equal(resumed.segmenter.weight, saved.segmenter.weight), "the weights were not restored"
    assert resumed.optimizer.state_dict()["state"][0]["step"] == 1, "the optimizer's state was not restored"
    assert resumed.lr_scheduler.get_last_lr() == [0.05], "the scheduler's state was not restored"
