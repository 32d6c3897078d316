"""Known student mistakes, kept as small patches of the reference build, that prove the suites.

A mutant is a unified diff (``diff -u``) of a file of the reference build, under a
few header lines that say what it is::

    Mistake: the confusion matrix counts pixels labelled 255
    Part: metric
    TODO: 3
    Public: caught
    --- a/dlvc/metrics.py
    +++ b/dlvc/metrics.py
    @@ -101,3 +101,3 @@
    ...

``Part`` is the part of the manifest whose points the mistake must cost (and no
other part's), ``TODO`` the TODO it gets wrong; ``Public`` says whether the public tests must catch it too
(``caught``) or why they cannot (``unseen: <why>``). To add one, copy the file
from the reference build (``dlvc/`` with ``solutions/`` laid over it), make the
mistake, and write ``diff -u a/dlvc/<file> b/dlvc/<file>`` under the header into
``tests/hidden/assignment<N>/mutants/<name>.diff``. A mistake in a notebook's TODO
patches the notebook's definitions as the reference build holds them,
``notebooks/<name>.py`` (:func:`~dlvc.course.authoring.stubs.copy_package` writes it). ``make
test`` grades every mutant and runs the public tests on it.

Patches are applied by matching each hunk's old lines exactly (line numbers are
only a hint), so a mutant that no longer fits the reference fails loudly.
"""

import re
from dataclasses import dataclass
from pathlib import Path

import nbformat

from ..student.notebook import CELL_HEADER, NOTEBOOKS_PACKAGE, read_notebook

HEADER_FIELDS = ("Mistake", "Part", "TODO", "Public")
HUNK = re.compile(r"^@@ -\d+(?:,\d+)? \+\d+(?:,\d+)? @@")


class MutantError(ValueError):
    """A mutant file is malformed or no longer applies; the message names the file."""


@dataclass(frozen=True)
class Mutant:
    """One known mistake: what it is, the part it must cost, and its patch."""

    name: str
    mistake: str
    part: str
    todo: str
    public: str
    path: str
    hunks: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...]
    """Each hunk as (old lines, new lines)."""

    @property
    def public_catches(self) -> bool:
        return self.public == "caught"


def load_mutants(folder: Path) -> list[Mutant]:
    """Every ``*.diff`` of ``folder``, parsed, in name order."""
    return [parse_mutant(path) for path in sorted(Path(folder).glob("*.diff"))]


def parse_mutant(path: Path) -> Mutant:
    lines = Path(path).read_text().splitlines()
    fields, index = {}, 0
    while index < len(lines) and not lines[index].startswith("--- "):
        if lines[index].strip():
            key, _, value = lines[index].partition(":")
            fields[key.strip()] = value.strip()
        index += 1
    missing = [field for field in HEADER_FIELDS if not fields.get(field)]
    if missing:
        raise MutantError(f"{path}: the header lacks {', '.join(missing)} (lines 'Field: value' above the diff)")
    if not (fields["Public"] == "caught" or fields["Public"].startswith("unseen:")):
        raise MutantError(f"{path}: Public: expected 'caught' or 'unseen: <why the public tests cannot see it>', got {fields['Public']!r}")
    if index + 1 >= len(lines) or not lines[index + 1].startswith("+++ "):
        raise MutantError(f"{path}: expected a unified diff ('--- a/<file>' and '+++ b/<file>') below the header")
    target = lines[index + 1][4:].split("\t")[0].strip()
    target = target[2:] if target.startswith("b/") else target
    if not target.startswith(("dlvc/", "notebooks/")):
        raise MutantError(
            f"{path}: the diff must patch a file of the package, b/dlvc/<file>, or a notebook's definitions, b/notebooks/<name>.py; got {target!r}"
        )
    hunks = _hunks(path, lines[index + 2 :])
    return Mutant(Path(path).stem, fields["Mistake"], fields["Part"], fields["TODO"], fields["Public"], target, hunks)


def _hunks(path: Path, lines: list[str]):
    hunks, old, new = [], None, None
    for line in lines:
        if HUNK.match(line):
            if old is not None:
                hunks.append((tuple(old), tuple(new)))
            old, new = [], []
        elif old is None:
            raise MutantError(f"{path}: expected '@@ ... @@' before {line!r}")
        elif line.startswith(" ") or line == "":
            old.append(line[1:])
            new.append(line[1:])
        elif line.startswith("-"):
            old.append(line[1:])
        elif line.startswith("+"):
            new.append(line[1:])
        elif not line.startswith("\\"):
            raise MutantError(f"{path}: a diff line must start with ' ', '-' or '+', got {line!r}")
    if old is None:
        raise MutantError(f"{path}: the diff has no hunk")
    hunks.append((tuple(old), tuple(new)))
    return tuple(hunks)


def apply_mutant(mutant: Mutant, package_root: Path) -> Path:
    """Patch ``package_root/<mutant.path>`` in place; MutantError when a hunk's old lines are not found exactly once.

    A mutant of a notebook's definitions (``notebooks/<name>.py``) also patches the
    code cell of the notebook that holds the hunk, when ``package_root`` holds the
    notebook (``assignments/assignment<N>/<name>.ipynb``), so that a submission made
    from the folder makes the same mistake.
    """
    target = Path(package_root) / mutant.path
    target.write_text(_patched(mutant, target.read_text(), mutant.path))
    if mutant.path.startswith(NOTEBOOKS_PACKAGE + "/"):
        for path in Path(package_root).glob(f"assignments/assignment*/{Path(mutant.path).stem}.ipynb"):
            _patch_notebook(mutant, path)
    return target


def _patched(mutant: Mutant, text: str, where: str, hunks=None) -> str:
    lines = text.splitlines()
    for number, (old, new) in enumerate(mutant.hunks if hunks is None else hunks, start=1):
        starts = [start for start in range(len(lines) - len(old) + 1) if tuple(lines[start : start + len(old)]) == old]
        if len(starts) != 1:
            found = "not found" if not starts else f"found {len(starts)} times"
            raise MutantError(f"mutant {mutant.name}: hunk {number} does not fit {where} (its old lines are {found}); update the mutant")
        lines[starts[0] : starts[0] + len(old)] = new
    return "\n".join(lines) + "\n"


def _within_a_cell(hunk: tuple[tuple[str, ...], tuple[str, ...]]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """A hunk of the definitions without the context lines at its ends that lie between cells (blank, ``# cell N``)."""
    old, new = list(hunk[0]), list(hunk[1])
    while old and new and old[-1] == new[-1] and _between_cells(old[-1]):
        old.pop(), new.pop()
    while old and new and old[0] == new[0] and _between_cells(old[0]):
        old.pop(0), new.pop(0)
    return tuple(old), tuple(new)


def _between_cells(line: str) -> bool:
    return not line.strip() or CELL_HEADER.match(line) is not None


def _patch_notebook(mutant: Mutant, path: Path) -> None:
    """Apply each hunk to the one code cell of the notebook at ``path`` that holds its old lines."""
    notebook = read_notebook(path)
    for old, new in map(_within_a_cell, mutant.hunks):
        cells = [cell for cell in notebook.cells if cell.cell_type == "code" and "\n".join(old) in cell.source]
        if len(cells) != 1:
            raise MutantError(f"mutant {mutant.name}: a hunk fits {len(cells)} code cells of {path}, expected one; update the mutant")
        cells[0].source = _patched(mutant, cells[0].source, str(path), hunks=[(old, new)]).rstrip("\n")
    nbformat.write(notebook, path)
