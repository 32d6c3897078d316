"""``dlvc autograder``: the Gradescope autograder zip, and its ``run_autograder`` run here with the root moved.

Gradescope unpacks the zip into ``/autograder/source`` and the student's upload into
``/autograder/submission``. The test lays out the same folders in a temporary root,
runs ``run_autograder`` there (``DLVC_AUTOGRADER_ROOT``; ``DLVC_AUTOGRADER_PYTHON`` is
this Python, where Gradescope's is the one ``setup.sh`` made) and reads
``results/results.json``. One test runs it in a cgroup sized like Gradescope's
container (as root, with cgroup v1's memory and cpu controllers; skipped elsewhere).
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
from top_level_scripts import import_script

from dlvc.course.authoring import autograder as autograder_module
from dlvc.course.authoring.autograder import CONTAINER_MEMORY_GB, MEMORY_NEEDED_BYTES, build_autograder, container_memory_limit, requirements
from dlvc.course.cli import COMMANDS
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


# ----- Gradescope's container: memory and CPU ------------------------------------------------------

SIZED_ASSIGNMENT = 2
"""The assignment whose suite is the smallest (about 23 s per submission at 0.5 vCPU, against 41 s and 43 s):
the container test runs its whole grading at Gradescope's CPU share, so it picks the quickest."""


def test_the_readme_and_setup_sh_state_the_container_size_the_autograder_asks_for():
    size = f"{CONTAINER_MEMORY_GB:g} GB"
    assert size in (REPOSITORY_ROOT / "README.md").read_text(), f"the README does not state the container size {size}"
    assert size in (REPOSITORY_ROOT / "assignments" / "autograder" / "setup.sh").read_text(), f"setup.sh does not state {size}"
    assert CONTAINER_MEMORY_GB * 2**30 > MEMORY_NEEDED_BYTES


def test_the_grading_process_imports_neither_torch_nor_matplotlib_and_dlvc_help_lists_every_command():
    code = (
        "import json, sys\n"
        "from dlvc.course import cli\n"
        "cli.parse_args(['grade', 'submissions', '--assignment', '1', '--out', 'grades'])\n"
        "import dlvc.course.authoring.autograder\n"
        "print(json.dumps(sorted(name for name in ('torch', 'torchvision', 'matplotlib') if name in sys.modules)))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], env=clean_environment(), cwd=REPOSITORY_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [], "dlvc grade's own process imports what only the runner and the workers need"
    help_text = subprocess.run([sys.executable, "-m", "dlvc.course.cli", "--help"], env=clean_environment(), capture_output=True, text=True, timeout=120).stdout
    assert all(command in help_text for command in COMMANDS), help_text


def _cgroup_files(tmp_path, lines: str, limits: dict[str, str]):
    listing = tmp_path / "cgroup"
    listing.write_text(lines)
    for relative, value in limits.items():
        (tmp_path / "mounts" / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "mounts" / relative).write_text(value + "\n")
    return listing, tmp_path / "mounts"


@pytest.mark.parametrize(
    ("lines", "limits", "expected"),
    [
        ("0::/\n", {"memory.max": "805306368"}, 805306368),  # cgroup v2 in a container: its own cgroup at the mount
        ("0::/docker/abc\n", {"docker/abc/memory.max": "max", "docker/memory.max": "1073741824"}, 1073741824),  # v2 on a host: an ancestor's
        ("0::/\n", {"memory.max": "max"}, None),
        ("4:memory:/\n1:cpu,cpuacct:/\n0::/\n", {"memory/memory.limit_in_bytes": "805306368"}, 805306368),  # cgroup v1 in a container
        ("4:memory:/docker/abc\n", {"memory/memory.limit_in_bytes": "536870912"}, 536870912),  # a host's path, not mounted here
        ("4:memory:/a\n", {"memory/a/memory.limit_in_bytes": "9223372036854771712", "memory/memory.limit_in_bytes": "9223372036854771712"}, None),
        ("1:cpu:/\n", {}, None),
    ],
)
def test_the_container_memory_limit_is_read_from_cgroup_v2_or_v1(tmp_path, lines, limits, expected):
    listing, mounts = _cgroup_files(tmp_path, lines, limits)
    assert container_memory_limit(listing, mounts) == expected


def test_a_container_below_what_grading_needs_gets_results_that_name_the_size_to_choose(tmp_path, monkeypatch):
    monkeypatch.setattr(autograder_module, "container_memory_limit", lambda: 768 * 2**20)
    monkeypatch.setattr(autograder_module, "only_assignment", lambda source: SIZED_ASSIGNMENT)
    assert autograder_module.grade_submission(tmp_path) == 1
    results = json.loads((tmp_path / "results" / "results.json").read_text())
    assert results["score"] == 0 and "the fault is the autograder's" in results["output"]
    assert "768 MB" in results["output"] and f"at least {CONTAINER_MEMORY_GB:g} GB of memory" in results["output"], results["output"]
    assert not (tmp_path / "grading").exists(), "grading started in a container too small for it"


@pytest.mark.slow
def test_run_autograder_in_a_container_of_the_size_the_readme_states_and_far_below_it(tmp_path):
    bench = import_script("benchmarks.bench_autograder_memory")
    problem = bench.cgroups_available(cpus=0.5)
    if problem is not None:
        pytest.skip(f"needs cgroup v1 memory and cpu control: {problem}")
    run_autograder = bench.lay_out_root(SIZED_ASSIGNMENT, tmp_path)
    environment = bench.autograder_environment(tmp_path)
    setup = subprocess.run([str(run_autograder), "--calibrate"], env=environment, capture_output=True, text=True, timeout=1200)
    assert setup.returncode == 0 and (tmp_path / "calibration.json").is_file(), f"setup.sh's calibration failed:\n{setup.stderr[-3000:]}"
    results = tmp_path / "results" / "results.json"

    sized = bench.run_in_cgroup([str(run_autograder)], environment, memory_bytes=int(CONTAINER_MEMORY_GB * 2**30), cpus=0.5, timeout=600)
    graded = json.loads(results.read_text())
    assert graded["score"] == load_manifest(SIZED_ASSIGNMENT).total_points and sized.oom_kills == 0, sized.output[-3000:]
    assert "grading the reference build" not in sized.output, "run_autograder calibrated again instead of reusing setup.sh's calibration"

    small = bench.run_in_cgroup([str(run_autograder)], environment, memory_bytes=300 * 2**20, cpus=0.5, timeout=600)
    refused = json.loads(results.read_text())
    assert refused["score"] == 0 and small.oom_kills == 0, small.output[-3000:]
    assert f"at least {CONTAINER_MEMORY_GB:g} GB of memory" in refused["output"], refused
