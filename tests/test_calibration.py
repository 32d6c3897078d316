"""The time limits' calibration (dlvc/course/grader/calibration.py): made once, reused where it holds, made again where it is stale."""

import argparse
import json
import shutil

import pytest

from dlvc.course.grader import calibration
from dlvc.course.grader.grade import REPOSITORY_ROOT, ClassGrader, add_arguments
from dlvc.course.student.manifest import load_manifest
from dlvc.course.grader.verdicts import GradedTest

ASSIGNMENT = 3
MANIFEST = load_manifest(ASSIGNMENT)
SUITE = REPOSITORY_ROOT / "tests" / "hidden" / f"assignment{ASSIGNMENT}"
SECONDS = {"tests/hidden/assignment3/test_upsampling.py::test_a": 0.5}


@pytest.fixture
def tree(tmp_path):
    """A copy of what the fingerprint reads: the suite, its shared modules, the reference, the manifest and notebooks."""
    root = tmp_path / "root"
    for folder in ("dlvc", "solutions", SUITE.relative_to(REPOSITORY_ROOT)):
        shutil.copytree(REPOSITORY_ROOT / folder, root / folder, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for relative in ("tests/conftest.py", "tests/hidden/__init__.py", "tests/hidden/modules.py", *MANIFEST.notebooks):
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(REPOSITORY_ROOT / relative, root / relative)
    manifest_path = root / MANIFEST.path.relative_to(REPOSITORY_ROOT)
    manifest_path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(MANIFEST.path, manifest_path)
    return root


def fingerprint_of(root):
    return calibration.fingerprint(root, root / SUITE.relative_to(REPOSITORY_ROOT), load_manifest(ASSIGNMENT, root))


def test_the_fingerprint_names_the_suite_the_reference_the_versions_and_the_machine(tree):
    found = fingerprint_of(tree)
    assert set(found) == {"suite", "reference", "python", "torch", "torchvision", "cpus", "cpu_model"}
    assert found == fingerprint_of(tree), "the fingerprint of the same files and machine changed"
    assert found["suite"] == fingerprint_of(REPOSITORY_ROOT)["suite"], "the copy of the suite has another fingerprint"


@pytest.mark.parametrize(
    ("changed", "entry"),
    [("tests/hidden/assignment3/test_upsampling.py", "suite"), ("tests/hidden/modules.py", "suite"),
     ("solutions/models/pspnet.py", "reference"), ("dlvc/course/grader/graded.py", "reference")],
)
def test_changing_a_file_of_the_suite_or_the_reference_changes_its_fingerprint(tree, changed, entry):
    before = fingerprint_of(tree)
    with open(tree / changed, "a") as file:
        file.write("\n# changed\n")
    after = fingerprint_of(tree)
    assert [key for key in before if before[key] != after[key]] == [entry]


def test_the_mutants_and_bytecode_change_no_fingerprint(tree):
    before = fingerprint_of(tree)
    (tree / "tests/hidden/assignment3/mutants/new.patch").write_text("a mutant")
    (tree / "dlvc/__pycache__").mkdir(exist_ok=True)
    (tree / "dlvc/__pycache__/x.cpython-311.pyc").write_bytes(b"\0")
    assert fingerprint_of(tree) == before


def test_a_calibration_is_reused_only_where_its_fingerprint_holds(tmp_path):
    path = tmp_path / "calibration.json"
    expected = {"suite": "a", "reference": "b", "python": "3.11.7", "torch": "2.14.1", "torchvision": "0.29.1", "cpus": 2, "cpu_model": "X"}
    assert calibration.load(path, expected) == (None, "there is no calibration yet")
    calibration.save(path, expected, SECONDS)
    assert calibration.load(path, expected) == (SECONDS, None)
    assert calibration.load(path, {**expected, "cpus": 16, "torch": "2.15.0"}) == (None, "it was made for another torch, cpus")
    path.write_text(json.dumps(SECONDS))
    assert calibration.load(path, expected) == (None, "it is not a calibration of this grader")
    assert calibration.seconds_per_test(path) == SECONDS, "a plain {test: seconds} file (a hand-made --time-limits) is read as it is"


# ----- dlvc grade --calibration FILE ------------------------------------------------------------------


@pytest.fixture
def grader_factory(tmp_path, monkeypatch):
    """ClassGraders over one submission whose suite is not collected and whose reference grading is counted, not run."""
    submission = tmp_path / "submissions" / "group_1"
    (submission / "dlvc").mkdir(parents=True)
    (submission / "dlvc" / "__init__.py").write_text("")
    monkeypatch.setattr(ClassGrader, "_collect", lambda self: [GradedTest(next(iter(SECONDS)), "A works", "upsampling", 1.0)])
    graded = []
    monkeypatch.setattr(ClassGrader, "_grade_reference", lambda self: graded.append(self.out) or dict(SECONDS))
    parser = argparse.ArgumentParser()
    add_arguments(parser)

    def make(out, *options):
        args = parser.parse_args([str(submission), "--assignment", str(ASSIGNMENT), "--out", str(tmp_path / out), "--isolation", "process", *options])
        return ClassGrader(args)

    return make, graded


def test_a_current_calibration_file_spares_grading_the_reference_and_a_stale_one_is_made_again(grader_factory, tmp_path, capsys):
    make, graded = grader_factory
    given = tmp_path / "image" / "calibration.json"
    make("first", "--calibration", str(given))._calibrate()
    assert len(graded) == 1 and "there is no calibration yet" in capsys.readouterr().err
    expected = json.loads(given.read_text())["fingerprint"]
    second = make("second", "--calibration", str(given))
    second._calibrate()
    assert len(graded) == 1, "a current calibration was not reused"
    assert calibration.load(second.calibration, expected) == (SECONDS, None), "the run's own calibration was not written"
    calibration.save(given, {**expected, "cpu_model": "another CPU"}, {key: 99.0 for key in SECONDS})
    make("third", "--calibration", str(given))._calibrate()
    assert len(graded) == 2 and "it was made for another cpu_model" in capsys.readouterr().err
    assert calibration.load(given, expected) == (SECONDS, None), "the stale calibration file was not made again"


def test_without_submissions_dlvc_grade_only_calibrates_and_needs_a_calibration_file(grader_factory, tmp_path, monkeypatch):
    from dlvc.course.grader import grade

    make, graded = grader_factory
    given = tmp_path / "calibration.json"
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert grade.run(parser.parse_args(["--assignment", str(ASSIGNMENT), "--out", str(tmp_path / "out"), "--calibration", str(given), "--isolation", "process"])) == 0
    assert len(graded) == 1 and given.is_file()
    assert not (tmp_path / "out" / "grades.csv").exists(), "a calibration-only run wrote class files"
    assert grade.run(parser.parse_args(["--assignment", str(ASSIGNMENT), "--out", str(tmp_path / "out2")])) == 2
