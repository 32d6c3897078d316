"""The calibration of a graded suite's time limits, and the fingerprint that says where it still holds.

``dlvc grade`` grades the reference build before the submissions: the seconds each
graded test's workers took become the tests' time limits (``--time-factor`` times as
long, at least ``--time-floor`` seconds). A calibration file keeps those seconds with
a fingerprint of what they depend on::

    {"fingerprint": {"suite": "<sha256>", "reference": "<sha256>", "python": "3.11.9",
                     "torch": "2.14.1", "torchvision": "0.29.1", "cpus": 2, "cpu_model": "AMD EPYC"},
     "seconds": {"tests/hidden/assignment1/test_metric.py::test_...": 0.41, ...}}

- suite: the graded suite's files (its mutants aside), the suite's shared modules
  and ``tests/conftest.py``;
- reference: ``dlvc/`` and ``solutions/`` (the reference build and the grader), the
  assignment's manifest and its solution notebooks;
- the Python, torch and torchvision versions, and the machine: its CPU count and model.

A run reuses a calibration only where every entry is the same here
(``dlvc grade --calibration FILE``; the Gradescope autograder makes one when its
image is built), and grades the reference again otherwise, naming what changed.
This module uses the standard library only: the grader's process never imports torch.
"""

import hashlib
import json
import os
import platform
from importlib import metadata
from pathlib import Path

from ..student.manifest import Manifest

SKIPPED_FOLDERS = {"__pycache__", "mutants"}
"""Folders whose files change no calibration: bytecode caches, and the mutant corpora (never graded)."""
LIBRARIES = ("torch", "torchvision")


def fingerprint(root: Path, suite: Path, manifest: Manifest) -> dict:
    """What a calibration of ``suite`` on the reference build in ``root`` depends on, here."""
    shared = [path for path in (root / "tests" / "hidden").glob("*.py")] + [root / "tests" / "conftest.py"]
    reference = [root / "dlvc", root / "solutions", manifest.path, *(root / notebook for notebook in manifest.notebooks)]
    return {
        "suite": _digest(root, [suite, *shared]),
        "reference": _digest(root, reference),
        "python": platform.python_version(),
        **{library: _version(library) for library in LIBRARIES},
        "cpus": os.cpu_count(),
        "cpu_model": cpu_model(),
    }


def _digest(root: Path, paths: list[Path]) -> str:
    """SHA-256 of the files under ``paths`` (folders walked in sorted order), each with its path relative to ``root``."""
    digest = hashlib.sha256()
    files = []
    for path in paths:
        if path.is_dir():
            files += [file for file in path.rglob("*") if file.is_file() and not SKIPPED_FOLDERS & set(file.relative_to(path).parts[:-1])]
        elif path.is_file():
            files.append(path)
    for file in sorted(set(files)):
        if file.suffix == ".pyc":
            continue
        digest.update(str(file.relative_to(root)).encode() + b"\0")
        digest.update(hashlib.sha256(file.read_bytes()).digest())
    return digest.hexdigest()


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def cpu_model() -> str:
    """The CPU's model name as the kernel reports it (``/proc/cpuinfo``), or what the platform module knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model", "cpu model") and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load(path: Path, expected: dict) -> tuple[dict[str, float] | None, str | None]:
    """The seconds per test of the calibration at ``path`` where its fingerprint is ``expected``: (seconds, None).

    Otherwise (None, why not): no such file, not a calibration, or made for another
    suite, reference, Python, torch or machine (the entries that differ are named).
    """
    try:
        record = json.loads(Path(path).read_text())
    except FileNotFoundError:
        return None, "there is no calibration yet"
    except (OSError, UnicodeDecodeError, ValueError) as error:
        return None, f"it cannot be read ({error})"
    if not isinstance(record, dict) or not isinstance(record.get("fingerprint"), dict) or not isinstance(record.get("seconds"), dict):
        return None, "it is not a calibration of this grader"
    changed = [key for key in expected if record["fingerprint"].get(key) != expected[key]]
    if changed:
        return None, "it was made for another " + ", ".join(changed)
    return {str(key): float(value) for key, value in record["seconds"].items()}, None


def save(path: Path, expected: dict, seconds: dict[str, float]) -> None:
    """Write the calibration (atomically: a temporary file beside ``path``, then a rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.partial")
    temporary.write_text(json.dumps({"fingerprint": expected, "seconds": seconds}, indent=2) + "\n")
    os.replace(temporary, path)


def seconds_per_test(path: Path) -> dict[str, float]:
    """The seconds per test of a calibration file, whatever its fingerprint; a plain ``{test: seconds}`` file is taken as it is."""
    record = json.loads(Path(path).read_text())
    return record["seconds"] if isinstance(record.get("seconds"), dict) else record
