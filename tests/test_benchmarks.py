"""The benchmarks in benchmarks/ still run, on tiny inputs, and print what their docstrings promise.

Their figures are evidence for speed claims in the README and the issues, so a benchmark
that no longer runs, or that times methods computing different things, must fail here.
No timing is checked: these machines are shared and noisy.
"""

import re
import shlex
import shutil
import subprocess

import pytest

from top_level_scripts import REPOSITORY_ROOT, import_script, run_script

NUMBER = r"(\d+(?:\.\d+)?|nan)"


def test_metrics_benchmark_prints_each_method_for_each_label_dtype():
    output = run_script("benchmarks/bench_metrics.py", "--repeats", "1", "--batch", "2", "16", "16", "--classes", "3").stdout
    for dtype in ("torch.uint8", "torch.int64"):
        assert f"{dtype} labels, shape (2, 16, 16), 3 classes:" in output, f"no section for {dtype} labels:\n{output}"
    for method in ("SegMetrics.update", "torchmetrics update", "per-class loop"):
        rows = re.findall(rf"^  {re.escape(method)} +{NUMBER} +{NUMBER} +{NUMBER} +{NUMBER}$", output, flags=re.MULTILINE)
        assert len(rows) == 2, f"expected one line of wall ms, ratio, kernel ms and page faults per dtype for {method}:\n{output}"
    assert re.findall(rf"^  SegMetrics.update +{NUMBER} +1\.0 ", output, flags=re.MULTILINE), "SegMetrics' own ratio is not 1.0"


def test_metrics_benchmark_accepts_methods_that_agree():
    bench = import_script("benchmarks.bench_metrics")
    prediction, target = bench.random_labels((2, 16, 16), num_classes=4, ignored=0.2, seed=1)
    bench.check_agreement(prediction, target, num_classes=4)


def test_metrics_benchmark_refuses_a_per_class_loop_that_counts_differently(monkeypatch):
    bench = import_script("benchmarks.bench_metrics")
    prediction, target = bench.random_labels((2, 16, 16), num_classes=4, ignored=0.2, seed=1)
    counting = bench.per_class_loop
    monkeypatch.setattr(bench, "per_class_loop", lambda *args: [(intersection, union + 1) for intersection, union in counting(*args)])
    with pytest.raises(RuntimeError, match="per-class loop disagree"):
        bench.check_agreement(prediction, target, num_classes=4)


def test_metrics_benchmark_refuses_a_segmetrics_that_counts_differently(monkeypatch):
    bench = import_script("benchmarks.bench_metrics")
    prediction, target = bench.random_labels((2, 16, 16), num_classes=4, ignored=0.2, seed=1)
    counting = bench.SegMetrics.update

    def update_missing_the_first_image(self, prediction, target):
        counting(self, prediction[1:], target[1:])

    monkeypatch.setattr(bench.SegMetrics, "update", update_missing_the_first_image)
    with pytest.raises(RuntimeError, match="disagree"):
        bench.check_agreement(prediction, target, num_classes=4)


def test_storage_benchmark_prints_each_cache_against_png():
    output = run_script("benchmarks/bench_storage.py", "--samples", "4", "--size", "16").stdout
    for format in ("png", "memmap", "hdf5"):
        assert re.search(rf"^{format} +{NUMBER} +{NUMBER} +{NUMBER} +{NUMBER} +{NUMBER} +{NUMBER}$", output, flags=re.MULTILINE), (
            f"no line of figures for the {format} cache:\n{output}"
        )


def test_segformer_benchmark_prints_both_models_and_their_ratio():
    pytest.importorskip("transformers")
    output = run_script("benchmarks/bench_segformer.py", "--batch", "1", "3", "64", "64", "--repeats", "1", "--warmup", "0").stdout
    for model in ("dlvc", "transformers"):
        assert re.search(rf"^  {model} +{NUMBER} ms/step +{NUMBER} images/s$", output, flags=re.MULTILINE), f"no line for {model}:\n{output}"
    assert re.search(rf"^ratio transformers / dlvc: {NUMBER}x", output, flags=re.MULTILINE), f"no ratio line:\n{output}"



