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
``tests/hidden/assignment<N>/mutants/<name>.diff``. ``make test`` grades every
mutant and runs the public tests on it.

Patches are applied by matching each hunk's old lines exactly (line numbers are
only a hint), so a mutant that no longer fits the reference fails loudly.
"""

import re
from dataclasses import dataclass
from pathlib import Path

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
    if not target.startswith("dlvc/"):
        raise MutantError(f"{path}: the diff must patch a file of the package, b/dlvc/<file>; got {target!r}")
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
    """Patch ``package_root/<mutant.path>`` in place; MutantError when a hunk's old lines are not found exactly once."""
    target = Path(package_root) / mutant.path
    lines = target.read_text().splitlines()
    for number, (old, new) in enumerate(mutant.hunks, start=1):
        starts = [start for start in range(len(lines) - len(old) + 1) if tuple(lines[start : start + len(old)]) == old]
        if len(starts) != 1:
            found = "not found" if not starts else f"found {len(starts)} times"
            raise MutantError(f"mutant {mutant.name}: hunk {number} does not fit {mutant.path} (its old lines are {found}); update the mutant")
        lines[starts[0] : starts[0] + len(old)] = new
    target.write_text("\n".join(lines) + "\n")
    return target
