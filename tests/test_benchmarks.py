"""The benchmarks in benchmarks/ still run, on tiny inputs, and print what their docstrings promise.

Their figures are evidence for speed claims in the README and the issues, so a benchmark
that no longer runs, or that times methods computing different things, must fail here.
No timing is checked: these machines are shared and noisy.
"""

import re

import pytest

from top_level_scripts import import_script, run_script

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
