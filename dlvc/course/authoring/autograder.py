"""``dlvc autograder``: the zip an instructor uploads to Gradescope as an assignment's autograder.

    dlvc autograder --assignment 2 --out dist/      # writes dist/dlvc-autograder2.zip

Gradescope unpacks the zip into ``/autograder/source``, runs ``setup.sh`` once when it
builds the autograder's image, and ``run_autograder`` for every submission, with the
student's upload unpacked in ``/autograder/submission``. The zip holds

- ``setup.sh`` and ``run_autograder`` (from ``assignments/autograder/``);
- ``requirements-torch.txt`` (torch and torchvision, installed from PyTorch's CPU
  index) and ``requirements.txt`` (the other pinned libraries and pytest), both
  written from this repository's ``pyproject.toml``;
- the grader: ``dlvc/`` with ``solutions/`` (the reference build), the assignment's
  manifest and solution notebooks, ``tests/conftest.py`` and the hidden suite ``tests/hidden/assignment<N>/``
  without its mutants, and ``pyproject.toml`` for pytest's settings.

``setup.sh`` ends with ``run_autograder --calibrate``: the reference build is graded
once and the time limits' calibration kept in ``/autograder/calibration.json``.
``run_autograder`` grades the one submission with ``dlvc grade`` (the same grader and
sandbox a TA runs on a class), reusing that calibration while it holds
(:mod:`dlvc.course.grader.calibration`), and copies its ``results.json`` to
``/autograder/results/results.json``. When grading cannot run at all, that file
still appears, with zero points and an output that says the fault is the
autograder's, so the student knows to ask.

Gradescope's container has 768 MB of memory unless the instructor chooses more, and
grading needs more than that (:data:`MEMORY_NEEDED_BYTES`). ``run_autograder`` reads
the container's limit first (:func:`container_memory_limit`); below what grading
needs, the results.json it writes tells the instructors which size to choose,
instead of a grader killed halfway.

``python -m dlvc.course.authoring.autograder --root ROOT [--calibrate]`` is the grading side;
``ROOT`` is ``/autograder`` on Gradescope and any folder laid out like it in a test.
"""

import argparse
import json
import shutil
import sys
import tempfile
import tomllib
from pathlib import Path

from ..grader import grade
from ..student.archive import collect_files, output_folder, write_zip
from .handout import extra_pins, requirement_name
from ..student.manifest import ManifestError, available_assignments, load_manifest
from ..grader.submission import submission_name

REPOSITORY_ROOT = Path(__file__).resolve().parents[3]
TEMPLATES = Path("assignments") / "autograder"
SCRIPTS = ("setup.sh", "run_autograder")
TORCH_PACKAGES = ("torch", "torchvision")
GRADING_DEPENDENCIES = ("pytest",)
RESULTS_NAME = "results.json"
CALIBRATION_NAME = "calibration.json"
MEMORY_NEEDED_BYTES = 1200 * 2**20
"""What grading one submission needs, with a margin: ``benchmarks/bench_autograder_memory.py``
measured peaks of about 1,000 MB (Assignment 1), 940 MB (3) and 770 MB (2)."""
CONTAINER_MEMORY_GB = 1.5
"""The container memory to choose in Gradescope's Autograder Settings (its default, 768 MB, is too
small); the README and setup.sh say the same."""
UNLIMITED_BYTES = 2**62
"""cgroup v1 writes "no limit" as a huge number (9223372036854771712 on 4 KiB pages)."""


