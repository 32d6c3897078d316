"""The sandboxed side of grading: a fork server, and the worker it forks for each graded test.

The grader (:mod:`dlvc.course.grader.sandbox`) starts this file as a script inside the
sandbox, with the student's package folder and a scratch folder::

    python -I -B worker.py --package /submission --scratch /tmp [--landlock [--user UID:GID]]

The server imports torch and the other libraries the kit uses once, then waits
for commands on its standard input. For each graded test it forks a worker: the
worker confines itself (:mod:`confine`: no new processes, no signals to others,
no network, memory and file-size limits; with ``--landlock``, the unprivileged
user first and then a Landlock view of the system, Python, the package and its
own scratch folder), tells the server whether that worked (the server reports a
worker that could not confine itself as the grader's fault, and it runs nothing),
makes ``import dlvc`` find the student's package
(:class:`PackageFinder`: nothing else of the submission can shadow a module),
and then executes the calls the test sends, one at a time (:class:`Interpreter`). The server relays messages between grader and worker,
and ends the worker when its time is up, when it prints too much or sends too
much, or when the test is over. It never imports the student's code itself.

Server and grader speak in frames of :mod:`wire`. Commands: ``start`` (fork a
worker with limits), ``call`` (a frame for the worker), ``stop``. Events:
``ready``, ``started``, ``reply`` (the worker's frame as the body), ``ended``
(the worker ended on its own or was ended: the reason), ``stopped``.

The :class:`Interpreter` also runs inside the grader's own process for the
in-process baseline of ``benchmarks/bench_grading.py``. What a graded test may
build in the worker besides the student's objects are the probes (:mod:`probes`).
"""

import argparse
import importlib
import importlib.abc
import importlib.machinery
import os
import select
import selectors
import shutil
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

if __package__:
    from . import confine, wire
    from .probes import PROBE_PREFIX, PROBES
else:  # run as a script inside the sandbox, beside wire.py, confine.py and probes.py
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import confine
    import wire
    from probes import PROBE_PREFIX, PROBES

import torch

MESSAGE_LIMIT = 2000
"""Characters of an exception message that travel back."""
TRACEBACK_FRAMES = 8
"""Frames of the student's own files shown with an exception."""
PRELOADED = (
    "torch._dynamo",
    "numpy",
    "PIL.Image",
    "torchvision",
    "torchvision.transforms.v2",
    "tqdm.auto",
    "matplotlib",
    "torch.utils.tensorboard",
    "h5py",
)
"""Libraries the kit imports, imported once by the server so that each worker starts warm
(torch imports ``torch._dynamo`` when the first optimizer is built: 3 s)."""


