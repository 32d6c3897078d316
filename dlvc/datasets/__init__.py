"""Datasets: the real ones on torchvision's loaders, the synthetic ones, paired transforms and storage caches."""
