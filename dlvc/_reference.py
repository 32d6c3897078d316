"""The reference build: this package with ``solutions/`` laid over it.

Instructors keep the full reference source of every stubbed module in
``solutions/<path>`` next to the package (``dlvc/<path>`` holds the generated
stub). When that folder exists, an import finder loads ``<package>.<module>``
from ``solutions/<module path>.py`` whenever such a file exists, and from the
package itself otherwise. Solution markers are comments, so the solution files
are valid Python as they stand.

Set ``DLVC_REFERENCE=0`` to import the stubs even where ``solutions/`` exists.
"""

import importlib.abc
import importlib.util
import os
import sys
from pathlib import Path

SOLUTIONS_DIRNAME = "solutions"


class ReferenceOverlayFinder(importlib.abc.MetaPathFinder):
    """Finds modules of one package in a solutions folder first.

    Args:
        package: the package's import name, for example ``"dlvc"``.
        solutions: the folder whose layout mirrors the package's.
    """

    def __init__(self, package: str, solutions: Path):
        self.package = package
        self.solutions = solutions

    def find_spec(self, fullname, path=None, target=None):
        if not fullname.startswith(self.package + "."):
            return None
        relative = fullname[len(self.package) + 1 :].split(".")
        candidate = self.solutions.joinpath(*relative).with_suffix(".py")
        if not candidate.is_file():
            return None
        return importlib.util.spec_from_file_location(fullname, candidate)


def solutions_folder(package_dir: str | os.PathLike) -> Path | None:
    """The ``solutions/`` folder beside ``package_dir``, or None where there is none."""
    folder = Path(package_dir).resolve().parent / SOLUTIONS_DIRNAME
    return folder if folder.is_dir() else None


def install_reference_overlay(package: str, package_dir: str | os.PathLike) -> bool:
    """Load ``package``'s modules from ``solutions/`` where a solution file exists.

    Returns True when the overlay is active. Does nothing (and returns False) in a
    checkout without ``solutions/`` or when ``DLVC_REFERENCE=0``.
    """
    if os.environ.get("DLVC_REFERENCE", "1") == "0":
        return False
    folder = solutions_folder(package_dir)
    if folder is None:
        return False
    if not any(
        isinstance(finder, ReferenceOverlayFinder) and finder.package == package
        for finder in sys.meta_path
    ):
        sys.meta_path.insert(0, ReferenceOverlayFinder(package, folder))
    return True
