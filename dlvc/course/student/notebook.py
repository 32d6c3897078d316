"""The graded code of an assignment's notebook: what its code cells define, as a module.

A notebook holds exercises (functions with TODOs) between cells that load data,
train and plot. Grading and the public tests import the definitions only, never
run the training::

    module = load_notebook_module("assignments/assignment3/species.ipynb")
    module.count_pixels(dataset, 3)

:func:`notebook_definitions` keeps, of every code cell, the top-level statements
that define something and run nothing heavy: imports, functions, classes, and
names bound to plain literals (``NUM_CLASSES = 3``). Everything else (a training
loop, a plot, ``assert`` checks) is left out, and so are IPython's ``%magic`` and
``!shell`` lines. A cell that is not valid Python is left out whole, and the
module says so in a comment, so that a graded test of a function defined there
reports the function as missing rather than crashing.

In a graded submission the module lies beside the package as
``notebooks/<notebook name>.py`` (see :func:`module_name`).
"""

import ast
import re
from pathlib import Path
from types import ModuleType

import nbformat

NOTEBOOKS_PACKAGE = "notebooks"
"""The package a graded notebook's module lies in, beside ``dlvc`` in a graded submission."""
NOTEBOOK_VERSION = 4
CELL_HEADER = re.compile(r"^# cell \d+$")
"""The comment :func:`notebook_definitions` writes above the definitions of each cell."""
PACKAGE_ROOT = Path(__file__).resolve().parents[3]
"""The folder holding the ``dlvc/`` this module belongs to."""


def read_notebook(path: str | Path) -> nbformat.NotebookNode:
    """Read and validate a notebook file; ValueError naming the file when it is not a valid notebook."""
    try:
        notebook = nbformat.read(str(path), as_version=NOTEBOOK_VERSION)
        nbformat.validate(notebook)
    except (OSError, ValueError, nbformat.ValidationError) as error:
        raise ValueError(f"{path}: not a readable Jupyter notebook ({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})") from None
    return notebook


def module_name(notebook_path: str | Path) -> str:
    """``notebooks.species`` for ``assignments/assignment3/species.ipynb``."""
    return f"{NOTEBOOKS_PACKAGE}.{Path(notebook_path).stem}"


def without_magics(source: str) -> str:
    """A cell's source with IPython's ``%magic`` and ``!shell`` lines blanked (line numbers kept)."""
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())


def notebook_definitions(notebook: nbformat.NotebookNode) -> str:
    """The source of a module holding the definitions of every code cell, in cell order."""
    pieces = []
    for index, cell in enumerate(notebook.cells, start=1):
        if cell.cell_type != "code":
            continue
        source = without_magics(cell.source)
        try:
            tree = ast.parse(source)
        except SyntaxError as error:
            pieces.append(f"# cell {index} is left out: it is not valid Python ({error.msg}, line {error.lineno})\n")
            continue
        except (RecursionError, MemoryError, ValueError):
            pieces.append(f"# cell {index} is left out: Python cannot parse it\n")
            continue
        lines = source.splitlines()
        kept = [_statement_lines(lines, node) for node in tree.body if _defines(node)]
        if kept:
            pieces.append(f"# cell {index}\n" + "\n".join(kept) + "\n")
    return "\n".join(pieces)


def _defines(node: ast.stmt) -> bool:
    """Whether a top-level statement only defines: an import, a function, a class, or a name bound to a literal."""
    if isinstance(node, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef)):
        return True
    if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        if all(isinstance(target, ast.Name) for target in targets):
            try:
                ast.literal_eval(node.value)
            except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                return False
            return True
    return False


def _statement_lines(lines: list[str], node: ast.stmt) -> str:
    """The source lines of a statement, decorators included."""
    first = min([node.lineno, *(decorator.lineno for decorator in getattr(node, "decorator_list", []))])
    return "\n".join(lines[first - 1 : node.end_lineno])


def write_notebook_module(notebook: nbformat.NotebookNode, name: str, package_root: str | Path) -> Path:
    """Write the definitions of ``notebook`` as ``package_root/notebooks/<name>.py``; returns that file."""
    target = _module_file(package_root, name)
    target.write_text(notebook_definitions(notebook))
    return target


def _module_file(package_root: str | Path, name: str) -> Path:
    """``package_root/notebooks/<name>.py``, its package folder created."""
    target = Path(package_root) / NOTEBOOKS_PACKAGE / f"{name}.py"
    target.parent.mkdir(parents=True, exist_ok=True)
    (target.parent / "__init__.py").touch()
    return target


def write_submitted_notebook_module(package_root: str | Path, notebook_path: str) -> str | None:
    """Write the definitions of a staged submission's notebook beside its package; a note for the feedback, or None.

    ``notebook_path`` is relative to ``package_root``. A notebook that is missing or
    cannot be read becomes a module that raises ImportError saying so, so that each
    graded test of it fails with that message.
    """
    name = Path(notebook_path).stem
    try:
        write_notebook_module(read_notebook(Path(package_root) / notebook_path), name, package_root)
        return None
    except ValueError as error:
        problem = f"the submission holds no {notebook_path}" if not (Path(package_root) / notebook_path).is_file() else str(error)
    _module_file(package_root, name).write_text(f"raise ImportError({problem!r})\n")
    return f"{problem}: its TODOs score nothing"


def load_notebook_module(notebook_path: str | Path) -> ModuleType:
    """Import the definitions of the notebook file at ``notebook_path`` as a module."""
    return _module(module_name(notebook_path), notebook_definitions(read_notebook(notebook_path)), notebook_path)


def graded_notebook(name: str, checkout: str | Path) -> ModuleType:
    """The definitions of notebook ``name`` as the public tests check them.

    A graded build (the reference build's copy, a mutant, a staged submission) holds
    them as ``notebooks/<name>.py`` beside the ``dlvc/`` being tested; a checkout
    (the course repository, an unpacked handout) holds the notebook itself, as
    ``checkout/assignments/assignment<N>/<name>.ipynb``.
    """
    built = PACKAGE_ROOT / NOTEBOOKS_PACKAGE / f"{name}.py"
    if built.is_file():
        return _module(f"{NOTEBOOKS_PACKAGE}.{name}", built.read_text(), built)
    found = sorted(Path(checkout).glob(f"assignments/assignment*/{name}.ipynb"))
    if not found:
        raise FileNotFoundError(f"no notebook {name}.ipynb in {Path(checkout) / 'assignments'}/assignment<N>/ and no {built}")
    return load_notebook_module(found[0])


def _module(name: str, source: str, origin: str | Path) -> ModuleType:
    module = ModuleType(name)
    module.__file__ = str(origin)
    exec(compile(source, str(origin), "exec"), module.__dict__)  # the notebook's own definitions
    return module