class Interpreter:
    """Executes the calls of one graded test on live objects, and keeps the objects it made.

    A request is ``{"op": "import", "target": "module:attr"}``, ``{"op": "call",
    "target": handle, "method": name or None, "args": [...], "kwargs": {...}}`` or
    ``{"op": "get", "target": handle, "name": attribute}``; each may say ``"want":
    "handle"`` to keep the result here even when it is plain data. A reply is
    ``{"ok": value}`` or ``{"error": {"type", "mro", "message", "traceback"}}``.

    Args:
        package_root: the folder holding the student's ``dlvc/``; traceback frames
            from files below it are shown to the student.
        scratch: the folder that ``$scratch`` paths resolve into.
    """

    def __init__(self, package_root: str | os.PathLike, scratch: str | os.PathLike):
        self.package_root = str(Path(package_root).resolve())
        self.scratch = Path(scratch)
        self.objects: dict[int, object] = {}

    def handle(self, header: dict, tensors: list[torch.Tensor]) -> tuple[dict, list[torch.Tensor]]:
        """One request in, one reply out; the student's exceptions become error replies."""
        reply_tensors: list[torch.Tensor] = []
        try:
            result, want = self._execute(header, tensors)
            value = self._keep(result) if want == "handle" else wire.encode(result, reply_tensors, handle=self._keep)
            return {"ok": value}, reply_tensors
        except BaseException as error:  # noqa: BLE001 - whatever the student's code raised (sys.exit too) goes back as data
            return {"error": self._describe(error)}, []

    def _execute(self, header: dict, tensors: list[torch.Tensor]):
        op = header.get("op")
        want = header.get("want", "auto")
        if op == "import":
            return self._import(str(header["target"])), "handle"
        target = self._lookup(header.get("target"))
        if op == "get":
            return getattr(target, str(header["name"])), want
        if op == "call":
            args = wire.decode(header.get("args", []), tensors, handle=self._lookup, scratch=self._scratch_path)
            kwargs = wire.decode(header.get("kwargs", {"$dict": []}), tensors, handle=self._lookup, scratch=self._scratch_path)
            method = header.get("method")
            function = getattr(target, str(method)) if method is not None else target
            return function(*args, **kwargs), want
        raise wire.WireError(f"unknown operation {op!r}")

    def _import(self, target: str):
        if target.startswith(PROBE_PREFIX):
            return PROBES[target[len(PROBE_PREFIX) :]]
        module_name, _, attribute = target.partition(":")
        value = importlib.import_module(module_name)
        for name in filter(None, attribute.split(".")):
            value = getattr(value, name)
        return value

    def _keep(self, value) -> dict:
        handle = len(self.objects) + 1
        self.objects[handle] = value
        return {"$handle": handle, "type": f"{type(value).__module__}.{type(value).__qualname__}"}

    def _lookup(self, data):
        handle = data.get("$handle") if isinstance(data, dict) else None
        if handle not in self.objects:
            raise wire.WireError(f"no object {handle!r} in this worker")
        return self.objects[handle]

    def _scratch_path(self, name: str) -> str:
        path = (self.scratch / name).resolve()
        if self.scratch.resolve() not in path.parents and path != self.scratch.resolve():
            raise wire.WireError(f"scratch path {name!r} leaves the scratch folder")
        return str(path)

    def _describe(self, error: BaseException) -> dict:
        return {
            "type": type(error).__qualname__,
            "mro": [f"{cls.__module__}.{cls.__qualname__}" for cls in type(error).__mro__],
            "message": _safe_text(error)[:MESSAGE_LIMIT],
            "traceback": self._student_frames(error),
        }

    def _student_frames(self, error: BaseException) -> str:
        """The frames of the exception's traceback that lie in the student's files, as text."""
        lines = []
        try:
            frames = traceback.extract_tb(error.__traceback__)
            for frame in frames:
                if frame.filename.startswith(self.package_root + os.sep):
                    relative = os.path.relpath(frame.filename, self.package_root)
                    lines.append(f'  File "{relative}", line {frame.lineno}, in {frame.name}')
                    if frame.line:
                        lines.append(f"    {frame.line.strip()}")
            if isinstance(error, SyntaxError) and error.filename and error.filename.startswith(self.package_root):
                relative = os.path.relpath(error.filename, self.package_root)
                lines.append(f'  File "{relative}", line {error.lineno}')
                if error.text:
                    lines.append(f"    {error.text.strip()}")
        except Exception:  # noqa: BLE001 - a traceback that cannot be read is left out
            return ""
        return "\n".join(lines[-2 * TRACEBACK_FRAMES :])


def _safe_text(error: BaseException) -> str:
    try:
        return str(error)
    except Exception:  # noqa: BLE001 - a student's __str__ may raise
        return f"<{type(error).__qualname__} whose message cannot be shown>"


# ----- the fork server -------------------------------------------------------------


class Server:
    """Reads commands from ``commands`` (a binary stream), forks one worker at a time, relays its messages."""

    def __init__(self, package_root: Path, scratch: Path, commands, events, landlock: bool = False, user: tuple[int, int] | None = None):
        self.package_root = package_root
        self.scratch = scratch
        self.commands = commands
        self.events = events
        self.landlock = landlock
        self.user = user
        self.sessions = 0

    def serve(self) -> None:
        wire.write_frame(self.events, {"event": "ready", "pid": os.getpid(), "preloaded": _preload()})
        while True:
            frame = wire.read_frame(self.commands, limit=2**31)
            if frame is None:
                return
            header, _ = frame
            if header.get("cmd") != "start":
                wire.write_frame(self.events, {"event": "error", "message": f"expected 'start', got {header.get('cmd')!r}"})
                continue
            self._session(header)

    def _session(self, command: dict) -> None:
        self.sessions += 1
        scratch = self.scratch / f"session-{self.sessions}"
        scratch.mkdir(parents=True, exist_ok=True)
        if self.user is not None:
            os.chown(scratch, *self.user)
            scratch.chmod(0o700)
        limits = command["limits"]
        confinement = {"user": self.user, "landlock": self.landlock}
        child = _fork_worker(self.package_root, scratch, limits, confinement, close=(self.commands.fileno(), self.events.fileno()))
        try:
            problem = _confinement_problem(child)
            if problem is not None:
                wire.write_frame(self.events, {"event": "error", "message": problem})
                return
            wire.write_frame(self.events, {"event": "started", "pid": child.pid})
            _Relay(child, self.commands, self.events, limits).run()
        finally:
            child.kill()
            _empty(self.scratch, _mount_points())


