"""Run a student's package in a sandbox and talk to it with plain data: the grader's side.

A graded test never imports the student's code. It opens a :class:`Session` on the
submission's :class:`Sandbox` and asks for calls::

    with sandbox.session("metric counts pairs", seconds=10) as worker:
        metric = worker.new("dlvc.metrics:SegMetrics", ["a", "b", "c"])
        metric.call("update", prediction, target)
        matrix = metric.get("confusion_matrix")      # a tensor, copied out of the worker

Each session is a fresh worker process forked by the submission's fork server
(:mod:`dlvc.course.sandboxed.worker`). In the ``bwrap`` isolation the server lives inside a
bubblewrap sandbox: its own user, mount, PID and network namespaces, the system and
Python read-only, the student's package read-only at ``/submission``, a small
scratch tmpfs, nothing of the grader's repository, its outputs or other
submissions. In the ``landlock`` isolation (no namespaces: Gradescope, Docker) the
server is a plain process and each worker confines itself with Landlock to the same
view, the paths being the machine's own, after becoming an unprivileged user where
the grader is root. In the ``process`` isolation workers have the limits and the
seccomp filter only, and the grader says so (:mod:`dlvc.course.grader.isolation`). Values come back through :mod:`dlvc.course.sandboxed.wire`: tensors, numbers,
strings, lists and dicts; any other object stays in the worker as a
:class:`Remote` handle.

What goes wrong in the student's code arrives as an exception of this module:
:class:`StudentError` (their code raised) or :class:`WorkerEnded` (the worker
timed out, ran out of memory, crashed, exited or printed too much). Both carry a
message written for the student.
"""

import os
import selectors
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from ..sandboxed import wire
from .isolation import ISOLATIONS, SYSTEM_PATHS, SandboxError, find_worker_user, namespace_flags, python_roots, system_binds, unreachable
from ..sandboxed.worker import CONFINEMENT_SECONDS, Interpreter

SANDBOXED = Path(__file__).resolve().parents[1] / "sandboxed"
"""The sandboxed side of the grader: the fork server and what it imports (the standard library and torch only)."""
STARTUP_SECONDS = 300.0
"""How long the fork server may take to import torch and the kit's libraries."""
GRACE_SECONDS = 10.0
"""How long past a session's limit the grader waits for the server before it gives up on it."""

_MEMORY_ERRORS = ("builtins.MemoryError",)
_ALLOCATION_FAILURE = "can't allocate memory"


@dataclass(frozen=True)
class Limits:
    """What one worker (one graded test) may use."""

    seconds: float = 60.0
    memory_bytes: int = 2 * 2**30
    output_bytes: int = 8 * 2**20
    reply_bytes: int = 256 * 2**20
    file_bytes: int = 256 * 2**20
    scratch_bytes: int = 512 * 2**20


class WorkerError(Exception):
    """The student's code did not answer a call normally; ``str()`` is the message for the student."""


class StudentError(WorkerError):
    """The student's code raised an exception during a call.

    Attributes:
        call: the call, as the student would write it (with the inputs' dtypes and shapes).
        type_name: the exception's class name; ``mro`` its classes' qualified names.
        message: the exception's message; ``traceback`` the frames in the student's files.
    """

    def __init__(self, call: str, error: dict):
        self.call = call
        self.type_name = str(error.get("type", "Exception"))
        self.mro = [str(name) for name in error.get("mro", [])]
        self.message = str(error.get("message", ""))
        self.traceback = str(error.get("traceback", ""))
        text = f"{call} raised {self.type_name}: {self.message}"
        if self.traceback:
            text += f"\n{self.traceback}"
        super().__init__(text)

    def is_a(self, name: str) -> bool:
        """Whether the exception is a ``name`` (a builtin such as ``"ValueError"``) or a subclass of it."""
        return f"builtins.{name}" in self.mro

    @property
    def out_of_memory(self) -> bool:
        return any(name in self.mro for name in _MEMORY_ERRORS) or _ALLOCATION_FAILURE in self.message


class WorkerEnded(WorkerError):
    """The worker ended before answering: ``reason`` is timeout, signal, exit, output, reply or sandbox."""

    def __init__(self, call: str, reason: str, message: str, output: str = ""):
        self.call = call
        self.reason = reason
        self.output = output
        text = f"{call}: your code {message}" if call else f"your code {message}"
        if output.strip():
            text += "\nthe last lines it printed:\n" + "\n".join(output.strip().splitlines()[-15:])
        super().__init__(text)


