"""Learning-curve plots: one run's curves and the comparison of several runs."""

import pytest
from PIL import Image

from dlvc.viz import plot_curves, plot_runs

HISTORY = [
    {"epoch": 1, "train_loss": 1.0, "train_miou": 0.2, "val_loss": None, "val_miou": None},
    {"epoch": 2, "train_loss": 0.8, "train_miou": 0.3, "val_loss": 0.9, "val_miou": 0.25},
]


def test_plot_curves_writes_a_png_of_one_run(tmp_path):
    path = plot_curves(HISTORY, tmp_path / "curves.png")
    assert Image.open(path).format == "PNG"


def test_plot_runs_writes_one_png_of_several_runs(tmp_path):
    path = plot_runs({"scratch": HISTORY, "freeze": HISTORY[:1]}, tmp_path / "sub" / "comparison.png", title="runs")
    assert Image.open(path).format == "PNG" and path.parent.name == "sub"


def test_plot_runs_needs_a_run(tmp_path):
    with pytest.raises(ValueError, match="at least one run"):
        plot_runs({}, tmp_path / "comparison.png")
