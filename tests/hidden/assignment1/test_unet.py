"""Graded: Assignment 1, part 3, the UNet forward pass (TODO 1 in dlvc/models/unet.py).

The student's ``UNet`` is built in a sandboxed worker with the configuration the
reference is built with here, and the reference's weights are loaded into it,
every parameter and BatchNorm statistic perturbed at random, so that two layers
that start alike no longer are. Outputs (eval mode) and gradients (train mode)
must then equal the reference's.
"""

import pytest
import torch

from dlvc.course.expect import expect_tensor, fail
from dlvc.course.sandbox import describe_call
from dlvc.course.worker import forward_and_gradients
from dlvc.models.unet import UNet

OUTPUT_TOLERANCE = 1e-4
GRADIENT_TOLERANCE = 1e-3


def random_config(rng: torch.Generator) -> dict:
    return {
        "num_classes": int(torch.randint(2, 5, (1,), generator=rng)),
        "base_channels": 4,
        "depth": int(torch.randint(2, 4, (1,), generator=rng)),
    }


def perturbed_reference(config: dict, rng: torch.Generator) -> UNet:
    """The reference UNet with every parameter and buffer moved off its initial value."""
    model = UNet(**config)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if not tensor.is_floating_point():
                continue
            noise = torch.randn(tensor.shape, generator=rng)
            if name.endswith("running_var"):
                tensor.copy_(0.5 + torch.rand(tensor.shape, generator=rng))
            else:
                tensor.add_(0.1 * noise)
    return model


def size_of(rng: torch.Generator, config: dict, odd: bool) -> tuple[int, int]:
    """A (H, W) that is a multiple of 2 ** depth, or (odd) one that is not, and not square."""
    step = 2 ** config["depth"]
    height, width = (step * int(torch.randint(2, 5, (1,), generator=rng)) for _ in range(2))
    if odd:
        height, width = height + 1 + 2 * int(torch.randint(0, 2, (1,), generator=rng)), width + 3
    return height, width


def student_unet(worker, config: dict, reference: UNet):
    """The student's UNet with the reference's (perturbed) weights."""
    model = worker.new("dlvc.models.unet:UNet", **config)
    model.call("load_state_dict", reference.state_dict())
    return model


def describe_unet(config: dict) -> str:
    return f"UNet({', '.join(f'{key}={value}' for key, value in config.items())})"


@pytest.mark.parametrize("odd", [False, True], ids=["sides multiples of 2**depth", "odd non-square sides"])
@pytest.mark.graded(part="unet", points=0.5)
def test_unet_returns_logits_at_the_input_size(worker, rng, odd):
    """UNet returns (B, K, H, W) logits at the input's size"""
    config = random_config(rng)
    height, width = size_of(rng, config, odd)
    images = torch.randn(2, 3, height, width, generator=rng)
    model = worker.new("dlvc.models.unet:UNet", **config)
    model.call("eval")
    logits = model.call(None, images)
    what = f"{describe_unet(config)}.eval(), then {describe_call('forward', (images,))}"
    if not isinstance(logits, torch.Tensor):
        fail(f"{what}: expected a logits tensor, got {type(logits).__name__}")
    expected = (2, config["num_classes"], height, width)
    if tuple(logits.shape) != expected:
        fail(f"{what}: expected logits of shape {expected}, got {tuple(logits.shape)}")


@pytest.mark.parametrize("odd", [False, True], ids=["sides multiples of 2**depth", "odd non-square sides"])
@pytest.mark.graded(part="unet", points=1)
def test_unet_logits_equal_the_reference_in_eval_mode(worker, rng, odd):
    """In eval mode, with the reference's weights, the logits equal the reference's"""
    config = random_config(rng)
    reference = perturbed_reference(config, rng).eval()
    images = torch.randn(2, 3, *size_of(rng, config, odd), generator=rng)
    model = student_unet(worker, config, reference)
    model.call("eval")
    with torch.no_grad():
        expected = reference(images)
    what = f"{describe_unet(config)} with the reference's weights, .eval(), then {describe_call('forward', (images,))}"
    expect_tensor(model.call(None, images), expected, what, atol=OUTPUT_TOLERANCE, rtol=OUTPUT_TOLERANCE)


@pytest.mark.graded(part="unet", points=1)
def test_unet_gradients_equal_the_reference_in_train_mode(worker, rng):
    """In train mode, the logits and the gradients for the input and every parameter equal the reference's"""
    config = random_config(rng)
    reference = perturbed_reference(config, rng).train()
    images = torch.randn(2, 3, *size_of(rng, config, odd=True), generator=rng)
    output_weights = torch.randn(2, config["num_classes"], *images.shape[2:], generator=rng)
    model = student_unet(worker, config, reference)
    got = worker.call("$probe:forward_and_gradients", model, images, output_weights)
    expected = forward_and_gradients(reference, images, output_weights)
    what = f"{describe_unet(config)} with the reference's weights in train mode, {describe_call('forward', (images,))} and a backward pass"
    expect_tensor(got["output"], expected["output"], f"{what}: the logits", atol=OUTPUT_TOLERANCE, rtol=OUTPUT_TOLERANCE)
    expect_tensor(got["input_grad"], expected["input_grad"], f"{what}: the gradient for the images", atol=GRADIENT_TOLERANCE, rtol=GRADIENT_TOLERANCE)
    for name, gradient in expected["parameter_grads"].items():
        seen = got["parameter_grads"].get(name)
        if seen is None:
            fail(f"{what}: the parameter {name} got no gradient: it is not used in forward")
        expect_tensor(seen, gradient, f"{what}: the gradient of {name}", atol=GRADIENT_TOLERANCE, rtol=GRADIENT_TOLERANCE)