def bwrap_command(package_root: Path, scratch_bytes: int, hidden: tuple[Path, ...] = ()) -> list[str]:
    """The command that starts the fork server in a bubblewrap sandbox.

    Args:
        package_root: the folder holding the student's ``dlvc/``, seen read-only at /submission.
        scratch_bytes: size of the sandbox's /tmp.
        hidden: folders that must stay out of sight even where they lie inside a
            folder the sandbox binds (the repository, the output folder, the staging area).
    """
    roots = [Path(root) for root in python_roots()]
    check_hidden(hidden, roots)
    command = [shutil.which("bwrap") or "bwrap", *namespace_flags(), "--as-pid-1", *system_binds()]
    # The scratch tmpfs comes before the binds below, so that a Python installed under /tmp stays visible.
    command += ["--size", str(scratch_bytes), "--tmpfs", "/tmp"]
    bound = [Path(path) for path in SYSTEM_PATHS if os.path.isdir(path) and not os.path.islink(path)]
    for folder in hidden:
        if any(_inside(folder.resolve(), root) for root in bound):
            command += ["--tmpfs", str(folder.resolve())]
    for root in roots:
        if not any(_inside(root, other) for other in bound):
            command += ["--ro-bind", str(root), str(root)]
    command += ["--ro-bind", str(SANDBOXED), "/grader"]
    command += ["--ro-bind", str(Path(package_root).resolve()), "/submission", "--proc", "/proc", "--dev", "/dev"]
    # The sandbox's root is a tmpfs holding the folders made for the binds above: read-only, so /tmp is the only place to write.
    command += ["--remount-ro", "/", "--chdir", "/tmp", "--clearenv"]
    for name, value in _worker_environment("/tmp").items():
        command += ["--setenv", name, value]
    python = str(Path(sys.prefix).absolute() / "bin" / "python") if sys.prefix != sys.base_prefix else sys.executable
    return command + [python, "-I", "-B", "/grader/worker.py", "--package", "/submission", "--scratch", "/tmp"]


def check_hidden(hidden: tuple[Path, ...], readable: list[Path]) -> None:
    """SandboxError where a folder to hide lies inside a folder every worker must read (Python, the system)."""
    for folder in hidden:
        for root in readable:
            if _inside(folder.resolve(), root):
                raise SandboxError(f"{folder} lies inside {root}, which the sandbox must show (the system or the Python installation); move it")


def process_command(package_root: Path, scratch: Path) -> list[str]:
    """The command that starts the fork server as a plain process (``process`` and ``landlock`` isolation)."""
    worker = SANDBOXED / "worker.py"
    return [sys.executable, "-I", "-B", str(worker), "--package", str(Path(package_root).resolve()), "--scratch", str(scratch)]


def _worker_environment(scratch: str) -> dict[str, str]:
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": scratch,
        "TMPDIR": scratch,
        "LANG": "C.UTF-8",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MPLBACKEND": "Agg",
        "MPLCONFIGDIR": f"{scratch}/.config/matplotlib",
        "XDG_CACHE_HOME": f"{scratch}/.cache",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONHASHSEED": "0",
    }


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


