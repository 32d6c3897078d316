"""Test-wide options.

``pytest --impl PATH`` tests the ``dlvc`` package found in ``PATH/dlvc`` (a
student's checkout, or a folder of generated stubs) instead of this repository's
reference build. Subprocesses started by the tests see the same package through
``PYTHONPATH``.
"""

import os
import sys
from pathlib import Path

import pytest

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]


def pytest_addoption(parser):
    parser.addoption(
        "--impl",
        metavar="PATH",
        default=None,
        help="folder holding the dlvc package to test (default: this repository's reference build)",
    )


def pytest_configure(config):
    impl = config.getoption("--impl")
    root = Path(impl).resolve() if impl else REPOSITORY_ROOT
    if not (root / "dlvc" / "__init__.py").is_file():
        raise pytest.UsageError(f"--impl {impl}: expected a folder holding dlvc/__init__.py, found none in {root}")
    if "dlvc" in sys.modules:
        raise pytest.UsageError("dlvc was imported before the tests chose an implementation; run pytest directly")
    sys.path.insert(0, str(root))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))
    import dlvc

    if Path(dlvc.__file__).resolve().parent != root / "dlvc":
        raise pytest.UsageError(f"imported dlvc from {dlvc.__file__}, expected it from {root / 'dlvc'}")


def pytest_report_header(config):
    import dlvc
    from dlvc._reference import solutions_folder

    package = Path(dlvc.__file__).resolve().parent
    overlay = solutions_folder(package) and os.environ.get("DLVC_REFERENCE", "1") != "0"
    kind = "reference build (solutions/ laid over the stubs)" if overlay else "the package as it stands"
    return f"dlvc under test: {package}, {kind}"
