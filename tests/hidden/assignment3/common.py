"""What the graded tests of Assignment 3 share: small random configurations, reference modules, plain torch modules.

Plain ``torch.nn`` modules are written as layers, ``(class name, keyword arguments)``
pairs, and built alike here and in the student's worker (where they stay, as
Remote handles): the models that ``count_parameters`` counts, and the stand-ins
that take the place of the decoder's pyramid pooling and upsampling modules, so
that the decoder's part is graded on its own.
"""

from collections.abc import Callable
from functools import partial

import torch
from torch import nn

from dlvc.course.grader.expect import fail
from dlvc.course.grader.sandbox import describe_value

from ..modules import describe_module, reference_module

PAPER_BINS = (1, 2, 3, 6)

Layer = tuple[str, dict]
"""A torch.nn module as its class name and keyword arguments: ``("Conv2d", {"in_channels": 4, ...})``."""


def draw(rng: torch.Generator, low: int, high: int) -> int:
    """A random integer in [low, high]."""
    return int(torch.randint(low, high + 1, (1,), generator=rng))


def random_bins(rng: torch.Generator) -> tuple[int, ...]:
    """Two to four of the paper's bins (1, 2, 3, 6), in increasing order."""
    count = draw(rng, 2, len(PAPER_BINS))
    chosen = torch.randperm(len(PAPER_BINS), generator=rng)[:count].sort().values
    return tuple(PAPER_BINS[index] for index in chosen.tolist())


def build_here(name: str, *modules, **arguments) -> nn.Module:
    """``torch.nn.<name>(*modules, **arguments)``, built in this process."""
    return getattr(nn, name)(*modules, **arguments)


def builder_in(worker) -> Callable:
    """Like :func:`build_here`, but the module is built in the student's worker and stays there (a Remote handle)."""
    return lambda name, *modules, **arguments: worker.new(f"torch.nn:{name}", *modules, **arguments)


def build(new: Callable, layers: list[Layer]):
    """The module of one layer, or an ``nn.Sequential`` of several, made by ``new`` (build_here or builder_in(worker))."""
    modules = [new(name, **arguments) for name, arguments in layers]
    return modules[0] if len(modules) == 1 else new("Sequential", *modules)


def reference_and_remote(worker, rng: torch.Generator, layers: list[Layer]):
    """The module of ``layers`` built here (weights from ``rng``) and in the worker, holding the same weights."""
    here = reference_module(rng, partial(build, build_here, layers))
    there = build(builder_in(worker), layers)
    there.call("load_state_dict", here.state_dict())
    return here, there


def describe_layers(layers: list[Layer]) -> str:
    """``Sequential(Conv2d(in_channels=4, ...), ReLU())``: how messages name a module built from layers."""
    described = [describe_module(name, arguments) for name, arguments in layers]
    return described[0] if len(described) == 1 else f"Sequential({', '.join(described)})"


def expect_shape(got, expected: tuple[int, ...], what: str, meaning: str) -> None:
    """``got`` is a tensor of shape ``expected``; ``meaning`` says in words what that shape is."""
    if not isinstance(got, torch.Tensor):
        fail(f"{what}: expected a tensor of shape {expected}, got {describe_value(got)}")
    if tuple(got.shape) != expected:
        fail(f"{what}: expected shape {expected} ({meaning}), got {tuple(got.shape)}")