class AutograderError(Exception):
    """The autograder cannot be built; nothing was written."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--assignment", type=int, required=True, help="the assignment's number")
    parser.add_argument("--out", type=Path, required=True, help="the folder to write dlvc-autograder<N>.zip into")


def run(args: argparse.Namespace) -> int:
    try:
        target = build_autograder(args.assignment, output_folder(args.out))
    except (AutograderError, ManifestError, ValueError) as error:
        print(f"dlvc autograder: {error}\nNothing was written.", file=sys.stderr)
        return 2
    print(f"wrote {target}: upload it as the autograder of Assignment {args.assignment} (Gradescope: Configure Autograder, zip file upload)")
    return 0


def build_autograder(assignment: int, out: Path, root: Path = REPOSITORY_ROOT) -> Path:
    """Lay out the autograder of ``assignment`` and zip it; returns the zip's path."""
    manifest = load_manifest(assignment, root)
    suite = root / "tests" / "hidden" / f"assignment{assignment}"
    if not suite.is_dir() or not (root / "solutions").is_dir():
        raise AutograderError(f"assignment {assignment} needs its graded suite ({suite}) and solutions/ in {root}")
    with tempfile.TemporaryDirectory(prefix="dlvc-autograder-") as temporary:
        tree = Path(temporary)
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "mutants")
        for folder in ("dlvc", "solutions", suite.relative_to(root)):
            shutil.copytree(root / folder, tree / folder, ignore=ignore)
        for relative in ("tests/conftest.py", "tests/hidden/__init__.py", "tests/hidden/modules.py", "pyproject.toml"):
            shutil.copyfile(root / relative, tree / relative)
        (tree / manifest.path.parent.relative_to(root)).mkdir(parents=True)
        shutil.copyfile(manifest.path, tree / manifest.path.relative_to(root))
        for relative in manifest.notebooks:  # the solution notebook: the reference of its graded tests
            shutil.copyfile(root / relative, tree / relative)
        torch_pins, other_pins = requirements(root)
        (tree / "requirements-torch.txt").write_text("\n".join(torch_pins) + "\n")
        (tree / "requirements.txt").write_text("\n".join(other_pins) + "\n")
        for script in SCRIPTS:
            shutil.copyfile(root / TEMPLATES / script, tree / script)
            (tree / script).chmod(0o755)
        return write_zip(Path(out) / f"dlvc-autograder{assignment}.zip", collect_files(tree))


def requirements(root: Path = REPOSITORY_ROOT) -> tuple[list[str], list[str]]:
    """The pins the grader needs: (torch and torchvision, everything else), from ``pyproject.toml``."""
    project = tomllib.loads((root / "pyproject.toml").read_text())
    pins = [*project["project"]["dependencies"], *extra_pins(project, GRADING_DEPENDENCIES)]
    return [pin for pin in pins if requirement_name(pin) in TORCH_PACKAGES], [pin for pin in pins if requirement_name(pin) not in TORCH_PACKAGES]


# ----- on Gradescope ---------------------------------------------------------------------------------


def grade_submission(gradescope_root: Path, source: Path = REPOSITORY_ROOT) -> int | None:
    """Grade ``ROOT/submission`` and write ``ROOT/results/results.json``; the grader's exit status.

    Whatever goes wrong, results.json appears: with zero points and a line that says the
    fault is the autograder's. A container with less memory than grading needs gets one
    that also tells the instructors which size to choose, instead of a grader killed halfway.
    """
    submission, results = gradescope_root / "submission", gradescope_root / "results"
    out = gradescope_root / "grading"
    results.mkdir(parents=True, exist_ok=True)
    graded = out / submission_name(submission) / RESULTS_NAME
    status, error, for_instructors = None, None, None
    try:
        assignment = only_assignment(source)
        limit = container_memory_limit()
        if limit is not None and limit < MEMORY_NEEDED_BYTES:
            status, error = 1, memory_advice(limit)
            for_instructors = error[0].upper() + error[1:] + "."
            print(f"dlvc autograder: {error}", file=sys.stderr)
            return status
        parser = argparse.ArgumentParser()
        grade.add_arguments(parser)
        calibration = gradescope_root / CALIBRATION_NAME
        status = grade.run(parser.parse_args([str(submission), "--assignment", str(assignment), "--out", str(out), "--calibration", str(calibration)]))
        return status
    finally:
        if status == 0 and graded.is_file():
            shutil.copyfile(graded, results / RESULTS_NAME)
        else:
            write_failure(results, error or f"dlvc grade ended with status {status}; see the autograder's log", for_instructors)


