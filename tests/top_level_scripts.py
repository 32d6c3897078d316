"""Helpers for the tests of the top-level scripts (train.py, train_segformer.py, ...): run one, or import it."""

import importlib
import subprocess
import sys
from pathlib import Path

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]


def run_script(*arguments, launcher=(sys.executable,), expect_success=True) -> subprocess.CompletedProcess:
    """Run a script of the repository root with ``arguments``; unless told otherwise, fail the test when it fails."""
    result = subprocess.run([*launcher, *map(str, arguments)], cwd=REPOSITORY_ROOT, capture_output=True, text=True, timeout=600)
    if expect_success:
        assert result.returncode == 0, f"{' '.join(map(str, arguments))} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def import_script(name: str):
    """The script ``<name>.py`` of the repository root as a module, to call its ``parse_args``."""
    sys.path.insert(0, str(REPOSITORY_ROOT))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(REPOSITORY_ROOT))