class Sandbox:
    """The fork server of one submission; opens one :class:`Session` (one worker) at a time.

    Args:
        package_root: the folder holding the student's ``dlvc/`` (and nothing else of theirs).
        isolation: ``bwrap``, ``process`` or ``in-process`` (the last only for the
            reference build that this process imported itself: the benchmark's baseline).
        limits: the default limits of a session.
        hidden: folders the sandbox must not show (see :func:`bwrap_command`).
        scratch: where plain worker processes keep their scratch folders (a temporary
            folder by default); inside bubblewrap the scratch is a tmpfs.
        worker_user: whom ``landlock`` workers become where the grader is root
            (:func:`~dlvc.course.grader.isolation.find_worker_user`; None: the default).
    """

    def __init__(
        self,
        package_root: str | os.PathLike,
        isolation: str = "bwrap",
        limits: Limits = Limits(),
        hidden: tuple[Path, ...] = (),
        scratch: str | os.PathLike | None = None,
        worker_user: str | None = None,
    ):
        if isolation not in ISOLATIONS[1:]:
            raise ValueError(f"isolation: expected one of {', '.join(ISOLATIONS[1:])}, got {isolation!r}")
        self.package_root = Path(package_root).resolve()
        if not (self.package_root / "dlvc" / "__init__.py").is_file():
            raise ValueError(f"package_root: expected a folder holding dlvc/__init__.py, got {self.package_root}")
        self.isolation = isolation
        self.limits = limits
        self.hidden = tuple(Path(folder) for folder in hidden)
        self.worker_user = find_worker_user(worker_user) if isolation == "landlock" else None
        self._scratch_parent = Path(scratch) if scratch is not None else None
        self._scratch: tempfile.TemporaryDirectory | None = None
        self._server: subprocess.Popen | None = None
        self._events: _EventReader | None = None

    def session(self, key: str, seconds: float | None = None) -> "Session":
        """A fresh worker for one graded test; use it as a context manager. ``key`` names it in timings."""
        limits = self.limits if seconds is None else replace(self.limits, seconds=float(seconds))
        return Session(self, key, limits)

    def close(self) -> None:
        """Stop the fork server and remove the scratch folder."""
        if self._server is not None:
            if self._server.poll() is None:
                self._server.kill()
            self._server.wait()
            self._server.stdin.close()
            self._server.stdout.close()
            self._server = None
        if self._scratch is not None:
            self._scratch.cleanup()
            self._scratch = None

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # ----- the fork server ------------------------------------------------------

    def _ensure_server(self) -> None:
        if self._server is not None and self._server.poll() is None:
            return
        self.close()
        if self._scratch_parent is not None:
            self._scratch_parent.mkdir(parents=True, exist_ok=True)
        self._scratch = tempfile.TemporaryDirectory(prefix="dlvc-worker-", dir=self._scratch_parent)
        scratch = Path(self._scratch.name)
        if self.isolation == "bwrap":
            command = bwrap_command(self.package_root, self.limits.scratch_bytes, self.hidden)
            environment = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        else:
            command = process_command(self.package_root, scratch)
            environment = _worker_environment(str(scratch))
        if self.isolation == "landlock":
            command += self._landlock_flags(scratch)
        self._server = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=environment, cwd=scratch, start_new_session=True
        )
        self._events = _EventReader(self._server.stdout)
        event = self._events.next(time.monotonic() + STARTUP_SECONDS)
        if event is None or event[0].get("event") != "ready":
            self.close()
            raise SandboxError(f"the grader's fork server did not start ({' '.join(command[:3])} ...): got {event!r}")

    def _landlock_flags(self, scratch: Path) -> list[str]:
        """The fork server's flags for Landlock, once the worker user is known to reach the submission and the scratch."""
        check_hidden(self.hidden, [Path(path) for path in (*SYSTEM_PATHS, *python_roots()) if os.path.isdir(path)])
        if self.worker_user is None:
            return ["--landlock"]
        scratch.chmod(0o711)  # the worker user passes through to the session folder the server gives it
        problem = unreachable(self.worker_user, readable=[self.package_root, self.package_root / "dlvc"], passable=[scratch])
        if problem is not None:
            self.close()
            raise SandboxError(problem)
        return ["--landlock", "--user", f"{self.worker_user.uid}:{self.worker_user.gid}"]

    def _command(self, header: dict, body: bytes = b"") -> None:
        try:
            self._server.stdin.write(wire.pack_raw(header, body))
            self._server.stdin.flush()
        except (BrokenPipeError, OSError):
            pass

    def _next_event(self, deadline: float):
        return self._events.next(deadline)

    def _abandon_server(self) -> None:
        """The server stopped answering: kill it; the next session starts a new one."""
        self.close()


class _EventReader:
    """Reads the server's frames from a pipe with a deadline."""

    def __init__(self, stream):
        self.descriptor = stream.fileno()
        os.set_blocking(self.descriptor, False)
        self.buffer = bytearray()
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.descriptor, selectors.EVENT_READ)

    def next(self, deadline: float) -> tuple[dict, bytes] | None:
        """The next frame as (header, raw body), or None when the deadline passed or the server ended."""
        while True:
            frame = self._take_frame()
            if frame is not None:
                return wire.split_frame(frame)
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self.selector.select(timeout=remaining):
                return None
            try:
                chunk = os.read(self.descriptor, 1 << 20)
            except BlockingIOError:
                continue
            if not chunk:
                return None
            self.buffer += chunk

    def _take_frame(self) -> bytes | None:
        if len(self.buffer) < 4:
            return None
        head_length = int.from_bytes(self.buffer[:4], "big")
        if len(self.buffer) < 12 + head_length:
            return None
        size = 12 + head_length + int.from_bytes(self.buffer[4 + head_length : 12 + head_length], "big")
        if len(self.buffer) < size:
            return None
        frame = bytes(self.buffer[:size])
        del self.buffer[:size]
        return frame