def memory_advice(limit: int) -> str:
    """What to tell the instructors when the container's memory limit is below what grading needs."""
    return (
        f"this container may use {limit / 2**20:.0f} MB of memory, and grading needs about {MEMORY_NEEDED_BYTES / 2**20:.0f} MB: "
        f"in the assignment's Autograder Settings on Gradescope, choose a container with at least {CONTAINER_MEMORY_GB:g} GB of memory, "
        "then regrade all submissions"
    )


def calibrate(gradescope_root: Path, source: Path = REPOSITORY_ROOT) -> int:
    """Grade the reference build once, when the image is built, into ``ROOT/calibration.json``; the grader's exit status.

    Every submission's run reuses it (``dlvc grade --calibration``) while it holds: same
    suite, reference, Python, torch and machine; otherwise that run calibrates again.
    """
    assignment = only_assignment(source)
    parser = argparse.ArgumentParser()
    grade.add_arguments(parser)
    with tempfile.TemporaryDirectory(prefix="dlvc-calibrate-", dir=gradescope_root) as out:
        return grade.run(parser.parse_args(["--assignment", str(assignment), "--out", out, "--calibration", str(gradescope_root / CALIBRATION_NAME)]))


def only_assignment(source: Path) -> int:
    """The assignment whose manifest the autograder holds (it holds one)."""
    found = available_assignments(source)
    if len(found) != 1:
        raise AutograderError(f"{source} should hold the manifest of one assignment, found {found}")
    return found[0]


def write_failure(results: Path, error: str, for_instructors: str | None = None) -> None:
    """``results/results.json`` with zero points, telling the student that the fault is the autograder's."""
    output = (
        "The autograder could not grade this submission: the fault is the autograder's, not yours. "
        "Tell your instructors; they will regrade it."
    )
    failure = {
        "score": 0,
        "output": output + (f"\n\nFor the instructors: {for_instructors}" if for_instructors else ""),
        "extra_data": {"error": error},
    }
    (results / RESULTS_NAME).write_text(json.dumps(failure, indent=2) + "\n")


def container_memory_limit(cgroup_list: Path = Path("/proc/self/cgroup"), mounts: Path = Path("/sys/fs/cgroup")) -> int | None:
    """The memory this process's container may use, in bytes, or None where no limit is set or none can be read.

    The smallest limit of the process's cgroup and its ancestors (as far as they are
    mounted): cgroup v2's ``memory.max``, cgroup v1's ``memory.limit_in_bytes``, the
    cgroup named in ``/proc/self/cgroup``. Inside a container the cgroup is usually
    mounted at ``/sys/fs/cgroup`` itself, and ``/proc/self/cgroup`` names ``/``.
    """
    try:
        lines = cgroup_list.read_text().splitlines()
    except OSError:
        return None
    limits = []
    for line in lines:
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and controllers == "":
            base, name = mounts, "memory.max"
        elif "memory" in controllers.split(","):
            base, name = mounts / "memory", "memory.limit_in_bytes"
        else:
            continue
        folder = base / path.strip().lstrip("/")
        if not (folder / name).is_file():
            folder = base
        for candidate in (folder, *folder.parents):
            limits += _memory_limit(candidate / name)
            if candidate == base:
                break
    return min(limits, default=None)


def _memory_limit(path: Path) -> list[int]:
    """The limit in one cgroup file, as a list: empty when it is absent, unreadable or unlimited."""
    try:
        value = path.read_text().strip()
        limit = int(value)
    except (OSError, ValueError):  # v2 writes "max" when there is no limit
        return []
    return [limit] if limit < UNLIMITED_BYTES else []


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Grade /autograder/submission as Gradescope's run_autograder does.")
    parser.add_argument("--root", type=Path, default=Path("/autograder"), help="Gradescope's root folder (default: %(default)s)")
    parser.add_argument(
        "--calibrate", action="store_true",
        help=f"grade the reference build only and keep the time limits' calibration in ROOT/{CALIBRATION_NAME} (setup.sh does, when the image is built)",
    )
    args = parser.parse_args(argv)
    root = args.root.resolve()
    return calibrate(root) if args.calibrate else grade_submission(root)


if __name__ == "__main__":
    sys.exit(main())
