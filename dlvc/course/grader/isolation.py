"""Which isolation grades the student's code here: the choice, and why a stronger one cannot run.

The grader's process decides once per run and records the mode in every result.
This module imports only the standard library (no torch), so that choosing costs
the trusted process nothing. The modes, strongest first:

- ``bwrap``: bubblewrap's namespaces; the worker sees only its submission, the
  system and Python (see :func:`dlvc.course.grader.sandbox.bwrap_command`);
- ``landlock``: no namespaces (Gradescope's and Docker's containers refuse them);
  the kernel's Landlock lets the worker open only the system, Python, its
  submission and its scratch folder, and where the grader runs as root the worker
  becomes an unprivileged user first (:mod:`dlvc.course.sandboxed.confine`);
- ``process``: plain worker processes with the limits and the seccomp filter of
  :mod:`dlvc.course.sandboxed.confine` only, and a loud warning;
- ``in-process``: the benchmark's baseline, for the reference build only.

``auto`` (the default, or ``$DLVC_SANDBOX``) picks the strongest that works. In
every mode but ``in-process`` the seccomp filter refuses new processes, signals to
other processes and sockets other than ``AF_UNIX``.
"""

import os
import pwd
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ..sandboxed.confine import SYSTEM_PATHS, become_user, landlock_abi, seccomp_supported

ISOLATIONS = ("auto", "bwrap", "landlock", "process", "in-process")
SANDBOX_ENV = "DLVC_SANDBOX"
"""Environment variable choosing the isolation: auto (default), or a mode to insist on."""
WORKER_USERS = ("dlvc-worker", "nobody")
"""Whom workers run as where the grader is root, unless told: the user the Gradescope setup.sh creates, else nobody."""


def add_isolation_arguments(parser) -> None:
    """The command-line options that choose the isolation (``dlvc grade``, ``dlvc leaderboard``)."""
    parser.add_argument(
        "--isolation", choices=ISOLATIONS[:-1], default=None,
        help="auto: bubblewrap, else Landlock, else plain processes with a warning (default); or insist on one mode",
    )
    parser.add_argument(
        "--worker-user", default=None, metavar="NAME",
        help=f"where the grader runs as root, the unprivileged user its Landlock workers become (default: {' or '.join(WORKER_USERS)})",
    )


class SandboxError(RuntimeError):
    """The grader could not start or reach its sandbox: a problem of the grading machine, not of the student."""


def choose_isolation(requested: str | None = None, worker_user: str | None = None) -> tuple[str, str | None]:
    """The isolation to use and a warning to print (or None).

    ``requested`` (or ``$DLVC_SANDBOX``): ``auto`` takes bubblewrap where it works,
    else Landlock where it works, else plain processes; ``bwrap`` and ``landlock``
    insist on their mode (a :class:`SandboxError` says why it cannot run);
    ``process`` uses plain processes. ``worker_user``: see :func:`find_worker_user`.
    """
    requested = requested or os.environ.get(SANDBOX_ENV) or "auto"
    if requested not in ISOLATIONS:
        raise ValueError(f"isolation: expected one of {', '.join(ISOLATIONS)}, got {requested!r}")
    if worker_user is not None:
        find_worker_user(worker_user)  # a user named wrongly is an error, not a reason to fall back
    if requested in ("process", "in-process"):
        return requested, None if requested == "in-process" else _process_warning("plain processes were asked for")
    problems = {}
    for mode, probe in (("bwrap", bwrap_problem), ("landlock", lambda: landlock_problem(worker_user))):
        if requested in ("auto", mode):
            problems[mode] = probe()
            if problems[mode] is None:
                return mode, None
    if requested != "auto":
        raise SandboxError(f"{requested} was required ({SANDBOX_ENV}={requested} or --isolation {requested}) but {problems[requested]}")
    return "process", _process_warning(f"{problems['bwrap']}; {problems['landlock']}")