CONFINED = {"confined": True}
"""The first frame of a worker that confined itself; anything else is why it could not."""
CONFINEMENT_SECONDS = 60.0


def _confinement_problem(child: "_Child") -> str | None:
    """None once the worker reported that it confined itself, else what went wrong."""
    deadline = time.monotonic() + CONFINEMENT_SECONDS
    received = bytearray()
    while time.monotonic() < deadline:
        size = _frame_size(received)
        if size is not None and len(received) >= size:
            header, _ = wire.split_frame(bytes(received[:size]))
            return None if header == CONFINED else f"the worker could not confine itself: {header.get('problem', header)}"
        ready, _, _ = select.select([child.replies], [], [], max(0.0, deadline - time.monotonic()))
        chunk = os.read(child.replies, 1 << 16) if ready else b""
        if ready and not chunk:
            return "the worker ended before it confined itself"
        received += chunk
    return f"the worker did not confine itself within {CONFINEMENT_SECONDS:g} s"


def _mount_points() -> set[Path]:
    """Where something is mounted (a bind of the sandbox may lie inside the scratch folder: a Python under /tmp)."""
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return set()
    return {Path(line.split()[4].replace("\\040", " ")) for line in lines if len(line.split()) > 4}


def _empty(folder: Path, keep: set[Path]) -> None:
    """Remove everything in ``folder`` but the mount points in ``keep``: what one worker wrote is gone for the next."""
    for entry in folder.iterdir():
        if entry in keep:
            continue
        if any(entry in mount.parents for mount in keep):
            _empty(entry, keep)
        elif entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


class _Child:
    """A forked worker: its pid and the server's ends of its three pipes."""

    def __init__(self, pid: int, requests: int, replies: int, output: int):
        self.pid, self.requests, self.replies, self.output = pid, requests, replies, output
        self.status: int | None = None

    def kill(self) -> None:
        if self.status is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.reap(block=True)
        for descriptor in (self.requests, self.replies, self.output):
            try:
                os.close(descriptor)
            except OSError:
                pass
        self.requests = self.replies = self.output = -1

    def reap(self, block: bool) -> int | None:
        if self.status is None:
            pid, status = os.waitpid(self.pid, 0 if block else os.WNOHANG)
            if pid == self.pid:
                self.status = status
        return self.status


def _fork_worker(package_root: Path, scratch: Path, limits: dict, confinement: dict, close: tuple[int, ...]) -> _Child:
    request_read, request_write = os.pipe()
    reply_read, reply_write = os.pipe()
    output_read, output_write = os.pipe()
    pid = os.fork()
    if pid:
        for descriptor in (request_read, reply_write, output_write):
            os.close(descriptor)
        return _Child(pid, request_write, reply_read, output_read)
    try:
        for descriptor in (*close, request_write, reply_read, output_read):
            os.close(descriptor)
        os.dup2(output_write, 1)
        os.dup2(output_write, 2)
        os.close(output_write)
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        _worker_main(package_root, scratch, limits, confinement, request_read, reply_write)
    finally:
        os._exit(70)


STANDARD_FINDERS = (importlib.machinery.BuiltinImporter, importlib.machinery.FrozenImporter, importlib.machinery.PathFinder)
"""The import finders a worker keeps: an editable install's finder (which maps ``dlvc`` to the instructors'
repository) and any other a library installed are dropped, so that only the student's package is ``dlvc``."""


