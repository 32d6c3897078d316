"""``dlvc autograder``: the Gradescope autograder zip, and its ``run_autograder`` run here with the root moved.

Gradescope unpacks the zip into ``/autograder/source`` and the student's upload into
``/autograder/submission``. The test lays out the same folders in a temporary root,
runs ``run_autograder`` there (``DLVC_AUTOGRADER_ROOT``; ``DLVC_AUTOGRADER_PYTHON`` is
this Python, where Gradescope's is the one ``setup.sh`` made) and reads
``results/results.json``.
"""

import json
import os
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from dlvc.course.authoring.autograder import build_autograder, requirements
from dlvc.course.student.manifest import load_manifest
from dlvc.course.authoring.mutants import apply_mutant, load_mutants
from dlvc.course.authoring.stubs import copy_package
from dlvc.course.student.submit import clean_environment

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
ASSIGNMENT = 3
MANIFEST = load_manifest(ASSIGNMENT)


@pytest.fixture(scope="module")
def autograder(tmp_path_factory) -> Path:
    return build_autograder(ASSIGNMENT, tmp_path_factory.mktemp("dist"))


def entries(archive: Path) -> dict[str, zipfile.ZipInfo]:
    with zipfile.ZipFile(archive) as zipped:
        return {info.filename: info for info in zipped.infolist()}


def test_autograder_holds_the_scripts_at_its_top_and_they_are_executable(autograder):
    held = entries(autograder)
    for script in ("setup.sh", "run_autograder"):
        assert script in held, f"Gradescope looks for {script} at the zip's top"
        assert stat.S_IMODE(held[script].external_attr >> 16) == 0o755, f"{script} must be executable"


def test_autograder_holds_the_grader_the_reference_and_only_this_assignments_suite(autograder):
    held = set(entries(autograder))
    for needed in ("dlvc/course/grader/grade.py", "dlvc/course/sandboxed/worker.py", "solutions/models/pspnet.py", "tests/conftest.py",
                   "tests/hidden/modules.py", "tests/hidden/assignment3/test_decoder.py", "assignments/assignment3/assignment.toml"):
        assert needed in held, f"the autograder lacks {needed}"
    extra = [name for name in held if "/mutants/" in name or name.startswith(("tests/hidden/assignment1/", "tests/hidden/assignment2/", "tests/public/"))]
    assert not extra, f"the autograder holds {extra}"


def test_autograder_requirements_are_the_course_pins(autograder):
    with zipfile.ZipFile(autograder) as zipped:
        torch_pins = zipped.read("requirements-torch.txt").decode().split()
        other_pins = zipped.read("requirements.txt").decode().split()
    assert (torch_pins, other_pins) == requirements()
    assert torch_pins == ["torch==2.14.1", "torchvision==0.29.1"]
    assert any(pin.startswith("pytest==") for pin in other_pins)


def run_autograder(autograder: Path, root: Path, submission: Path | None) -> tuple[dict, str]:
    """Lay out ``root`` as Gradescope does, run ``run_autograder``; the results file and the output."""
    with zipfile.ZipFile(autograder) as zipped:
        zipped.extractall(root / "source")
    (root / "source" / "run_autograder").chmod(0o755)  # zipfile does not restore modes
    if submission is not None:
        shutil.copytree(submission, root / "submission")
    environment = {**clean_environment(), "DLVC_AUTOGRADER_ROOT": str(root), "DLVC_AUTOGRADER_PYTHON": sys.executable}
    result = subprocess.run([str(root / "source" / "run_autograder")], env=environment, capture_output=True, text=True, timeout=1800)
    output = result.stdout + result.stderr
    results = root / "results" / "results.json"
    assert results.is_file(), f"run_autograder wrote no results.json:\n{output[-3000:]}"
    return json.loads(results.read_text()), output


@pytest.mark.slow
def test_run_autograder_gives_the_reference_full_points(autograder, tmp_path):
    submission = copy_package(REPOSITORY_ROOT, tmp_path / "upload")
    results, output = run_autograder(autograder, tmp_path / "autograder", submission)
    assert results["score"] == MANIFEST.total_points, output[-3000:]
    assert all(test["status"] == "passed" for test in results["tests"] if "nodeid" in test["extra_data"])


@pytest.mark.slow
def test_run_autograder_takes_a_mutants_points_in_its_part_only(autograder, tmp_path):
    mutant = load_mutants(REPOSITORY_ROOT / "tests" / "hidden" / f"assignment{ASSIGNMENT}" / "mutants")[0]
    submission = copy_package(REPOSITORY_ROOT, tmp_path / "upload")
    apply_mutant(mutant, submission)
    results, output = run_autograder(autograder, tmp_path / "autograder", submission)
    parts = {part: values["score"] for part, values in results["extra_data"]["parts"].items()}
    lost = {part.id for part in MANIFEST.parts if parts[part.id] < part.points}
    assert lost == {mutant.part}, f"{mutant.name} lost points in {lost or 'no part'}:\n{output[-3000:]}"


def test_run_autograder_without_a_submission_still_writes_results_that_say_so(autograder, tmp_path):
    results, output = run_autograder(autograder, tmp_path / "autograder", None)
    assert results["score"] == 0
    assert "the fault is the autograder's" in results["output"], results
    assert "no such file or folder" in output, output[-2000:]
    assert not os.path.exists(tmp_path / "autograder" / "submission")
