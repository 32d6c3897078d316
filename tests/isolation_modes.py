"""The isolation modes the kit's tests run the grader's workers in, and which of them must run here.

A test of a mode that cannot run on this machine is skipped, unless
``DLVC_REQUIRE_ISOLATION`` (space-separated modes; CI sets it) names that mode:
then it fails, so that CI never passes with a sandbox left untested.
"""

import os

import pytest

from dlvc.course.grader.isolation import bwrap_problem, landlock_problem

ISOLATIONS = ["process", "landlock", "bwrap"]
SANDBOXES = ["landlock", "bwrap"]
"""The modes that keep a worker away from the machine's files (plain processes do not)."""
REQUIRED = "DLVC_REQUIRE_ISOLATION"
PROBLEMS = {"process": lambda: None, "landlock": landlock_problem, "bwrap": bwrap_problem}


def require(isolation: str) -> None:
    """Skip (or, where the mode is required, fail) a test of a mode that cannot run here."""
    problem = PROBLEMS[isolation]()
    if problem is None:
        return
    if isolation in os.environ.get(REQUIRED, "").split():
        pytest.fail(f"{REQUIRED} names {isolation}, but {problem}")
    pytest.skip(f"{isolation} cannot run here: {problem}")

