"""The files ``dlvc grade`` writes: results.json, feedback.md, grades.csv, report.md, scores.png; names that would collide with them."""

import csv
import io
import json
import os

import pytest

from dlvc.course.grader.grade import GradeError, find_submissions, report_class
from dlvc.course.student.manifest import load_manifest, parse_manifest
from dlvc.course.grader.reports import (
    CLASS_FILE_NAMES,
    ReportError,
    class_report_markdown,
    feedback_markdown,
    format_points,
    read_results,
    results_json,
    summary_lines,
    write_class_reports,
    write_submission_reports,
)
from dlvc.course.grader.verdicts import GradedTest, SubmissionResult, Verdict

SEED = 1234
MANIFEST = load_manifest(1)
METRIC, LOSSES, TRAINER, UNET_PART, AUGMENTATIONS = (MANIFEST.part(i) for i in ("metric", "losses", "trainer", "unet", "augmentations"))

# A suite whose points add up to each part's points in the real manifest, whatever those are.
IOU = GradedTest("tests/hidden/assignment1/test_metric.py::test_iou", "IoU matches the reference", "metric", METRIC.points / 2)
ACCURACY = GradedTest("tests/hidden/assignment1/test_metric.py::test_accuracy", "Accuracy ignores the void class", "metric", METRIC.points / 2)
CROSS_ENTROPY = GradedTest("tests/hidden/assignment1/test_losses.py::test_ce", "Cross-entropy matches the reference", "losses", LOSSES.points)
STEP = GradedTest("tests/hidden/assignment1/test_trainer.py::test_step", "One step lowers the loss", "trainer", TRAINER.points)
UNET = GradedTest("tests/hidden/assignment1/test_unet.py::test_shapes", "UNet keeps the spatial size", "unet", UNET_PART.points)
FLIP = GradedTest("tests/hidden/assignment1/test_transforms.py::test_flip", "Flips image and mask together", "augmentations", AUGMENTATIONS.points)
SUITE = [IOU, ACCURACY, CROSS_ENTROPY, STEP, UNET, FLIP]
FULL = MANIFEST.total_points

SMALL_MANIFEST = """
number = 9
title = "A small assignment"

[[parts]]
id = "alpha"
number = 1
title = "Alpha"
points = 5
todos = ["9.1"]
files = ["dlvc/alpha.py"]
public_tests = ["tests/public/test_alpha.py"]

[[parts]]
id = "beta"
number = 2
title = "Beta"
points = 3
todos = ["9.2"]
files = ["dlvc/beta.py"]
public_tests = ["tests/public/test_beta.py"]

[[submission]]
path = "weights.pt"
what = "the trained weights"
points = 2
part = "alpha"
"""


@pytest.fixture
def small_manifest(tmp_path):
    path = tmp_path / "assignment.toml"
    path.write_text(SMALL_MANIFEST)
    return parse_manifest(path)


def graded(name, failing=(), messages=None, **kwargs):
    """A result over SUITE where the tests in ``failing`` failed (with ``messages[test]`` or a default)."""
    messages = messages or {}
    verdicts = [
        Verdict(test, passed=False, message=messages.get(test, f"{test.title}: wrong"), seconds=0.5)
        if test in failing
        else Verdict(test, passed=True, seconds=0.25)
        for test in SUITE
    ]
    return SubmissionResult(name, SEED, verdicts, **kwargs)


def small_result(small_manifest, alpha_passed, missing=True):
    alpha = GradedTest("tests/hidden/assignment9/test_alpha.py::test_a", "Alpha works", "alpha", 5)
    beta = GradedTest("tests/hidden/assignment9/test_beta.py::test_b", "Beta works", "beta", 3)
    verdicts = [Verdict(alpha, alpha_passed, "" if alpha_passed else "alpha is wrong"), Verdict(beta, True)]
    return SubmissionResult("carol", SEED, verdicts, missing=list(small_manifest.submission) if missing else [])