def _worker_main(package_root: Path, scratch: Path, limits: dict, confinement: dict, requests: int, replies: int) -> None:
    """The forked worker: confine, make the package importable, answer requests until told to stop."""
    sys.stdout = open(1, "w", buffering=1, closefd=False)
    sys.stderr = open(2, "w", buffering=1, closefd=False)
    grader_folder = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [entry for entry in sys.path if entry != grader_folder and os.path.exists(entry)]
    sys.meta_path[:] = [finder for finder in sys.meta_path if finder in STANDARD_FINDERS]
    sys.meta_path.insert(0, PackageFinder(package_root))
    view = confine.FileView(readable=(*confine.SYSTEM_PATHS, *_python_folders(), str(package_root), "/proc"), writable=(str(scratch),))
    try:
        warnings = confine.confine(
            confine.Limits(memory_bytes=int(limits["memory_bytes"]), file_bytes=int(limits["file_bytes"])),
            user=confinement["user"],
            files=view if confinement["landlock"] else None,
        )
    except confine.ConfinementError as error:
        wire.write_frame(open(replies, "wb", buffering=0, closefd=False), {"problem": str(error)})
        os._exit(70)
    wire.write_frame(open(replies, "wb", buffering=0, closefd=False), CONFINED)
    for warning in warnings:
        print(f"grader: {warning}", file=sys.stderr)
    os.chdir(scratch)
    for name in ("HOME", "TMPDIR", "XDG_CACHE_HOME", "MPLCONFIGDIR"):
        os.environ[name] = str(scratch)
    tempfile.tempdir = None  # read TMPDIR again
    interpreter = Interpreter(package_root, scratch)
    with open(requests, "rb", buffering=0) as incoming, open(replies, "wb", buffering=0) as outgoing:
        while True:
            frame = wire.read_frame(incoming, limit=2**31)
            if frame is None:
                os._exit(0)
            reply, tensors = interpreter.handle(*frame)
            wire.write_frame(outgoing, reply, tensors)


def _python_folders() -> list[str]:
    """The Python installation: its prefixes and the folders it imports from (the standard library, site-packages)."""
    folders = {sys.base_prefix, sys.prefix, sys.base_exec_prefix, sys.exec_prefix}
    folders |= {entry for entry in sys.path if os.path.isdir(entry)}
    return sorted(folders)


class PackageFinder(importlib.abc.MetaPathFinder):
    """Finds the top-level packages ``dlvc`` and ``notebooks`` in the submission's folder, and nothing else there.

    ``notebooks`` holds the definitions the grader took from the submitted notebooks
    (:mod:`dlvc.course.student.notebook`). The folder is not put on ``sys.path``, so a
    ``torch.py``, ``json.py`` or ``sitecustomize.py`` beside the packages shadows
    nothing; their own modules are found through the packages' ``__path__`` as usual.
    """

    PACKAGES = ("dlvc", "notebooks")

    def __init__(self, package_root: Path):
        self.package_root = str(package_root)

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in self.PACKAGES:
            return None
        return importlib.machinery.PathFinder.find_spec(fullname, [self.package_root])


class _Relay:
    """Moves one worker's messages to the grader and back, and ends it when a limit is hit."""

    def __init__(self, child: _Child, commands, events, limits: dict):
        self.child = child
        self.commands = commands
        self.events = events
        self.deadline = time.monotonic() + float(limits["seconds"])
        self.seconds = float(limits["seconds"])
        self.output_limit = int(limits["output_bytes"])
        self.reply_limit = int(limits["reply_bytes"])
        self.output_seen = 0
        self.output_tail = bytearray()
        self.pending = bytearray()
        self.incoming = bytearray()
        self.selector = selectors.DefaultSelector()

    def run(self) -> None:
        for descriptor in (self.child.replies, self.child.output):
            os.set_blocking(descriptor, False)
        os.set_blocking(self.child.requests, False)
        self.selector.register(self.commands.fileno(), selectors.EVENT_READ, self._on_commands)
        self.selector.register(self.child.replies, selectors.EVENT_READ, self._on_replies)
        self.selector.register(self.child.output, selectors.EVENT_READ, self._on_output)
        try:
            self._loop()
        finally:
            self.selector.close()

    def _loop(self) -> None:
        while True:
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                return self._end("timeout", f"timed out after {self.seconds:g} s")
            for key, _ in self.selector.select(timeout=remaining):
                if key.data() == "done":  # each file's handler, registered in run()
                    return

    def _on_commands(self) -> str | None:
        frame = wire.read_frame_bytes(self.commands, limit=2**31)
        if frame is None:
            self.child.kill()
            sys.exit(0)
        try:
            header, body = wire.split_frame(frame)
        except wire.WireError as error:
            header, body = {"cmd": None, "error": str(error)}, b""
        if header.get("cmd") == "stop":
            self.child.kill()
            wire.write_frame(self.events, {"event": "stopped", "output": self._tail()})
            return "done"
        if header.get("cmd") == "call":
            self.pending += body
            self._flush_requests()
            return None
        wire.write_frame(self.events, {"event": "error", "message": f"unknown command {header.get('cmd')!r}"})
        return None

    def _flush_requests(self) -> None:
        try:
            while self.pending:
                written = os.write(self.child.requests, self.pending)
                del self.pending[:written]
        except BlockingIOError:
            self.selector.register(self.child.requests, selectors.EVENT_WRITE, self._on_requests)
        except BrokenPipeError:
            self.pending.clear()

    def _on_requests(self) -> None:
        self.selector.unregister(self.child.requests)
        self._flush_requests()

    def _on_replies(self) -> str | None:
        data = _read_available(self.child.replies)
        if not data:
            return self._ended_on_its_own()
        self.incoming += data
        while True:
            size = _frame_size(self.incoming)
            if size is None:
                return None
            if size > self.reply_limit:
                return self._end("reply", f"sent back more than {_mebibytes(self.reply_limit)} of data in one reply")
            if len(self.incoming) < size:
                return None
            # The reply event carries the worker's frame, unread, as its body.
            self.events.write(wire.pack_raw({"event": "reply"}, bytes(self.incoming[:size])))
            self.events.flush()
            del self.incoming[:size]

    def _on_output(self) -> str | None:
        data = _read_available(self.child.output)
        if not data:
            self.selector.unregister(self.child.output)
            return None
        self.output_seen += len(data)
        self.output_tail = (self.output_tail + data)[-4096:]
        if self.output_seen > self.output_limit:
            return self._end("output", f"printed more than {_mebibytes(self.output_limit)} of output")
        return None

    def _ended_on_its_own(self) -> str:
        status = self.child.reap(block=True)
        if os.WIFSIGNALED(status):
            name = _signal_name(os.WTERMSIG(status))
            return self._end("signal", f"crashed with signal {name}", signal_name=name)
        code = os.WEXITSTATUS(status)
        return self._end("exit", f"exited with status {code} before answering", code=code)

    def _end(self, reason: str, message: str, **details) -> str:
        self.child.kill()
        wire.write_frame(self.events, {"event": "ended", "reason": reason, "message": message, "output": self._tail(), **details})
        return "done"

    def _tail(self) -> str:
        return self.output_tail.decode(errors="replace")


