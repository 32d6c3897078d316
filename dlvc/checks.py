"""Small helpers for the input checks that every public function makes."""

import torch


def describe(value) -> str:
    """What an argument is, for error messages: ``"torch.uint8 tensor of shape (3, 64, 64)"`` or a type name."""
    if isinstance(value, torch.Tensor):
        return f"{value.dtype} tensor of shape {tuple(value.shape)}"
    return type(value).__name__