class Session:
    """One worker process: the calls of one graded test. Open it with ``with``."""

    def __init__(self, sandbox: Sandbox, key: str, limits: Limits):
        self.sandbox = sandbox
        self.key = key
        self.limits = limits
        self.seconds: float | None = None
        self._started: float | None = None
        self._ended: WorkerEnded | None = None
        self._local: Interpreter | None = None
        self._scratch: tempfile.TemporaryDirectory | None = None

    def __enter__(self) -> "Session":
        if self.sandbox.isolation == "in-process":
            self._started = time.monotonic()
            self._scratch = tempfile.TemporaryDirectory(prefix="dlvc-in-process-")
            self._local = Interpreter(self.sandbox.package_root, self._scratch.name)
            return self
        self.sandbox._ensure_server()
        self._started = time.monotonic()
        limits = {key: value for key, value in asdict(self.limits).items() if key != "scratch_bytes"}
        self.sandbox._command({"cmd": "start", "limits": limits})
        event = self.sandbox._next_event(time.monotonic() + GRACE_SECONDS + CONFINEMENT_SECONDS)
        if event is None or event[0].get("event") != "started":
            self.sandbox._abandon_server()
            reason = event[0].get("message") if event is not None and event[0].get("event") == "error" else f"got {event!r}"
            raise SandboxError(f"the grader's fork server did not start a worker: {reason}")
        return self

    def __exit__(self, *exc_info) -> None:
        self.seconds = time.monotonic() - self._started
        if self._local is not None:
            self._local = None
            self._scratch.cleanup()
            return
        if self._ended is None:
            self.sandbox._command({"cmd": "stop"})
            event = self.sandbox._next_event(time.monotonic() + GRACE_SECONDS)
            if event is None or event[0].get("event") != "stopped":
                self.sandbox._abandon_server()

    # ----- what graded tests call ---------------------------------------------------

    def new(self, target: str, *args, **kwargs) -> "Remote":
        """Build ``target`` (``"module:Class"``) with the arguments; the object stays in the worker."""
        instance = self.imported(target).call_and_keep(None, *args, **kwargs)
        instance.instance = True
        return instance

    def call(self, target: str, *args, **kwargs):
        """Call the function ``target`` (``"module:function"``); its result as data, or a Remote."""
        return self.imported(target).call(None, *args, **kwargs)

    def imported(self, target: str) -> "Remote":
        """``target`` (``"module:attr"``, or ``"$probe:Name"`` for the grader's probes) as a Remote."""
        label = target.rpartition(":")[2] or target
        remote = self._request({"op": "import", "target": target}, (), f"import of {target.replace(':', '.')}")
        remote.label = label
        return remote

    def scratch(self, name: str) -> "Scratch":
        """A path inside the worker's scratch folder, to pass as an argument (say, a run folder)."""
        return Scratch(name)

    # ----- the exchange -------------------------------------------------------------------

    def _request(self, header: dict, tensors, call: str):
        if self._ended is not None:
            raise WorkerEnded(call, self._ended.reason, f"could not be called: the worker had already ended ({self._ended.reason})")
        if self._local is not None:
            reply, reply_tensors = self._local.handle(header, tensors)
        else:
            reply, reply_tensors = self._exchange(header, tensors, call)
        if "error" in reply:
            error = reply["error"] if isinstance(reply["error"], dict) else {}
            student_error = StudentError(call, error)
            if student_error.out_of_memory:
                raise WorkerEnded(call, "memory", f"exceeded the memory limit of {self.limits.memory_bytes / 2**30:g} GiB")
            raise student_error
        if "ok" not in reply:
            raise WorkerEnded(call, "reply", "sent back a reply the grader cannot read")
        try:
            return wire.decode(reply["ok"], reply_tensors, handle=lambda tag: Remote(self, tag, _short_type(tag)))
        except wire.WireError as error:
            raise WorkerEnded(call, "reply", f"sent back a value the grader cannot read ({error})") from None

    def _exchange(self, header: dict, tensors, call: str):
        self.sandbox._command({"cmd": "call"}, wire.pack_frame(header, list(tensors)))
        deadline = self._started + self.limits.seconds + GRACE_SECONDS
        event = self.sandbox._next_event(deadline)
        if event is None:
            self.sandbox._abandon_server()
            self._ended = WorkerEnded(call, "sandbox", "got no answer from the sandbox (it stopped responding)")
            raise self._ended
        event_header, body = event
        if event_header.get("event") == "reply":
            try:
                return wire.unpack_frame(body)
            except wire.WireError as error:
                raise WorkerEnded(call, "reply", f"sent back {error}") from None
        if event_header.get("event") == "ended":
            self._ended = WorkerEnded(
                call, str(event_header.get("reason")), str(event_header.get("message")), str(event_header.get("output", ""))
            )
            raise self._ended
        self.sandbox._abandon_server()
        raise SandboxError(f"the grader's fork server sent an unexpected event: {event_header!r}")


