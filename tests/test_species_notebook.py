"""The species notebook of Assignment 3: the student notebook made from the solution, its execution, and how it is graded.

The execution tests run the notebooks headlessly with nbclient on the synthetic
twin, in a temporary folder (where the notebook writes its data, runs and
competition entry). The solution runs whole with its own settings and must reach
the target it states; the student notebook runs with small settings, so that it
gets to its stubs in seconds.
"""

import copy
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from dlvc.course.authoring.handout import leaks
from dlvc.course.student.manifest import load_manifest
from dlvc.course.student.notebook import NOTEBOOKS_PACKAGE, notebook_definitions, read_notebook, write_submitted_notebook_module
from dlvc.course.authoring.stubs import BEGIN_MARKER, HIDDEN_CELL_TAG, make_student_notebook

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
RELATIVE = "assignments/assignment3/species.ipynb"
SOLUTION = read_notebook(REPOSITORY_ROOT / RELATIVE)
TODOS = load_manifest(3).part("species_notebook").todos
SMALL = "NUM_TRAIN = 40\nNUM_TEST = 16\nEPOCHS = 1\nIMAGE_SIZE = 32\n"
"""Settings that bring the student notebook to its stubs quickly (injected after the cell tagged parameters)."""
CELL_SECONDS = 1200


def execute(notebook: nbformat.NotebookNode, folder: Path, settings: str = "") -> nbformat.NotebookNode:
    """Run ``notebook`` in ``folder``, with ``settings`` as a cell after its parameters; the executed notebook."""
    notebook = copy.deepcopy(notebook)
    if settings:
        parameters = next(index for index, cell in enumerate(notebook.cells) if "parameters" in cell.metadata.get("tags", []))
        notebook.cells.insert(parameters + 1, nbformat.v4.new_code_cell(settings))
    NotebookClient(notebook, timeout=CELL_SECONDS, kernel_name="python3", resources={"metadata": {"path": str(folder)}}).execute()
    return notebook


def first_error(notebook: nbformat.NotebookNode, folder: Path, settings: str) -> CellExecutionError:
    """The error that stops ``notebook``; the test fails when it runs clean."""
    with pytest.raises(CellExecutionError) as raised:
        execute(notebook, folder, settings)
    return raised.value


def defining_cell(notebook: nbformat.NotebookNode, todo: str) -> int:
    return next(index for index, cell in enumerate(notebook.cells) if f"# TODO {todo} " in cell.source)


# ----- the student notebook, as the handout holds it -----------------------------------------


def test_the_student_notebook_holds_no_solution_no_hidden_cell_and_no_output():
    student = make_student_notebook(SOLUTION, RELATIVE)
    for index, cell in enumerate(student.cells, start=1):
        assert BEGIN_MARKER not in cell.source, f"cell {index} of the student notebook still holds a solution region"
        assert HIDDEN_CELL_TAG not in cell.metadata.get("tags", []), f"cell {index} is tagged hidden and should have been removed"
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"cell {index} keeps its outputs"
    assert len(student.cells) == len(SOLUTION.cells) - sum(HIDDEN_CELL_TAG in cell.metadata.get("tags", []) for cell in SOLUTION.cells)


def test_the_student_notebook_raises_the_stub_of_each_todo_of_its_part():
    source = "\n".join(cell.source for cell in make_student_notebook(SOLUTION, RELATIVE).cells)
    for todo in TODOS:
        assert f"'TODO {todo} (Assignment 3, part 6) in {RELATIVE}," in source, f"TODO {todo} has no stub naming the notebook"


def test_the_solution_notebook_keeps_its_instructors_check_in_a_hidden_cell():
    hidden = [cell for cell in SOLUTION.cells if HIDDEN_CELL_TAG in cell.metadata.get("tags", [])]
    assert hidden and all("assert" in cell.source for cell in hidden), "the solution should check its margin over the target in a hidden cell"


# ----- grading a submitted notebook --------------------------------------------------------------


