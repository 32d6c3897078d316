"""The public tests shipped to students catch every stub: each TODO left undone fails a test naming it.

For each TODO, a student-like checkout is built in a temporary folder: ``dlvc/`` with
every stubbed module replaced by its reference source (solution files are valid
Python) except for that one TODO's region, which is stubbed, and no ``solutions/``.
The public tests that import the module must then fail with the TODO's
NotImplementedError. The public tests pass on the reference build in the main run.

The SegFormer TODOs are also held to the oracle: with any one of them stubbed, the
comparison with transformers (``tests/test_segformer.py``) fails, naming it.
"""

import re
import shutil
from functools import partial
from pathlib import Path

import pytest

from dlvc.course.student.manifest import load_manifest
from dlvc.course.student.notebook import read_notebook, write_notebook_module
from dlvc.course.authoring.stubs import BEGIN_MARKER, find_regions, graded_notebooks, make_student_notebook, make_stub, solution_files
from warm_pytest import run_all

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = REPOSITORY_ROOT / "solutions"


def todos() -> list[tuple[str, Path]]:
    """(TODO id, solution file relative to solutions/, or graded notebook relative to the repository) of every region."""
    if not SOLUTIONS.is_dir():
        return []
    in_files = [
        (region.todo_id, relative)
        for relative in solution_files(REPOSITORY_ROOT)
        for region in find_regions((SOLUTIONS / relative).read_text(), str(relative))
    ]
    in_notebooks = [(todo_id, Path(relative)) for relative in graded_notebooks(REPOSITORY_ROOT) for todo_id in notebook_todos(relative)]
    return in_files + in_notebooks


def notebook_todos(relative: str) -> list[str]:
    cells = read_notebook(REPOSITORY_ROOT / relative).cells
    return [region.todo_id for cell in cells if cell.cell_type == "code" and BEGIN_MARKER in cell.source for region in find_regions(cell.source + "\n", relative)]


def build_with_one_stub(folder: Path, todo_id: str, relative: Path) -> None:
    """The reference build with only TODO ``todo_id`` stubbed (in a solution file, or in a notebook's definitions)."""
    shutil.copytree(REPOSITORY_ROOT / "dlvc", folder / "dlvc", ignore=shutil.ignore_patterns("__pycache__"))
    for other in solution_files(REPOSITORY_ROOT):
        source = (SOLUTIONS / other).read_text()
        (folder / "dlvc" / other).write_text(make_stub(source, f"dlvc/{other.as_posix()}", only={todo_id}) if other == relative else source)
    for notebook in graded_notebooks(REPOSITORY_ROOT):
        stubbed = make_student_notebook(read_notebook(REPOSITORY_ROOT / notebook), notebook, only={todo_id} if Path(notebook) == relative else set())
        write_notebook_module(stubbed, Path(notebook).stem, folder)


def public_tests_importing(relative: Path) -> list[str]:
    if relative.suffix == ".ipynb":
        assignment = int(relative.parent.name.removeprefix("assignment"))
        return sorted({test for part in load_manifest(assignment).parts if relative.as_posix() in part.files for test in part.public_tests})
    module = "dlvc." + ".".join(relative.with_suffix("").parts)
    files = sorted(str(path.relative_to(REPOSITORY_ROOT)) for path in (REPOSITORY_ROOT / "tests" / "public").glob("test_*.py") if module in path.read_text())
    assert files, f"no public test imports {module}"
    return files


def failing_todos(run, checkout: Path, tests: list[str], name: str) -> tuple[int | None, set[str], str]:
    """Run ``tests`` against the dlvc package in ``checkout``: the exit code, the TODOs the failures name, the output's end."""
    status, output = run([*tests, "--impl", str(checkout), "-x", "-q", "-p", "no:cacheprovider", "--tb=line"], name)
    return status, set(re.findall(r"NotImplementedError: TODO (\S+) \(", output)), output[-3000:]


SEGFORMER_TODOS = [(todo_id, relative) for todo_id, relative in todos() if relative.stem in ("mit_transformer", "segformer_head")]
ORACLE = ["tests/test_segformer.py", "-k", "equals_transformers or gradients_equal_transformers"]


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory) -> dict:
    """``{(check, TODO id): outcome}`` for every TODO stubbed on its own; check is "public" or "oracle". Two warm runs at a time."""
    runs = [("public", todo_id, relative, public_tests_importing(relative)) for todo_id, relative in todos()]
    runs += [("oracle", todo_id, relative, ORACLE) for todo_id, relative in SEGFORMER_TODOS]

    def outcome(check, todo_id, relative, tests, run):
        checkout = tmp_path_factory.mktemp(f"{check}-todo{todo_id}")
        build_with_one_stub(checkout, todo_id, relative)
        return failing_todos(run, checkout, tests, f"{check}-todo{todo_id}")

    jobs = {(check, todo_id): partial(outcome, check, todo_id, relative, tests) for check, todo_id, relative, tests in runs}
    return run_all(tmp_path_factory.mktemp("logs"), jobs)


@pytest.mark.slow
@pytest.mark.skipif(not SOLUTIONS.is_dir(), reason="no solutions/ folder: a student's checkout")
@pytest.mark.parametrize("todo_id, relative", todos(), ids=[f"TODO {todo_id}" for todo_id, _ in todos()])
def test_public_tests_catch_the_stub(outcomes, todo_id, relative):
    returncode, reported, output = outcomes["public", todo_id]
    assert returncode == 1 and reported == {todo_id}, f"with only TODO {todo_id} stubbed, the public tests said:\n{output}"


@pytest.mark.slow
@pytest.mark.skipif(not SEGFORMER_TODOS, reason="no SegFormer solution files: a student's checkout")
@pytest.mark.parametrize("todo_id, relative", SEGFORMER_TODOS, ids=[f"TODO {todo_id}" for todo_id, _ in SEGFORMER_TODOS])
def test_transformers_oracle_catches_the_segformer_stub(outcomes, todo_id, relative):
    returncode, reported, output = outcomes["oracle", todo_id]
    assert returncode == 1 and reported == {todo_id}, f"with only TODO {todo_id} stubbed, the oracle test said:\n{output}"
