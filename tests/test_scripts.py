"""The top-level scripts from the command line: training, drawing, a two-process torchrun training, and their errors."""

import csv
import json
import sys
from pathlib import Path

import pytest
import torch

from dlvc.datasets.synthetic import SyntheticPets
from dlvc.errors import BAD_FLAGS, MISSING_FILE, InputError, checking_input, exit_on_input_error
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


# ----- a mistake in the user's input ends a script with one line, not a traceback -----
# Exit status 2 for a bad flag or combination of flags, 1 for a missing file or dataset.

UNTRAINABLE_STRATEGY = ["--strategy", "freeze"]  # freezing an encoder that no --finetune or --pretrained-backbone loaded


def assert_ends_with_error(result, script: str, status: int, message: str) -> None:
    assert result.returncode == status, f"{script} exited with {result.returncode}, expected {status}:\n{result.stderr[-2000:]}"
    assert f"{script}: error: {message}" in result.stderr, f"{script} did not print '{script}: error: {message}...':\n{result.stderr[-2000:]}"
    assert "Traceback" not in result.stderr, f"{script} printed a traceback for a mistake in its input:\n{result.stderr[-2000:]}"
    assert "configuration:" not in result.stdout, f"{script} printed its configuration before finding the mistake:\n{result.stdout[:2000]}"


def test_train_py_without_the_dataset_names_what_is_missing(tmp_path):
    result = run_script("train.py", "--dataset", "oxford", "--data-root", tmp_path, expect_success=False)
    assert_ends_with_error(result, "train.py", 1, "Oxford-IIIT Pet not found")


def test_train_py_refuses_to_freeze_an_encoder_that_cannot_be_frozen():
    result = run_script("train.py", *TINY_RUN, "--pretrained-backbone", "--strategy", "freeze", expect_success=False)
    assert_ends_with_error(result, "train.py", 2, "--strategy freeze: the unet encoder cannot be frozen")


def test_train_py_refuses_a_resume_checkpoint_that_is_not_there(tmp_path):
    result = run_script("train.py", *TINY_RUN, "--resume", tmp_path / "checkpoint.pt", expect_success=False)
    assert_ends_with_error(result, "train.py", 1, "--resume: no checkpoint at")


def test_train_segformer_py_without_the_finetune_weights_names_the_file(tmp_path):
    missing = tmp_path / "model_encoder.pt"
    result = run_script("train_segformer.py", "--dataset", "synthetic-pets", "--finetune", missing, expect_success=False)
    assert_ends_with_error(result, "train_segformer.py", 1, f"--finetune: path: no weights file at {missing}")


def test_train_segformer_py_refuses_to_freeze_a_random_encoder():
    result = run_script("train_segformer.py", "--dataset", "synthetic-pets", *UNTRAINABLE_STRATEGY, expect_success=False)
    assert_ends_with_error(result, "train_segformer.py", 2, "--strategy freeze: the encoder would stay at its random initialisation")


def test_viz_pets_py_without_the_checkpoint_names_the_file(tmp_path):
    result = run_script("viz_pets.py", "--checkpoint", tmp_path / "model_best.pt", expect_success=False)
    assert_ends_with_error(result, "viz_pets.py", 1, "--checkpoint: no file at")


def test_viz_pets_py_refuses_fewer_than_one_sample(capsys):
    with pytest.raises(SystemExit) as raised:
        import_script("viz_pets").parse_args(["--checkpoint", "runs/demo", "--num-samples", "0"])
    assert raised.value.code == BAD_FLAGS and "--num-samples: expected a positive int, got 0" in capsys.readouterr().err


def test_viz_pets_py_refuses_a_first_sample_past_the_validation_split(tmp_path):
    config = {"dataset": "synthetic-pets", "data_root": "data", "image_size": 32, "augment": False, "train_samples": 4, "val_samples": 4}
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "model_best.pt").touch()
    result = run_script("viz_pets.py", "--checkpoint", tmp_path, "--first", "10", expect_success=False)
    assert_ends_with_error(result, "viz_pets.py", 2, "--first: expected an index in [0, 4) of the validation split, got 10")


def test_compare_finetuning_py_without_the_pretrained_encoder_names_the_file(tmp_path):
    missing = tmp_path / "model_encoder.pt"
    result = run_script("compare_finetuning.py", "--pretrained", missing, "--out", tmp_path / "runs", expect_success=False)
    assert_ends_with_error(result, "compare_finetuning.py", 1, f"--pretrained: no file at {missing}")


def test_compare_finetuning_py_finds_a_missing_target_dataset_before_pretraining(tmp_path):
    result = run_script("compare_finetuning.py", "--target", "oxford", "--data-root", tmp_path, "--out", tmp_path / "runs", expect_success=False)
    assert_ends_with_error(result, "compare_finetuning.py", 1, "Oxford-IIIT Pet not found")
    assert not (tmp_path / "runs" / "pretrain").exists(), "the pretraining started although the target dataset is missing"


def test_compare_finetuning_py_refuses_a_strategy_for_all_runs(tmp_path):
    result = run_script("compare_finetuning.py", *UNTRAINABLE_STRATEGY, "--out", tmp_path, expect_success=False)
    assert_ends_with_error(result, "compare_finetuning.py", 2, "--strategy: this script sets these for each run itself")


def test_input_error_ends_with_the_script_name_the_message_and_its_status(capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["/somewhere/train.py"])

    def main():
        raise InputError("--finetune: no file at x.pt", MISSING_FILE)

    with pytest.raises(SystemExit) as exit:
        exit_on_input_error(main)
    assert exit.value.code == MISSING_FILE
    assert capsys.readouterr().err == "train.py: error: --finetune: no file at x.pt\n"


def test_checking_input_reports_missing_files_and_bad_values_with_their_status():
    with pytest.raises(InputError, match="^--finetune: gone$") as missing:
        with checking_input("--finetune"):
            raise FileNotFoundError("gone")
    with pytest.raises(InputError, match="^lr must be > 0$") as bad:
        with checking_input():
            raise ValueError("lr must be > 0")
    assert (missing.value.exit_status, bad.value.exit_status) == (MISSING_FILE, BAD_FLAGS)


def test_other_exceptions_keep_their_traceback():
    def main():
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError, match="a bug"):
        exit_on_input_error(main)