def test_format_points_drops_a_trailing_zero_when_whole():
    assert [format_points(x) for x in (7, 7.0, 2.5, 0, 1 / 3)] == ["7", "7", "2.5", "0", "0.33"]


def test_results_json_has_the_keys_and_types_gradescope_reads():
    data = results_json(graded("alice", failing=[ACCURACY]), MANIFEST)
    assert isinstance(data["score"], (int, float)) and not isinstance(data["score"], bool)
    assert isinstance(data["output"], str)
    assert data["visibility"] == "visible" and data["stdout_visibility"] == "hidden"
    assert data["extra_data"]["seed"] == SEED
    assert data["extra_data"]["assignment"] == 1 and data["extra_data"]["submission"] == "alice"
    assert data["extra_data"]["parts"]["metric"] == {"score": IOU.points, "max_score": METRIC.points}
    assert len(data["tests"]) == len(SUITE)
    for entry in data["tests"]:
        assert set(entry) == {"name", "score", "max_score", "status", "output", "visibility", "tags", "number", "extra_data"}
        assert isinstance(entry["score"], (int, float)) and isinstance(entry["max_score"], (int, float))
        assert entry["status"] in ("passed", "failed")
        assert entry["extra_data"]["seed"] == SEED
    assert json.loads(json.dumps(data, allow_nan=False)) == data


def test_results_json_score_is_the_sum_of_test_scores_when_no_file_is_missing():
    data = results_json(graded("alice", failing=[ACCURACY, UNET]), MANIFEST)
    assert data["score"] == pytest.approx(sum(entry["score"] for entry in data["tests"]))
    assert data["score"] == pytest.approx(FULL - ACCURACY.points - UNET.points)


def test_results_json_tests_are_named_tagged_and_numbered_by_part():
    data = results_json(graded("alice", failing=[ACCURACY]), MANIFEST)
    accuracy = data["tests"][1]
    assert accuracy["name"] == f"{METRIC.title}: Accuracy ignores the void class"
    assert accuracy["tags"] == ["metric"]
    assert accuracy["number"] == "1.2"
    assert accuracy["status"] == "failed" and accuracy["output"] == "Accuracy ignores the void class: wrong"
    assert accuracy["extra_data"]["nodeid"] == ACCURACY.nodeid
    assert [entry["number"] for entry in data["tests"]] == [f"{METRIC.number}.1", f"{METRIC.number}.2", f"{LOSSES.number}.1", f"{TRAINER.number}.1", f"{UNET_PART.number}.1", f"{AUGMENTATIONS.number}.1"]
    assert data["tests"][0]["output"] == ""


def test_results_json_writes_null_for_nan_or_missing_seconds():
    result = SubmissionResult("alice", SEED, [Verdict(IOU, True, seconds=float("nan")), Verdict(STEP, True)])
    data = results_json(result, MANIFEST)
    assert [entry["extra_data"]["seconds"] for entry in data["tests"]] == [None, None]
    json.dumps(data, allow_nan=False)


def test_missing_file_with_points_is_a_failed_test_and_lowers_its_part(small_manifest):
    data = results_json(small_result(small_manifest, alpha_passed=True), small_manifest)
    missing = data["tests"][-1]
    assert missing["name"] == "missing file: weights.pt"
    assert (missing["status"], missing["score"], missing["max_score"], missing["tags"]) == ("failed", 0.0, 2, ["alpha"])
    assert data["extra_data"]["parts"]["alpha"]["score"] == 3
    assert data["score"] == 6
    assert data["extra_data"]["missing"] == ["weights.pt"]


def test_missing_file_never_lowers_a_part_below_zero(small_manifest):
    data = results_json(small_result(small_manifest, alpha_passed=False), small_manifest)
    assert data["extra_data"]["parts"]["alpha"]["score"] == 0
    assert data["score"] == 3


