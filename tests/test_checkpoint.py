"""Checkpoints: atomic writes, safe loading, and random states that restore exactly."""

import random

import numpy as np
import pytest
import torch

from dlvc import checkpoint


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
