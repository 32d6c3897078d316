"""``dlvc handout``: what the students' zip holds, what it must never hold, and the checks it runs before it is written."""

import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from dlvc.course.student.archive import collect_files, write_zip
from dlvc.course.cli import main
from dlvc.course.authoring.handout import (
    SCRIPTS,
    HandoutError,
    check_install,
    check_public_tests,
    expected_todos,
    handout_name,
    lay_out,
    leaks,
    public_tests,
)

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
ASSIGNMENT = 2
TOP = handout_name(ASSIGNMENT) + "/"


@pytest.fixture(scope="module")
def handout(handouts) -> Path:
    """Assignment 2's handout, built by the command with all its checks."""
    return handouts(ASSIGNMENT)[0]


@pytest.mark.slow
def test_handout_command_reports_each_check_it_passed(handouts):
    printed = handouts(ASSIGNMENT)[1]
    for check in ("no solution line and no staff file", "installs and imports in a fresh virtual environment", "every public test that fails, fails at a stub"):
        assert check in printed, f"dlvc handout should say {check!r}; it printed:\n{printed}"
    assert printed.rstrip().endswith(f"{handout_name(ASSIGNMENT)}.zip")


def names(archive: Path) -> set[str]:
    with zipfile.ZipFile(archive) as zipped:
        return {name.removeprefix(TOP) for name in zipped.namelist()}


@pytest.fixture
def tree(tmp_path) -> Path:
    """Assignment 2's handout laid out in a folder, unchecked and unzipped."""
    return lay_out(ASSIGNMENT, tmp_path / "handout")


@pytest.mark.slow
def test_handout_holds_the_package_the_assignment_the_scripts_and_the_public_tests(handout):
    held = names(handout)
    expected = {"README.md", "pyproject.toml", "Makefile", ".gitignore", "assignments/assignment2/assignment.toml", "assignments/assignment2/README.md"}
    expected |= set(SCRIPTS) | set(public_tests(ASSIGNMENT))
    assert expected <= held, f"the handout lacks {sorted(expected - held)}"
    assert "dlvc/metrics.py" in held and "dlvc/models/mit_transformer.py" in held


@pytest.mark.slow
def test_handout_holds_nothing_of_the_solutions_the_hidden_tests_or_the_staff(handout):
    held = names(handout)
    forbidden = [name for name in held if name.startswith(("solutions/", "tests/hidden/", "assignments/assignment1/", "assignments/assignment3/")) or "mutants" in name]
    assert not forbidden, f"the handout holds {forbidden}"
    student_tools = {f"dlvc/course/student/{path.name}" for path in (REPOSITORY_ROOT / "dlvc" / "course" / "student").glob("*.py")}
    assert {name for name in held if name.startswith("dlvc/course/")} == {"dlvc/course/__init__.py", "dlvc/course/cli.py", *student_tools}
    assert {name for name in held if name.startswith("tests/")} == set(public_tests(ASSIGNMENT)), "only the public tests of Assignments 1 and 2"


@pytest.mark.slow
def test_handout_package_is_the_generated_stubs(handout):
    with zipfile.ZipFile(handout) as zipped:
        for relative in ("metrics.py", "models/mit_transformer.py", "models/pspnet.py"):
            shipped = zipped.read(f"{TOP}dlvc/{relative}").decode()
            assert shipped == (REPOSITORY_ROOT / "dlvc" / relative).read_text(), f"dlvc/{relative} in the handout is not the stub"
            assert "# BEGIN SOLUTION" not in shipped


@pytest.mark.slow
def test_handout_is_byte_identical_when_built_twice(handout, tmp_path):
    again = write_zip(tmp_path / handout.name, collect_files(lay_out(ASSIGNMENT, tmp_path / "tree")), top=handout_name(ASSIGNMENT))
    assert again.read_bytes() == handout.read_bytes(), "two builds of one commit differ"


@pytest.mark.slow
def test_student_pyproject_pins_what_the_course_pins(handout):
    with zipfile.ZipFile(handout) as zipped:
        student = tomllib.loads(zipped.read(f"{TOP}pyproject.toml").decode())
    course = tomllib.loads((REPOSITORY_ROOT / "pyproject.toml").read_text())
    assert student["project"]["dependencies"] == course["project"]["dependencies"]
    pytest_pin = [pin for pin in course["project"]["optional-dependencies"]["test"] if pin.startswith("pytest")]
    assert student["project"]["optional-dependencies"]["test"] == pytest_pin, "students need pytest, not the course's oracles"
    assert student["project"]["scripts"] == {"dlvc": "dlvc.course.cli:main"}
    assert student["tool"]["pytest"]["ini_options"]["testpaths"] == ["tests/public"]


def test_laid_out_handout_has_no_leak(tree):
    assert leaks(tree) == []


def test_leak_check_finds_a_solution_file_copied_into_the_handout(tree):
    shutil.copyfile(REPOSITORY_ROOT / "solutions" / "metrics.py", tree / "tests" / "public" / "helpers.py")
    problems = leaks(tree)
    assert any(problem.startswith("tests/public/helpers.py holds") and "solutions/metrics.py" in problem for problem in problems), problems


