"""Graded: Assignment 2, part 5, transfer learning (TODO 2.5 in dlvc/models/segmenter.py, TODO 2.6 in dlvc/models/freezing.py).

Graded on behaviour, with a small network the grader builds in the worker from the
student's ``DeepSegmenter`` and ``Freezable`` (an encoder with BatchNorm and
dropout, and a head): ``load(path, only=("encoder",))`` loads the encoder and
nothing else; after ``freeze()`` and one training step as the trainer takes it,
the optimizer holds only the head's parameters, and the encoder is bit-identical
and in eval mode.
"""

from functools import partial

import pytest
import torch

from dlvc.course.grader.expect import expect_equal, expect_tensor, fail
from dlvc.course.sandboxed.probes import transfer_net

from ..modules import reference_module

ENCODER = "net.encoder."
HEAD = "net.head."


def pretrained_file(worker, rng, num_classes: int):
    """A source network's weights, perturbed, saved in the worker's scratch folder; the state and the file's path."""
    state = reference_module(rng, partial(transfer_net, num_classes)).net.state_dict()
    path = worker.scratch("pretrained.pt")
    worker.call("torch:save", state, path)
    return state, path


def student_state(model) -> dict:
    state = model.call("state_dict")
    if not isinstance(state, dict):
        fail(f"DeepSegmenter.state_dict() should map names to tensors, got {type(state).__name__}")
    return state


def load_encoder(worker, rng, source_classes: int, target_classes: int):
    """The student's target network before and after ``load(file, only=("encoder",))``, the file's state and what load returned."""
    state, path = pretrained_file(worker, rng, source_classes)
    model = worker.call("$probe:transfer_net", target_classes)
    before = student_state(model)
    loaded = model.call("load", path, only=("encoder",))
    return before, student_state(model), state, loaded


def expect_encoder_loaded(after: dict, state: dict, what: str) -> None:
    for key, value in state.items():
        if key.startswith("encoder."):
            expect_tensor(after.get("net." + key), value, f"{what}: net.{key} after loading", atol=0, rtol=0)


@pytest.mark.graded(part="transfer", points=1)
def test_load_only_the_encoder_leaves_a_head_of_the_same_shape_alone(worker, rng):
    """A file that holds a whole network: only its encoder is loaded, the head keeps its own weights"""
    before, after, state, _ = load_encoder(worker, rng, source_classes=3, target_classes=3)
    what = "DeepSegmenter(3 classes).load(a file with encoder and head of 3 classes, only=('encoder',))"
    expect_encoder_loaded(after, state, what)
    for key, value in before.items():
        if key.startswith(HEAD):
            expect_tensor(after.get(key), value, f"{what}: {key} must keep its value", atol=0, rtol=0)


@pytest.mark.graded(part="transfer", points=0.5)
def test_load_only_the_encoder_into_a_network_with_another_head(worker, rng):
    """The usual case, a head for other classes: the encoder is loaded and load returns the names it loaded"""
    _, after, state, loaded = load_encoder(worker, rng, source_classes=5, target_classes=3)
    what = "DeepSegmenter(3 classes).load(a file with a head of 5 classes, only=('encoder',))"
    expect_encoder_loaded(after, state, what)
    if not isinstance(loaded, list):
        fail(f"{what}: should return the list of loaded names, got {type(loaded).__name__}")
    expect_equal(sorted(loaded), sorted(key for key in state if key.startswith("encoder.")), f"{what}: the names it returns")


def fine_tune(worker, rng) -> dict:
    """The student's network, its encoder frozen, after one SGD step on a random batch."""
    images = torch.randn(4, 3, 8, 8, generator=rng)
    targets = torch.randint(0, 3, (4, 8, 8), generator=rng)
    model = worker.call("$probe:transfer_net", 3)
    result = worker.call("$probe:fine_tuning_step", model, images, targets, 0.5)
    if not isinstance(result, dict):
        fail(f"a training step after freeze() returned {type(result).__name__}")
    return result


STEP = "model.part('encoder').freeze(), model.train(), SGD over parameter_groups(model), one step"


@pytest.mark.graded(part="transfer", points=1)
def test_the_optimizer_holds_only_the_head_after_freezing(worker, rng):
    """After freeze(), the parameters that require gradients, and so the optimizer's, are the head's and no others"""
    result = fine_tune(worker, rng)
    expected = sorted(name for name, _ in transfer_net(3).named_parameters() if name.startswith(HEAD))
    expect_equal(result["optimized"], expected, f"{STEP}: the parameters the optimizer holds")


@pytest.mark.graded(part="transfer", points=1)
def test_a_frozen_encoder_is_bit_identical_after_a_training_step(worker, rng):
    """Weights and BatchNorm statistics of a frozen encoder do not change in a training step"""
    result = fine_tune(worker, rng)
    for key, value in result["before"].items():
        if key.startswith(ENCODER):
            expect_tensor(result["after"].get(key), value, f"{STEP}: {key} must not change", atol=0, rtol=0)


@pytest.mark.graded(part="transfer", points=0.5)
def test_a_frozen_encoder_stays_in_eval_mode_when_the_model_trains(worker, rng):
    """model.train() leaves every module of a frozen encoder in eval mode and puts the head in train mode"""
    training = fine_tune(worker, rng)["training"]
    for name, expected in (("net.encoder", False), ("net.encoder.layers.1", False), ("net.encoder.layers.3", False), ("net.head", True)):
        expect_equal(training.get(name), expected, f"{STEP}: {name}.training")
