"""Conventions shared by every part of the kit."""

IGNORE_INDEX = 255
"""Target label of pixels that count for no class: loss, metric and padding skip them."""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
"""Per-channel statistics that every image is normalised with, (R, G, B)."""