def test_missing_file_without_points_is_named_but_is_no_test():
    result = graded("alice", missing=list(MANIFEST.submission))
    data = results_json(result, MANIFEST)
    assert len(data["tests"]) == len(SUITE)
    assert data["extra_data"]["missing"] == ["report.pdf"]
    assert "report.pdf" in data["output"]
    assert "report.pdf" in feedback_markdown(result, MANIFEST)


def test_feedback_lists_each_failed_message_under_its_part():
    messages = {ACCURACY: "expected 0.5\ngot 0.25", FLIP: "the mask was not flipped"}
    text = feedback_markdown(graded("alice", failing=[ACCURACY, FLIP], messages=messages), MANIFEST)
    failed = text[text.index("## What failed") : text.index("## What passed")]
    metric = failed.index(f"### Part {METRIC.number}: {METRIC.title}")
    augmentations = failed.index(f"### Part {AUGMENTATIONS.number}: {AUGMENTATIONS.title}")
    assert metric < failed.index("Accuracy ignores the void class") < failed.index("expected 0.5\ngot 0.25") < augmentations
    assert augmentations < failed.index("the mask was not flipped")
    assert "```text\nexpected 0.5\ngot 0.25\n```" in failed
    assert TRAINER.title not in failed


def test_feedback_never_says_passed_for_a_failed_test():
    text = feedback_markdown(graded("alice", failing=[ACCURACY]), MANIFEST)
    for line in text.splitlines():
        if ACCURACY.title in line:
            assert "passed" not in line.lower() and "✓" not in line
    passed = text[text.index("## What passed") :]
    assert f"✓ {IOU.title}" in passed and ACCURACY.title not in passed


def test_feedback_shows_the_total_and_the_parts_table():
    text = feedback_markdown(graded("alice", failing=[STEP]), MANIFEST)
    assert text.startswith(f"# Assignment 1: {MANIFEST.title} — alice\n")
    assert f"**Total: {format_points(FULL - STEP.points)} / {format_points(FULL)} points**" in text
    assert f"| {TRAINER.number} | {TRAINER.title} | 0 | {format_points(TRAINER.points)} |" in text
    assert f"| {METRIC.number} | {METRIC.title} | {format_points(METRIC.points)} | {format_points(METRIC.points)} |" in text


def test_feedback_says_prominently_why_a_submission_could_not_be_graded():
    result = graded("bob", failing=SUITE, error="the worker crashed: ImportError: no module named dlvc.metrics")
    text = feedback_markdown(result, MANIFEST)
    assert "## ⚠ This submission could not be graded" in text
    assert text.index("could not be graded") < text.index("## What failed")
    assert "ImportError: no module named dlvc.metrics" in text


def test_feedback_fences_a_message_that_holds_backticks():
    message = "the docstring says:\n```\nexample\n```"
    text = feedback_markdown(graded("alice", failing=[IOU], messages={IOU: message}), MANIFEST)
    assert f"````text\n{message}\n````" in text


def test_write_submission_reports_leaves_no_temporary_files_and_a_readable_results_json(tmp_path):
    folder = tmp_path / "alice"
    result = graded("alice", failing=[UNET])
    write_submission_reports(folder, result, MANIFEST)
    assert sorted(path.name for path in folder.iterdir()) == ["feedback.md", "results.json"]
    assert read_results(folder) == results_json(result, MANIFEST)
    assert (folder / "feedback.md").read_text() == feedback_markdown(result, MANIFEST)


def test_write_submission_reports_writes_results_json_last(tmp_path, monkeypatch):
    replaced = []
    real_replace = os.replace

    def recording_replace(source, target):
        replaced.append(os.path.basename(target))
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", recording_replace)
    write_submission_reports(tmp_path, graded("alice"), MANIFEST)
    assert replaced == ["feedback.md", "results.json"]


def test_a_failed_write_leaves_neither_the_file_nor_a_temporary_one(tmp_path, monkeypatch):
    def failing_replace(source, target):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        write_submission_reports(tmp_path, graded("alice"), MANIFEST)
    assert list(tmp_path.iterdir()) == []
    assert read_results(tmp_path) is None