@pytest.mark.slow
def test_grading_benchmark_prints_seconds_per_submission_and_the_ratio():
    output = run_script("benchmarks/bench_grading.py", "--copies", "1", "--jobs", "1").stdout
    assert re.search(rf"^jobs 1: set-up once per run {NUMBER} s", output, flags=re.MULTILINE), output
    assert re.search(
        rf"^jobs 1: isolated {NUMBER} s per submission, in-process pytest {NUMBER} s per submission, ratio {NUMBER}$", output, flags=re.MULTILINE
    ), output


def test_demo_benchmark_prints_the_seconds_to_the_target_the_total_and_the_final_miou():
    tiny = ["--epochs", "2", "--train-samples", "8", "--val-samples", "4", "--batch-size", "4", "--unet-width", "4", "--unet-depth", "2",
            "--val-frequency", "1"]  # fmt: skip
    output = run_script("benchmarks/bench_demo.py", "--repeats", "1", "--target", "0", "--", *tiny).stdout
    line = re.search(
        rf"^run 1/1: load {NUMBER} {NUMBER} {NUMBER} -> {NUMBER} {NUMBER} {NUMBER} \| val mIoU >= 0\.00: epoch 1 after {NUMBER} s \| "
        rf"total {NUMBER} s \| final val mIoU {NUMBER} \| start-up {NUMBER} s, epochs {NUMBER} s, between epochs {NUMBER} s$",
        output,
        flags=re.MULTILINE,
    )
    assert line, f"no line of figures for the run:\n{output}"
    median = rf"^median of 1 runs: val mIoU >= 0\.00 after {NUMBER} s \(1 of 1 reached it\), total {NUMBER} s$"
    assert re.search(median, output, flags=re.MULTILINE), f"no line of medians:\n{output}"


def test_demo_benchmark_times_the_first_validation_reaching_the_target():
    bench = import_script("benchmarks.bench_demo")
    rows = [
        {"epoch": "1", "val_miou": "0.5", "seconds": "3.0"},
        {"epoch": "2", "val_miou": "", "seconds": "2.0"},
        {"epoch": "3", "val_miou": "0.91", "seconds": "2.0"},
        {"epoch": "4", "val_miou": "0.95", "seconds": "2.0"},
    ]
    run = bench.DemoRun(epoch_ends={1: 5.0, 2: 7.5, 3: 10.0, 4: 12.5}, total_seconds=13.0, rows=rows)
    assert (run.first_epoch_reaching(0.9), run.seconds_to(0.9)) == (3, 10.0)
    assert run.seconds_to(0.99) is None
    assert run.final_miou() == 0.95
    assert (run.startup_seconds(), run.epoch_seconds(), run.between_epochs_seconds()) == (2.0, 9.0, 2.0)


def test_demo_benchmark_runs_the_flags_of_make_demo():
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    bench = import_script("benchmarks.bench_demo")
    recipe = subprocess.run(["make", "-n", "demo"], cwd=REPOSITORY_ROOT, capture_output=True, text=True, check=True).stdout
    assert f"train.py {shlex.join(bench.demo_flags())}" in recipe, f"make demo does not run train.py with DEMO_FLAGS:\n{recipe}"


@pytest.mark.slow
def test_autograder_memory_benchmark_prints_the_setup_and_the_submission_in_a_cgroup():
    problem = import_script("benchmarks.bench_autograder_memory").cgroups_available(cpus=1)
    if problem is not None:
        pytest.skip(f"needs cgroup v1 memory and cpu control: {problem}")
    # 300 MB: the setup's calibration is killed for memory and the submission's run refuses at once, so this takes seconds.
    output = run_script("benchmarks/bench_autograder_memory.py", "--assignment", "2", "--memory-mb", "300", "--cpus", "1").stdout
    figures = rf"peak {NUMBER} MB \(anon\+shmem {NUMBER} MB\), wall {NUMBER} s"
    assert re.search(rf"^assignment 2 setup: {figures}, status \d+, oom kills \d+, limit 300 MB, cpus 1$", output, flags=re.MULTILINE), output
    assert re.search(rf"^assignment 2: {figures}, score 0/0 \(.*the fault is the autograder's.*\), oom kills 0, limit 300 MB, cpus 1$", output, flags=re.MULTILINE), output
