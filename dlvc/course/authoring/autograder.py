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

``run_autograder`` grades the one submission with ``dlvc grade`` (the same grader,
sandbox and calibration a TA runs on a class) and copies its ``results.json`` to
``/autograder/results/results.json``. When grading cannot run at all, that file
still appears, with zero points and an output that says the fault is the
autograder's, so the student knows to ask.

``python -m dlvc.course.authoring.autograder --root ROOT`` is the grading side; ``ROOT`` is
``/autograder`` on Gradescope and any folder laid out like it in a test.
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


def grade_submission(gradescope_root: Path, source: Path = REPOSITORY_ROOT) -> int:
    """Grade ``ROOT/submission`` and write ``ROOT/results/results.json``; the grader's exit status."""
    found = available_assignments(source)
    if len(found) != 1:
        raise AutograderError(f"{source} should hold the manifest of one assignment, found {found}")
    submission, results = gradescope_root / "submission", gradescope_root / "results"
    out = gradescope_root / "grading"
    results.mkdir(parents=True, exist_ok=True)
    parser = argparse.ArgumentParser()
    grade.add_arguments(parser)
    graded = out / submission_name(submission) / RESULTS_NAME
    status = None
    try:
        status = grade.run(parser.parse_args([str(submission), "--assignment", str(found[0]), "--out", str(out)]))
    finally:
        if status == 0 and graded.is_file():
            shutil.copyfile(graded, results / RESULTS_NAME)
        else:
            failure = {
                "score": 0,
                "output": (
                    "The autograder could not grade this submission: the fault is the autograder's, not yours. "
                    "Tell your instructors; they will regrade it."
                ),
                "extra_data": {"error": f"dlvc grade ended with status {status}; see the autograder's log"},
            }
            (results / RESULTS_NAME).write_text(json.dumps(failure, indent=2) + "\n")
    return status


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Grade /autograder/submission as Gradescope's run_autograder does.")
    parser.add_argument("--root", type=Path, default=Path("/autograder"), help="Gradescope's root folder (default: %(default)s)")
    args = parser.parse_args(argv)
    return grade_submission(args.root.resolve())


if __name__ == "__main__":
    sys.exit(main())
