"""Which isolation grades the student's code here: the choice, and why a stronger one cannot run.

The grader's process decides once per run and records the mode in every result.
This module imports only the standard library (no torch), so that choosing costs
the trusted process nothing. The modes, strongest first:

- ``bwrap``: bubblewrap's namespaces; the worker sees only its submission, the
  system and Python (see :func:`dlvc.course.sandbox.bwrap_command`);
- ``process``: plain worker processes with the limits of :mod:`dlvc.course.confine`
  only, and a loud warning;
- ``in-process``: the benchmark's baseline, for the reference build only.

``auto`` (the default, or ``$DLVC_SANDBOX``) picks the strongest that works.
"""

import os
import shutil
import subprocess

ISOLATIONS = ("auto", "bwrap", "process", "in-process")
SANDBOX_ENV = "DLVC_SANDBOX"
"""Environment variable choosing the isolation: auto (default), bwrap (required), process."""
SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")
"""The system folders a worker may read in every mode."""


class SandboxError(RuntimeError):
    """The grader could not start or reach its sandbox: a problem of the grading machine, not of the student."""


def choose_isolation(requested: str | None = None) -> tuple[str, str | None]:
    """The isolation to use and a warning to print (or None).

    ``requested`` (or ``$DLVC_SANDBOX``): ``auto`` takes bubblewrap where it works and
    plain processes otherwise; ``bwrap`` insists on bubblewrap; ``process`` never uses it.
    """
    requested = requested or os.environ.get(SANDBOX_ENV) or "auto"
    if requested not in ISOLATIONS:
        raise ValueError(f"isolation: expected one of {', '.join(ISOLATIONS)}, got {requested!r}")
    if requested in ("process", "in-process"):
        return requested, None if requested == "in-process" else _process_warning("plain processes were asked for")
    problem = bwrap_problem()
    if problem is None:
        return "bwrap", None
    if requested == "bwrap":
        raise SandboxError(f"bubblewrap was required ({SANDBOX_ENV}=bwrap or --isolation bwrap) but {problem}")
    return "process", _process_warning(problem)


def _process_warning(why: str) -> str:
    return (
        f"warning: student code runs in plain worker processes ({why}): time, memory, process and output limits "
        "hold, but it can read what your user can read and write where your user can write. "
        "Install bubblewrap for the sandbox: sudo apt-get install bubblewrap"
    )


_BWRAP_PROBLEM: list[str | None] = []


def bwrap_problem() -> str | None:
    """Why bubblewrap cannot be used here, or None when a test sandbox started fine (cached)."""
    if not _BWRAP_PROBLEM:
        _BWRAP_PROBLEM.append(_probe_bwrap())
    return _BWRAP_PROBLEM[0]


def _probe_bwrap() -> str | None:
    executable = shutil.which("bwrap")
    if executable is None:
        return "bubblewrap (bwrap) is not installed"
    command = [executable, *namespace_flags(), *system_binds(), "--proc", "/proc", "--dev", "/dev", "true"]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"bwrap could not be started ({error})"
    if result.returncode != 0:
        return f"bwrap cannot create its namespaces here ({result.stderr.strip() or result.returncode})"
    return None


def namespace_flags() -> list[str]:
    """bubblewrap's flags for a worker's namespaces: every one of them new, no capabilities for root."""
    flags = ["--unshare-all", "--unshare-user", "--die-with-parent", "--new-session"]
    if os.geteuid() == 0:
        flags += ["--cap-drop", "ALL"]
    return flags


def system_binds() -> list[str]:
    """bubblewrap's flags that show the system folders read-only (links as links)."""
    binds = []
    for path in SYSTEM_PATHS:
        if os.path.islink(path):
            binds += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            binds += ["--ro-bind", path, path]
    return binds