def _process_warning(why: str) -> str:
    return (
        f"warning: student code runs in plain worker processes ({why}): time, memory, process, network and output "
        "limits hold, but it can read what your user can read and write where your user can write. "
        "Install bubblewrap for the sandbox (sudo apt-get install bubblewrap), or grade on Linux 5.13 or later with Landlock"
    )


@dataclass(frozen=True)
class WorkerUser:
    """The unprivileged user that workers become where the grader runs as root."""

    name: str
    uid: int
    gid: int


def find_worker_user(name: str | None = None) -> WorkerUser | None:
    """Whom workers run as: None where the grader is not root (they keep its user), else ``name`` or a default.

    Raises :class:`SandboxError` where the user named does not exist, where no default
    exists, or where a user is named but the grader is not root (it cannot change user).
    """
    if os.geteuid() != 0:
        if name is not None:
            raise SandboxError(f"--worker-user {name}: the grader runs as uid {os.geteuid()}, not as root, so its workers keep that user")
        return None
    for candidate in (name,) if name is not None else WORKER_USERS:
        try:
            entry = pwd.getpwnam(candidate)
        except KeyError:
            continue
        if entry.pw_uid == 0 or entry.pw_gid == 0:
            raise SandboxError(f"--worker-user {candidate}: expected an unprivileged user, but it has uid {entry.pw_uid} and gid {entry.pw_gid}")
        return WorkerUser(candidate, entry.pw_uid, entry.pw_gid)
    named = name if name is not None else " nor ".join(WORKER_USERS)
    raise SandboxError(f"there is no user {named} for the workers to run as: create one (useradd --system dlvc-worker) or pass --worker-user")


def unreachable(user: WorkerUser | None, readable=(), passable=()) -> str | None:
    """Why ``user`` cannot read one of ``readable`` or reach one of ``passable``, or None where it can.

    Asked of the kernel: a forked child becomes the user and tries (a folder to read
    is listed, a file opened; a path to reach is looked up).
    """
    if user is None:
        return None
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        answer = b""
        try:
            os.close(read_end)
            become_user(user.uid, user.gid)
            for path in [*readable, *passable]:
                try:
                    if path in passable:
                        os.stat(path)
                    elif os.path.isdir(path):
                        os.listdir(path)
                    else:
                        open(path, "rb").close()
                except OSError as error:
                    answer = f"the worker user {user.name} cannot reach {path} ({error.strerror}): let it pass through every folder above it".encode()
                    break
        except BaseException as error:  # noqa: BLE001 - whatever went wrong is the answer
            answer = f"could not become the worker user {user.name}: {error}".encode()
        finally:
            os.write(write_end, answer[:4000])
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as answer:
        text = answer.read().decode()
    os.waitpid(pid, 0)
    return text or None


def python_roots() -> list[str]:
    """The folders of the Python installation that runs the grader (and its workers): the worker must read them."""
    roots = {Path(sys.base_prefix).resolve(), Path(sys.prefix).absolute()}
    return sorted(str(root) for root in roots)


_LANDLOCK_PROBLEM: dict = {}


def landlock_problem(worker_user: str | None = None) -> str | None:
    """Why the Landlock mode cannot be used here, or None (cached per worker user)."""
    if worker_user not in _LANDLOCK_PROBLEM:
        _LANDLOCK_PROBLEM[worker_user] = _probe_landlock(worker_user)
    return _LANDLOCK_PROBLEM[worker_user]


def _probe_landlock(worker_user: str | None) -> str | None:
    if not seccomp_supported():
        return "the seccomp filter supports only 64-bit Linux on x86_64 and aarch64"
    if landlock_abi() < 1:
        return "the kernel has no Landlock (Linux 5.13 or later, with landlock among its security modules)"
    try:
        return unreachable(find_worker_user(worker_user), readable=python_roots())
    except SandboxError as error:
        return str(error)


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
