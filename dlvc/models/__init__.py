"""Segmentation models and the DeepSegmenter wrapper that saves and loads them."""