class Remote:
    """An object that lives in the worker; what graded tests call methods on."""

    def __init__(self, session: Session, tag: dict, label: str):
        self._session = session
        self._tag = {"$handle": tag["$handle"]}
        self.type_name = str(tag.get("type", "object"))
        self.label = label
        self.instance = False
        """Whether this is an object built by Session.new: calling it reads as ``label.__call__(...)``."""

    def call(self, method: str | None, *args, **kwargs):
        """Call ``method`` (None: the object itself); the result as data, or a Remote."""
        return self._call(method, args, kwargs, want="auto")

    def call_and_keep(self, method: str | None, *args, **kwargs) -> "Remote":
        """Like :meth:`call`, but the result stays in the worker as a Remote."""
        return self._call(method, args, kwargs, want="handle")

    def get(self, name: str):
        """The attribute ``name``: data, or a Remote."""
        return self._session._request({"op": "get", "target": self._tag, "name": name}, (), f"{self.label}.{name}")

    def _call(self, method, args, kwargs, want):
        tensors: list[torch.Tensor] = []
        header = {
            "op": "call",
            "target": self._tag,
            "method": method,
            "args": wire.encode(list(args), tensors, handle=_tag_of),
            "kwargs": wire.encode(dict(kwargs), tensors, handle=_tag_of),
            "want": want,
        }
        name = f"{self.label}.{method or '__call__'}" if method is not None or self.instance else self.label
        result = self._session._request(header, tensors, describe_call(name, args, kwargs))
        if isinstance(result, Remote) and method is None and want == "handle":
            result.label = self.label
        return result

    def __repr__(self) -> str:
        return f"<{self.type_name} in the worker>"


@dataclass(frozen=True)
class Scratch:
    """A path inside the worker's scratch folder; the worker receives it as a string."""

    name: str


def _tag_of(value) -> dict:
    if isinstance(value, Remote):
        return value._tag
    if isinstance(value, Scratch):
        return {"$scratch": value.name}
    raise wire.WireError(f"cannot send a {type(value).__qualname__} to the worker")


def _short_type(tag: dict) -> str:
    return str(tag.get("type", "object")).rpartition(".")[2]


def describe_call(name: str, args=(), kwargs=None) -> str:
    """``SegMetrics.update(int64 (2, 8, 8), int64 (2, 8, 8))``: a call with its inputs' kinds and shapes."""
    parts = [describe_value(value) for value in args]
    parts += [f"{key}={describe_value(value)}" for key, value in (kwargs or {}).items()]
    return f"{name}({', '.join(parts)})"


def describe_value(value) -> str:
    """A short description of an argument: dtype and shape for tensors, the value for small scalars."""
    if isinstance(value, torch.Tensor):
        kind = type(value).__name__
        prefix = f"{kind} " if kind in wire.TV_TENSOR_KINDS else ""
        return f"{prefix}{str(value.dtype).removeprefix('torch.')} {tuple(value.shape)}"
    if isinstance(value, Remote):
        return value.label if value.label else value.type_name
    if isinstance(value, Scratch):
        return f"<a folder {value.name!r}>"
    if isinstance(value, (list, tuple)):
        if len(value) <= 4 and all(isinstance(item, (int, float, str, type(None))) for item in value):
            return repr(value)
        return f"<{type(value).__name__} of {len(value)}>"
    if isinstance(value, str):
        return repr(value) if len(value) <= 40 else repr(value[:37] + "...")
    if isinstance(value, (int, float, bool, type(None))):
        return repr(value)
    return type(value).__qualname__