def test_leak_check_finds_one_long_solution_line_in_a_text_file(tree):
    readme = tree / "assignments" / "assignment2" / "README.md"
    readme.write_text(readme.read_text() + "\nHint:\n\n" + long_solution_lines("metrics.py")[0] + "\n")
    problems = leaks(tree)
    assert any(problem.startswith("assignments/assignment2/README.md holds 1 line(s)") for problem in problems), problems


def long_solution_lines(relative: str) -> list[str]:
    """The long code lines inside the solution regions of ``solutions/<relative>``."""
    inside, found = False, []
    for line in (REPOSITORY_ROOT / "solutions" / relative).read_text().splitlines():
        if line.strip() in ("# BEGIN SOLUTION", "# END SOLUTION"):
            inside = line.strip() == "# BEGIN SOLUTION"
        elif inside and len(line.strip()) >= 40 and not line.strip().startswith("#"):
            found.append(line)
    return found


def test_leak_check_finds_staff_modules_and_hidden_tests(tree):
    shutil.copytree(REPOSITORY_ROOT / "dlvc" / "course" / "grader", tree / "dlvc" / "course" / "grader")
    shutil.copytree(REPOSITORY_ROOT / "tests" / "hidden" / "assignment1", tree / "tests" / "hidden" / "assignment1")
    problems = leaks(tree)
    assert any(problem.startswith("dlvc/course/grader/grade.py: a staff module") for problem in problems), problems
    assert any(problem.startswith("tests/hidden/assignment1/test_metric.py: the handout holds no tests/hidden/") for problem in problems), problems


def course_copy(folder: Path) -> Path:
    """The parts of the course repository a handout is built from, copied into ``folder``."""
    for part in ("dlvc", "solutions", "assignments", "tests/public"):
        shutil.copytree(REPOSITORY_ROOT / part, folder / part, ignore=shutil.ignore_patterns("__pycache__"))
    for name in (*SCRIPTS, "pyproject.toml"):
        shutil.copyfile(REPOSITORY_ROOT / name, folder / name)
    return folder


def test_handout_refuses_stubs_that_are_out_of_date(tmp_path):
    root = course_copy(tmp_path / "course")
    stub = root / "dlvc" / "metrics.py"
    stub.write_text(stub.read_text() + "\n# edited by hand\n")
    with pytest.raises(HandoutError, match=r"out of date with solutions/ \(run `make stubs`\): dlvc/metrics.py"):
        lay_out(ASSIGNMENT, tmp_path / "handout", root)


def test_handout_names_the_files_that_differ_from_the_last_commit(tmp_path, capsys):
    root = course_copy(tmp_path / "course")
    git = ["git", "-C", str(root), "-c", "user.name=course", "-c", "user.email=course@example.org"]
    for arguments in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "the course"]):
        subprocess.run([*git, *arguments], check=True, capture_output=True)
    lay_out(ASSIGNMENT, tmp_path / "clean", root)
    assert "warning" not in capsys.readouterr().err
    (root / "dlvc" / "scratch.py").write_text("# an instructor's experiment\n")
    (root / "train.py").write_text((root / "train.py").read_text() + "\n# edited\n")
    lay_out(ASSIGNMENT, tmp_path / "dirty", root)
    assert "differ from the last commit: dlvc/scratch.py, train.py" in capsys.readouterr().err


@pytest.mark.slow
def test_install_check_refuses_a_handout_whose_dlvc_offers_a_staff_command(tree, tmp_path):
    (tree / "dlvc" / "course" / "authoring").mkdir()
    for name in ("__init__.py", "stubs.py"):
        shutil.copyfile(REPOSITORY_ROOT / "dlvc" / "course" / "authoring" / name, tree / "dlvc" / "course" / "authoring" / name)
    with pytest.raises(HandoutError, match="must offer submit and none of stubs"):
        check_install(tree, tmp_path / "work")


@pytest.mark.slow
def test_public_test_check_refuses_a_failure_that_is_not_at_a_stub(tree, tmp_path):
    (tree / "tests" / "public" / "test_needs_a_file.py").write_text(
        "from pathlib import Path\n\n\ndef test_data_is_there():\n    assert Path('data/pets.npy').is_file()\n"
    )
    with pytest.raises(HandoutError, match=r"not at a stub of its assignments:\n  tests.public.test_needs_a_file.test_data_is_there"):
        check_public_tests(tree, Path(sys.executable), expected_todos(ASSIGNMENT), tmp_path / "report.xml")


@pytest.mark.parametrize("command", ["handout", "autograder"])
def test_staff_zip_commands_refuse_an_out_that_is_a_file(tmp_path, capsys, command):
    taken = tmp_path / "dist"
    taken.write_text("not a folder")
    assert main([command, "--assignment", "1", "--out", str(taken)]) == 2
    assert f"--out {taken}: a file, not a folder" in capsys.readouterr().err
    assert taken.read_text() == "not a folder"


def test_handout_of_an_assignment_without_a_manifest_names_those_with_one(tmp_path, capsys):
    assert main(["handout", "--assignment", "9", "--out", str(tmp_path)]) == 2
    assert "assignments with one: 1, 2, 3" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