def _frame_size(buffer: bytearray) -> int | None:
    """The size of the frame at the start of ``buffer`` once its prefixes have arrived, else None."""
    if len(buffer) < 4:
        return None
    head_length = int.from_bytes(buffer[:4], "big")
    if len(buffer) < 12 + head_length:
        return 12 + head_length if head_length > wire.HEADER_LIMIT else None
    return 12 + head_length + int.from_bytes(buffer[4 + head_length : 12 + head_length], "big")


def _read_available(descriptor: int) -> bytes:
    chunks = []
    while True:
        try:
            chunk = os.read(descriptor, 1 << 16)
        except BlockingIOError:
            break
        if not chunk:
            break
        chunks.append(chunk)
        if len(chunks) >= 64:
            break
    return b"".join(chunks)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _mebibytes(count: int) -> str:
    return f"{count / 2**20:g} MiB"


def _preload() -> list[str]:
    """Import the kit's libraries once (torch already is), single-threaded; returns those that loaded."""
    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    loaded = []
    for name in PRELOADED:
        try:
            importlib.import_module(name)
            loaded.append(name)
        except Exception:  # noqa: BLE001 - a library missing here fails later in the test that needs it
            continue
    if "matplotlib" in loaded:
        import matplotlib

        matplotlib.use("Agg")
        importlib.import_module("matplotlib.pyplot")
    return loaded


def _make_undumpable() -> None:
    """Forbid attaching to the server (ptrace, /proc/<pid>/mem): its workers are forked from it."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE = 4
    except (OSError, AttributeError):
        pass


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="the grader's fork server (started by dlvc grade, not by hand)")
    parser.add_argument("--package", type=Path, required=True, help="folder holding the student's dlvc/")
    parser.add_argument("--scratch", type=Path, required=True, help="folder for the workers' scratch folders")
    parser.add_argument("--landlock", action="store_true", help="confine each worker with Landlock to Python, the package and its scratch")
    parser.add_argument("--user", default=None, help="UID:GID that each worker becomes (the server runs as root)")
    args = parser.parse_args(argv)
    user = tuple(int(number) for number in args.user.split(":")) if args.user else None
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    _make_undumpable()
    commands = os.fdopen(os.dup(0), "rb", buffering=0)
    events = os.fdopen(os.dup(1), "wb")
    os.dup2(os.open(os.devnull, os.O_RDWR), 0)
    os.dup2(2, 1)
    Server(args.package.resolve(), args.scratch.resolve(), commands, events, landlock=args.landlock, user=user).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
