"""Pretrained weights from the local torch hub cache.

torchvision looks for a weights file in ``$TORCH_HOME/hub/checkpoints/`` (default
``~/.cache/torch/hub/checkpoints/``) before it downloads it. The kit downloads only
when asked (``download=True``, the scripts' ``--download``); otherwise a missing
file is an error that says which file to put where, so that a lab server without a
network can be prepared by copying the file.
"""

from pathlib import Path

import torch
from torchvision.models import WeightsEnum


def cache_path(weights: WeightsEnum) -> Path:
    """Where torchvision looks for ``weights`` before downloading them."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name


def require_cached(weights: WeightsEnum, download: bool) -> Path:
    """The cached file of ``weights``; raises FileNotFoundError naming it unless it exists or ``download``."""
    path = cache_path(weights)
    if not download and not path.is_file():
        raise FileNotFoundError(
            f"pretrained backbone: {path.name} is not in the torch hub cache. Put the file at {path} "
            f"(from {weights.url}; TORCH_HOME moves the cache), or pass --download (download=True) to fetch it"
        )
    return path