def test_read_results_returns_none_for_a_truncated_or_absent_file(tmp_path):
    write_submission_reports(tmp_path, graded("alice"), MANIFEST)
    text = (tmp_path / "results.json").read_text()
    (tmp_path / "results.json").write_text(text[: len(text) // 2])
    assert read_results(tmp_path) is None
    assert read_results(tmp_path / "nobody") is None


def test_grades_csv_has_a_column_per_part_and_a_row_per_submission_sorted_by_name(tmp_path):
    results = [graded("zoe", failing=[STEP]), graded("adam", failing=SUITE, error="timed out"), graded("mia")]
    write_class_reports(tmp_path, results, MANIFEST)
    rows = list(csv.reader(io.StringIO((tmp_path / "grades.csv").read_text())))
    full = [format_points(part.points) for part in MANIFEST.parts]
    assert rows[0] == ["submission", "metric", "losses", "trainer", "unet", "augmentations", "total"]
    assert rows[1:] == [
        ["adam", *["0"] * len(MANIFEST.parts), "0"],
        ["mia", *full, format_points(FULL)],
        ["zoe", *full[:2], "0", *full[3:], format_points(FULL - STEP.points)],
    ]


def test_report_shows_each_test_pass_rate_across_the_class(tmp_path):
    report = write_class_reports(tmp_path, [graded("alice", failing=[UNET]), graded("bob")], MANIFEST)
    assert report == tmp_path / "report.md"
    text = report.read_text()
    assert f"| UNet keeps the spatial size | {UNET_PART.number} unet | {format_points(UNET.points)} | 1/2 | 50% |" in text
    assert f"| IoU matches the reference | {METRIC.number} metric | {format_points(IOU.points)} | 2/2 | 100% |" in text
    assert text.index(IOU.title) < text.index(ACCURACY.title) < text.index(STEP.title) < text.index(FLIP.title)
    assert f"| mean | {format_points(FULL - UNET.points / 2)} |" in text
    assert f"| min | {format_points(FULL - UNET.points)} |" in text and f"| max | {format_points(FULL)} |" in text
    assert "![Histogram of the total points](scores.png)" in text


def test_report_lists_the_submissions_that_could_not_be_graded(tmp_path):
    results = [graded("alice"), SubmissionResult("bob", SEED, [], error="no dlvc/ folder in the zip\nsecond line")]
    text = write_class_reports(tmp_path, results, MANIFEST).read_text()
    assert "- `bob`: no dlvc/ folder in the zip" in text
    assert f"| IoU matches the reference | {METRIC.number} metric | {format_points(IOU.points)} | 1/2 | 50% |" in text


PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("count", [0, 1, 3])
def test_class_reports_write_a_png_histogram_for_any_class_size(tmp_path, count):
    results = [graded(f"student{i}", failing=SUITE[:i]) for i in range(count)]
    write_class_reports(tmp_path, results, MANIFEST)
    assert (tmp_path / "scores.png").read_bytes()[:8] == PNG_MAGIC
    assert sorted(path.name for path in tmp_path.iterdir()) == ["grades.csv", "report.md", "scores.png"]


def test_report_for_no_submissions_says_so(tmp_path):
    text = write_class_reports(tmp_path, [], MANIFEST).read_text()
    assert "No submissions were graded." in text
    assert (tmp_path / "grades.csv").read_text().splitlines() == ["submission,metric,losses,trainer,unet,augmentations,total"]


def test_summary_lines_count_full_points_and_name_the_ungraded():
    results = [graded("alice"), graded("bob", failing=[STEP]), graded("carol", failing=SUITE, error="timed out")]
    text = "\n".join(summary_lines(results, MANIFEST))
    assert "Graded 3 submission(s)" in text
    mean = (FULL + FULL - STEP.points) / 3
    assert f"Mean total: {format_points(mean)} / {format_points(FULL)} points; 1 with full points." in text
    assert "1 could not be graded: carol" in text
    assert "grades.csv" in text and "report.md" in text


def test_summary_lines_name_at_most_ten_ungraded_submissions():
    results = [graded(f"s{i:02d}", failing=SUITE, error="timed out") for i in range(12)]
    text = "\n".join(summary_lines(results, MANIFEST))
    assert "12 could not be graded: s00, s01" in text and "s09 and 2 more" in text and "s10" not in text


# ----- names that would collide with the class files ------------------------------------------


def _folder_submission(folder):
    (folder / "dlvc").mkdir(parents=True)
    (folder / "dlvc" / "__init__.py").write_text("")
    return folder


@pytest.mark.parametrize("name", [*CLASS_FILE_NAMES, "GRADES.CSV", "Report.md", "Leaderboard.Png", ".Grading"])
def test_a_submission_named_like_a_class_file_is_refused_before_anything_is_graded(tmp_path, name):
    zipped = tmp_path / "zips" / f"{name}.zip"
    zipped.parent.mkdir()
    zipped.write_bytes(b"")
    folder = _folder_submission(tmp_path / "folders" / name)
    for argument in (zipped, folder):
        with pytest.raises(GradeError, match="would take the place of") as refused:
            find_submissions([argument])
        assert str(argument) in str(refused.value), "the refusal names the submission"
        assert "rename it" in str(refused.value)


def _submissions(tmp_path, folders, zips):
    """A folder of submissions: ``folders`` holding dlvc/, and empty ``zips``."""
    for folder in folders:
        _folder_submission(tmp_path / "submissions" / folder)
    for name in zips:
        (tmp_path / "submissions" / name).write_bytes(b"")
    return tmp_path / "submissions"


def test_a_folder_of_submissions_holding_a_class_file_name_is_refused_too(tmp_path):
    with pytest.raises(GradeError, match="'grades.csv'"):
        find_submissions([_submissions(tmp_path, ["group_1", "group_2"], ["grades.csv.zip"])])


def test_submission_names_that_differ_only_in_case_are_refused(tmp_path):
    with pytest.raises(GradeError, match="both named"):
        find_submissions([_submissions(tmp_path, ["Group_7", "group_8"], ["group_7.zip"])])


def test_ordinary_names_are_taken(tmp_path):
    found = [path.name for path in find_submissions([_submissions(tmp_path, ["group_1", "group_2"], ["grades_group_3.zip", "report.zip"])])]
    assert found == ["grades_group_3.zip", "group_1", "group_2", "report.zip"]


def test_class_reports_that_cannot_be_written_name_the_file_and_why_and_write_the_others(tmp_path):
    (tmp_path / "grades.csv").mkdir()
    with pytest.raises(ReportError) as failed:
        write_class_reports(tmp_path, [graded("alice")], MANIFEST)
    assert str(tmp_path / "grades.csv") in str(failed.value) and "a folder is in its place" in str(failed.value)
    assert (tmp_path / "report.md").is_file() and (tmp_path / "scores.png").is_file()


def test_a_grading_run_that_cannot_write_its_class_files_says_so_and_exits_non_zero(tmp_path, capsys):
    (tmp_path / "report.md").mkdir()
    assert report_class(tmp_path, [graded("alice")], MANIFEST) == 1
    error = capsys.readouterr().err
    assert f"could not write {tmp_path / 'report.md'} (a folder is in its place)" in error, error
    assert report_class(tmp_path / "fresh", [graded("alice")], MANIFEST) == 0


def test_results_report_and_summary_say_which_isolation_graded():
    results = [graded("alice", isolation="landlock"), graded("bob", isolation="landlock")]
    assert results_json(results[0], MANIFEST)["extra_data"]["isolation"] == "landlock"
    assert "Student code ran in the landlock isolation" in class_report_markdown(results, MANIFEST)
    assert "Student code ran in the landlock isolation (see the README's table of modes)." in summary_lines(results, MANIFEST)
