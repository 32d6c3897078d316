"""train.py and viz_pets.py from the command line, and a two-process torchrun training."""

import csv
import json
import sys
from pathlib import Path

import pytest
import torch

from dlvc.datasets.synthetic import SyntheticPets
from dlvc.metrics import SegMetrics
from dlvc.models.segmenter import DeepSegmenter
from dlvc.models.unet import UNet
from top_level_scripts import import_script, run_script

TINY_RUN = [
    "--dataset", "synthetic-pets", "--model", "unet", "--unet-width", "4", "--unet-depth", "2",
    "--train-samples", "16", "--val-samples", "8", "--batch-size", "4", "--workers", "0",
    "--device", "cpu", "--val-frequency", "1", "--no-progress",
]  # fmt: skip


def csv_rows(folder: Path) -> list[dict]:
    with open(folder / "metrics.csv") as file:
        return list(csv.DictReader(file))


def test_train_py_documents_every_flag():
    text = run_script("train.py", "--help").stdout
    for flag in ("--dataset", "--model", "--data-root", "--download", "--epochs", "--batch-size", "--lr", "--device",
                 "--amp", "--resume", "--out", "--val-frequency", "--workers", "--seed"):  # fmt: skip
        assert flag in text, f"train.py --help does not mention {flag}"


def test_train_py_defaults_are_the_course_reference_settings():
    args = import_script("train").parse_args([])
    settings = (args.dataset, args.model, args.optimizer, args.lr, args.scheduler, args.gamma, args.batch_size, args.val_frequency)
    assert settings == ("oxford", "fcn", "adamw", 1e-3, "exponential", 0.98, 64, 2)


@pytest.mark.slow
def test_train_py_trains_resumes_and_viz_pets_draws(tmp_path):
    out = tmp_path / "run"
    printed = run_script("train.py", *TINY_RUN, "--epochs", "2", "--out", out).stdout
    assert "epoch   2/2" in printed and "val loss" in printed, printed
    assert [row["epoch"] for row in csv_rows(out)] == ["1", "2"]
    assert json.loads((out / "config.json").read_text())["epochs"] == 2

    run_script("train.py", *TINY_RUN, "--epochs", "3", "--resume", out)
    assert [row["epoch"] for row in csv_rows(out)] == ["1", "2", "3"]

    printed = run_script("viz_pets.py", "--checkpoint", out, "--num-samples", "3", "--out", tmp_path / "grid.png").stdout
    assert (tmp_path / "grid.png").stat().st_size > 0, printed


@pytest.mark.slow
def test_train_py_refuses_to_overwrite_a_run(tmp_path):
    out = tmp_path / "run"
    run_script("train.py", *TINY_RUN, "--epochs", "1", "--out", out)
    result = run_script("train.py", *TINY_RUN, "--epochs", "1", "--out", out, expect_success=False)
    assert result.returncode != 0 and "--resume" in result.stderr


@pytest.mark.slow
def test_torchrun_two_processes_merge_metrics_and_only_rank0_writes(tmp_path):
    out = tmp_path / "ddp"
    launcher = (sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2")
    printed = run_script("train.py", *TINY_RUN, "--epochs", "2", "--out", out, launcher=launcher).stdout
    assert printed.count("epoch   2/2") == 1, f"every epoch must be printed once, by rank 0:\n{printed}"
    assert len(list((out / "tensorboard").glob("events.out.tfevents.*"))) == 1, "only rank 0 writes TensorBoard events"

    model = DeepSegmenter(UNet(3, base_channels=4, depth=2))
    model.load(out / "model_last.pt")
    model.eval()
    val_data = SyntheticPets("val", num_samples=8, seed=0)
    metric = SegMetrics(val_data.classes_seg)
    with torch.inference_mode():
        for image, target in val_data:
            metric.update(model(image[None]), target[None])
    reported = float(csv_rows(out)[-1]["val_miou"])
    assert reported == pytest.approx(metric.mIoU(), abs=1e-6), "the val mIoU merged over 2 ranks differs from one process over all samples"
