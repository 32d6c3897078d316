"""Assignment 2, part 5: transfer learning (TODO 2.5 in dlvc/models/segmenter.py, TODO 2.6 in dlvc/models/freezing.py)."""

import torch
from torch import nn

from dlvc.models.freezing import Freezable
from dlvc.models.segmenter import DeepSegmenter
from dlvc.optim import build_optimizer, parameter_groups


class Encoder(Freezable):
    """(B, 3, H, W) -> (B, 4, H, W), with a BatchNorm and dropout, as real encoders have."""

    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.5))

    def forward(self, images):
        return self.layers(images)


class Net(nn.Module):
    def __init__(self, num_classes: int):
        super().__init__()
        self.encoder = Encoder()
        self.head = nn.Conv2d(4, num_classes, 1)

    def forward(self, images):
        return self.head(self.encoder(images))


def test_load_only_the_encoder_into_a_model_with_another_head(tmp_path):
    source = DeepSegmenter(Net(num_classes=5))
    path = source.save(tmp_path, "encoder")
    target = DeepSegmenter(Net(num_classes=3))
    head_before = target.net.head.weight.clone()
    loaded = target.load(path, only=("encoder",))
    expected = [f"encoder.{key}" for key in source.net.encoder.state_dict()]
    assert sorted(loaded) == sorted(expected), f"load(only=('encoder',)) must return the names of the encoder's weights {expected}, got {loaded}"
    for key, value in source.net.encoder.state_dict().items():
        assert torch.equal(target.net.encoder.state_dict()[key], value), f"encoder.{key} was not loaded from the file"
    assert torch.equal(target.net.head.weight, head_before), "the head must keep its own weights: load only the encoder"


def test_load_only_the_encoder_leaves_a_head_of_the_same_shape_alone(tmp_path):
    path = DeepSegmenter(Net(num_classes=3)).save(tmp_path, "all")
    target = DeepSegmenter(Net(num_classes=3))
    head_before = target.net.head.weight.clone()
    target.load(path, only=("encoder",))
    assert torch.equal(target.net.head.weight, head_before), "the file holds a head too, but only=('encoder',) must not load it"


def test_a_frozen_encoder_gets_no_gradients_and_the_optimizer_only_the_head():
    model = DeepSegmenter(Net(num_classes=3))
    model.net.encoder.freeze()
    assert not any(parameter.requires_grad for parameter in model.net.encoder.parameters()), "a frozen encoder's weights must not require gradients"
    optimizer = build_optimizer("adamw", parameter_groups(model, weight_decay=0.01), lr=1e-3)
    optimized = {id(parameter) for group in optimizer.param_groups for parameter in group["params"]}
    assert optimized == {id(parameter) for parameter in model.net.head.parameters()}, "the optimizer must hold the head's parameters and nothing else"


def test_a_frozen_encoder_stays_in_eval_mode_when_the_model_trains():
    model = DeepSegmenter(Net(num_classes=3))
    model.net.encoder.freeze()
    model.train()
    assert not any(module.training for module in model.net.encoder.modules()), "model.train() must leave a frozen encoder in eval mode"
    assert model.net.head.training, "the head must follow model.train()"


def test_a_frozen_encoder_is_unchanged_by_a_training_step():
    model = DeepSegmenter(Net(num_classes=3))
    model.net.encoder.freeze()
    before = {key: value.clone() for key, value in model.net.encoder.state_dict().items()}
    optimizer = build_optimizer("sgd", parameter_groups(model, weight_decay=0.0), lr=0.1)
    model.train()
    loss = nn.functional.cross_entropy(model(torch.randn(4, 3, 8, 8)), torch.randint(0, 3, (4, 8, 8)))
    loss.backward()
    optimizer.step()
    for key, value in model.net.encoder.state_dict().items():
        assert torch.equal(value, before[key]), f"encoder.{key} changed in a training step: a frozen encoder keeps its weights and BatchNorm statistics"