def notebook_of(*sources: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in sources])


def test_the_graded_definitions_keep_imports_functions_classes_and_literal_constants():
    module = notebook_definitions(notebook_of("import math\nLIMIT = 3\nNAMES = ('a', 'b')\n", "def area(r):\n    return math.pi * r * r\n", "class Box:\n    pass\n"))
    namespace = {}
    exec(module, namespace)
    assert {"math", "LIMIT", "NAMES", "area", "Box"} <= set(namespace), f"definitions missing from {sorted(namespace)}"


def test_the_graded_definitions_leave_out_every_statement_that_runs_something():
    module = notebook_definitions(notebook_of("import time\ntime.sleep(1000)\nwhile True:\n    pass\n", "model = train()\nassert False\n", "%matplotlib inline\n!pip install x\nX = 1\n"))
    namespace = {}
    exec(module, namespace)
    assert namespace.get("X") == 1 and "model" not in namespace, "only imports, definitions and literal constants may be kept"


def test_a_cell_that_is_not_python_is_left_out_and_named():
    module = notebook_definitions(notebook_of("def f(:\n", "def g():\n    return 1\n"))
    assert "cell 1 is left out" in module and "def g" in module


def test_a_missing_notebook_becomes_a_module_that_says_so(tmp_path):
    note = write_submitted_notebook_module(tmp_path, RELATIVE)
    assert note is not None and "holds no assignments/assignment3/species.ipynb" in note
    module = (tmp_path / NOTEBOOKS_PACKAGE / "species.py").read_text()
    with pytest.raises(ImportError, match="holds no assignments/assignment3/species.ipynb"):
        exec(module, {})


def test_a_notebook_that_is_not_json_becomes_a_module_that_says_so(tmp_path):
    (tmp_path / RELATIVE).parent.mkdir(parents=True)
    (tmp_path / RELATIVE).write_text("{ not a notebook")
    assert "not a readable Jupyter notebook" in write_submitted_notebook_module(tmp_path, RELATIVE)


# ----- execution ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_student_notebook_stops_at_its_first_stub(tmp_path):
    error = first_error(make_student_notebook(SOLUTION, RELATIVE), tmp_path, SMALL)
    assert error.ename == "NotImplementedError" and f"TODO {TODOS[0]} " in error.evalue, f"expected the stub of TODO {TODOS[0]}, got {error.ename}: {error.evalue}"


@pytest.mark.slow
@pytest.mark.parametrize("todo", TODOS[1:])
def test_with_the_earlier_todos_filled_the_student_notebook_stops_at_the_next_stub(tmp_path, todo):
    later = set(TODOS[TODOS.index(todo) :])
    error = first_error(make_student_notebook(SOLUTION, RELATIVE, only=later), tmp_path, SMALL)
    assert error.ename == "NotImplementedError" and f"TODO {todo} " in error.evalue, f"expected the stub of TODO {todo}, got {error.ename}: {error.evalue}"


@pytest.mark.slow
def test_the_solution_notebook_runs_clean_and_reaches_its_target(tmp_path):
    executed = execute(SOLUTION, tmp_path)
    printed = "".join(output.get("text", "") for cell in executed.cells if cell.cell_type == "code" for output in cell.outputs)
    assert "(target" in printed, "the target cell printed nothing"
    assert (tmp_path / "competition" / "model.pt").is_file() and (tmp_path / "competition" / "model.json").is_file(), "no competition entry was written"


def test_the_handout_check_finds_a_solution_region_of_the_notebook(tmp_path):
    (tmp_path / RELATIVE).parent.mkdir(parents=True)
    nbformat.write(SOLUTION, tmp_path / RELATIVE)
    assert any(RELATIVE in problem and "cell" in problem for problem in leaks(tmp_path)), "the solution notebook in a handout should count as a leak"
    nbformat.write(make_student_notebook(SOLUTION, RELATIVE), tmp_path / RELATIVE)
    assert leaks(tmp_path) == [], "the student notebook gives nothing away"
