"""The steps every module-level graded test shares: one network part against the reference's.

The student's module is built in the sandboxed worker with the configuration the
reference is built with here. Its state-dict keys and shapes must be the
reference's; then the reference's weights, every parameter and buffer perturbed at
random (so that two layers that start alike, such as ``norm1`` and ``norm2``, no
longer are), are loaded into it, and its outputs and the gradients of a weighted
sum of them are compared with the reference's on the same random inputs.
"""

from collections.abc import Callable
from functools import partial

import torch
from torch import nn

from dlvc.course.grader.expect import expect_tensor, fail
from dlvc.course.grader.sandbox import describe_call
from dlvc.course.sandboxed.probes import forward_and_gradients

OUTPUT_TOLERANCE = 1e-4
GRADIENT_TOLERANCE = 1e-3


def perturbed(module: nn.Module, rng: torch.Generator) -> nn.Module:
    """``module`` with every floating-point parameter and buffer moved off its initial value, in place."""
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if not tensor.is_floating_point():
                continue
            if name.endswith("running_var"):
                tensor.copy_(0.5 + torch.rand(tensor.shape, generator=rng))
            else:
                tensor.add_(0.1 * torch.randn(tensor.shape, generator=rng))
    return module


def reference_module(rng: torch.Generator, build: Callable[[], nn.Module]) -> nn.Module:
    """``build()`` with its initial weights drawn from ``rng``, then perturbed: this grading run's reference.

    Seeding the build makes the reference's weights, and so the grades, the same
    whenever the run's seed is.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=rng)))
        module = build()
    return perturbed(module, rng)


def describe_module(name: str, config: dict) -> str:
    """``Block(dim=32, num_heads=2)``: how a test names the module it built."""
    return f"{name}({', '.join(f'{key}={value!r}' for key, value in config.items())})"


def reference_and_student(worker, rng: torch.Generator, module_class: type[nn.Module], config: dict):
    """The reference ``module_class(**config)``, the student's class of that name holding its weights, and how messages name them.

    The reference's weights come from ``rng``. The student's module is built in the
    worker with ``config``; its state-dict keys and shapes must be the reference's (the
    message lists the missing and unexpected keys).
    """
    reference = reference_module(rng, partial(module_class, **config))
    what = f"{describe_module(module_class.__name__, config)} with the reference's weights"
    student = student_copy(worker, f"{module_class.__module__}:{module_class.__name__}", config, reference, what)
    return reference, student, what


def student_copy(worker, target: str, config: dict, reference: nn.Module, what: str):
    """The student's ``target`` (``"module:Class"``) built with ``config``, holding the reference's weights."""
    return with_reference_weights(worker.new(target, **config), reference, what)


def with_reference_weights(module, reference: nn.Module, what: str):
    """The student's ``module`` (a Remote) after its state-dict keys and shapes are checked and the reference's weights loaded."""
    expect_matching_state(module.call("state_dict"), reference.state_dict(), what)
    module.call("load_state_dict", reference.state_dict())
    return module


def expect_matching_state(got, expected: dict, what: str) -> None:
    """The student's state dict has the reference's keys, each with the reference's shape."""
    if not isinstance(got, dict) or not all(isinstance(value, torch.Tensor) for value in got.values()):
        fail(f"{what}: state_dict() should map names to tensors, got {type(got).__name__}")
    missing = [key for key in expected if key not in got]
    unexpected = [key for key in got if key not in expected]
    if missing or unexpected:
        fail(
            f"{what}: its parameters and buffers are not those the assignment's layers define; "
            f"missing: {', '.join(missing) or 'none'}; unexpected: {', '.join(unexpected) or 'none'}. "
            "Keep the layers that __init__ creates and their names."
        )
    for key, tensor in expected.items():
        if tuple(got[key].shape) != tuple(tensor.shape):
            fail(f"{what}: {key} has shape {tuple(got[key].shape)}, expected {tuple(tensor.shape)}")


def expect_eval_outputs(module, reference: nn.Module, inputs, *arguments, what: str, atol: float = OUTPUT_TOLERANCE):
    """In eval mode, the student's ``module(inputs, *arguments)`` equals the reference's."""
    module.call("eval")
    reference.eval()
    with torch.no_grad():
        expected = reference(inputs, *arguments)
    call = f"{what}, .eval(), then {describe_call('forward', (inputs, *arguments))}"
    expect_tensor(module.call(None, inputs, *arguments), expected, call, atol=atol, rtol=atol)


def expect_train_gradients(
    worker, module, reference: nn.Module, inputs, *arguments, what: str, rng: torch.Generator,
    atol: float = OUTPUT_TOLERANCE, gradient_atol: float = GRADIENT_TOLERANCE,
):
    """In train mode, the outputs and the gradients for the tensor inputs and every parameter equal the reference's.

    The loss is a random weighted sum of the output.

    Both passes start from one seed, so dropout and stochastic depth draw alike when
    the student's module draws in the reference's order.
    """
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=rng))
    module.call("train")
    reference.train()
    expected = forward_and_gradients(reference, inputs, *arguments, seed=seed)
    got = worker.call("$probe:forward_and_gradients", module, inputs, *arguments, seed=seed)
    call = f"{what} in train mode, {describe_call('forward', (inputs, *arguments))} and a backward pass"
    expect_tensor(got["output"], expected["output"], f"{call}: the output", atol=atol, rtol=atol)
    if isinstance(inputs, list):
        for index, (seen, gradient) in enumerate(zip(got["input_grad"], expected["input_grad"])):
            expect_tensor(seen, gradient, f"{call}: the gradient for input {index}", atol=gradient_atol, rtol=gradient_atol)
    else:
        expect_tensor(got["input_grad"], expected["input_grad"], f"{call}: the gradient for the input", atol=gradient_atol, rtol=gradient_atol)
    for index, (seen, gradient) in enumerate(zip(got["argument_grads"], expected["argument_grads"]), start=2):
        if gradient is not None:
            expect_tensor(seen, gradient, f"{call}: the gradient for argument {index}", atol=gradient_atol, rtol=gradient_atol)
    for name, gradient in expected["parameter_grads"].items():
        seen = got["parameter_grads"].get(name)
        if gradient is None:
            continue
        if seen is None:
            fail(f"{call}: the parameter {name} got no gradient: forward does not use it")
        expect_tensor(seen, gradient, f"{call}: the gradient of {name}", atol=gradient_atol, rtol=gradient_atol)
