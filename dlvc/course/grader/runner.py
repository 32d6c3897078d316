"""A warm pytest runner for the grader: import torch, pytest and the reference build once, fork a run per submission.

Importing torch and collecting the graded suite takes the grader's own process
about as long as most submissions' tests. ``dlvc grade`` therefore starts one
runner per job (``python -m dlvc.course.grader.runner``); the runner imports what every
run needs and then, for each request on its standard input (one JSON line: the
pytest arguments, the environment, the log file, a time limit), forks a child
that runs ``pytest.main`` and replies on its standard output with one JSON line:
the child's exit status, whether it was killed, and the records it sent. Only
trusted code runs here: the graded suite and the reference build; the student's
code runs in the suite's sandboxed workers, as always.

Records travel through a pipe that the runner makes before each fork: a request
that names ``results_option`` (``--grading-results-fd``) gets that option and the
pipe's descriptor appended to its pytest arguments, the graded suite writes one
JSON line per verdict to it, and the runner reads the pipe while it waits (a
pipe holds 64 KiB) and returns the lines in its reply. Nothing a worker can reach
carries a verdict: the descriptor is closed in every program the child starts,
and the child is not dumpable, so that a worker running as the same user cannot
open it through ``/proc``. A child that outlives its time limit is killed, and the
reply says so and holds the records it had sent.

The runner starts with torch, pytest and (unless ``--without-dlvc``) the reference
build and the graded suite's plugin. Each child tells it, when it ends, which
libraries and ``dlvc`` modules it imported; the runner imports those before its
next fork, so the next run finds them warm. So a suite that never imports
matplotlib never has it in memory, and one that does pays for the import once.

``python dlvc/course/grader/runner.py --without-dlvc`` (the file, so that no ``dlvc`` is
imported to find it) warms the libraries only, so that each run may import a
``dlvc`` package of its own (``pytest tests/public --impl FOLDER``): the kit's tests
run the public tests on every mutant and every stub that way.
"""

import json
import os
import select
import signal
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

WARM_LIBRARIES = ("torch", "pytest")
WARM_PACKAGE = ("dlvc", "dlvc.course.grader.graded")
IMPORTED_KEY = "runner-imported"
"""The key of the child's last record: the modules it imported, for the runner to warm."""
PR_SET_DUMPABLE = 4


def serve(requests, replies, with_dlvc: bool = True) -> None:
    """Answer one JSON request per line with one JSON reply per line, until the end of ``requests``."""
    for line in requests:
        request = json.loads(line)
        read_end, write_end = os.pipe()  # both close on exec: no program the child starts holds them
        pid = os.fork()
        if pid == 0:
            os.close(read_end)
            _child(request, write_end, with_dlvc)
        os.close(write_end)
        try:
            reply, imported = _wait(pid, float(request["seconds"]), read_end)
        finally:
            os.close(read_end)
        replies.write(json.dumps(reply) + "\n")
        replies.flush()
        warm(imported)


def _child(request: dict, records: int, with_dlvc: bool) -> None:
    try:
        _not_dumpable()
        os.environ.clear()
        os.environ.update(request["env"])
        tempfile.tempdir = None  # read TMPDIR again
        os.chdir(request["cwd"])
        log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        os.setpgid(0, 0)
        import pytest

        argv = list(request["argv"])
        if request.get("results_option"):
            argv += [request["results_option"], str(records)]
        code = pytest.main(argv)
        sys.stdout.flush()
        sys.stderr.flush()
        _write_all(records, json.dumps({IMPORTED_KEY: warmable_modules(with_dlvc)}) + "\n")
        os._exit(int(code))
    finally:
        os._exit(70)


def _not_dumpable() -> None:
    """No process of another user, and none of this user but root, may open this process's descriptors through /proc."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)


def _write_all(fd: int, text: str) -> None:
    view = memoryview(text.encode())
    while view:
        view = view[os.write(fd, view):]


def _wait(pid: int, seconds: float, records: int) -> tuple[dict, list[str]]:
    """Wait for the child, reading its records as they come; (the reply, the modules it imported)."""
    deadline = time.monotonic() + seconds
    received = bytearray()
    timed_out = False
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
            timed_out = True
            break
        if select.select([records], [], [], 0.05)[0]:
            received += os.read(records, 1 << 16)
    # The child is gone: what it wrote lies in the pipe. A process it forked without exec may
    # still hold the write end open, so read only what is there, never wait for the end.
    while select.select([records], [], [], 0)[0] and (chunk := os.read(records, 1 << 16)):
        received += chunk
    lines, imported = [], []
    for line in received.decode(errors="replace").splitlines():
        record = _json_or_none(line)
        if isinstance(record, dict) and isinstance(record.get(IMPORTED_KEY), list):
            imported = [name for name in record[IMPORTED_KEY] if isinstance(name, str)]
        else:
            lines.append(line)
    reply = {"status": None if timed_out else os.waitstatus_to_exitcode(status), "timed_out": timed_out, "records": lines}
    return reply, imported


def _json_or_none(line: str):
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        return None


def warmable_modules(with_dlvc: bool) -> list[str]:
    """The modules this process imported that a runner may import too: installed libraries, and ``dlvc`` where it is the runner's.

    Never the tests' own modules, and never a ``dlvc`` that a ``--without-dlvc`` run imported
    from the package under test.
    """
    folders = {Path(sysconfig.get_paths()[key]).resolve() for key in ("stdlib", "platstdlib", "purelib", "platlib")}
    names = []
    for name, module in list(sys.modules.items()):
        if name == "dlvc" or name.startswith("dlvc."):
            if with_dlvc:
                names.append(name)
            continue
        path = getattr(module, "__file__", None)
        if isinstance(path, str) and any(folder in Path(path).resolve().parents for folder in folders):
            names.append(name)
    return sorted(names)


_UNWARMABLE: set[str] = set()


def warm(names: list[str]) -> None:
    """Import the modules a child imported that this process has not yet; one that fails is noted and left alone."""
    import importlib

    for name in names:
        if name in sys.modules or name in _UNWARMABLE:
            continue
        try:
            importlib.import_module(name)
        except Exception as error:  # a module that cannot be imported here is imported by each run instead
            _UNWARMABLE.add(name)
            print(f"runner: {name} stays cold ({type(error).__name__}: {error})", file=sys.stderr)


def main(argv=None) -> int:
    import argparse
    import importlib

    parser = argparse.ArgumentParser(description="A warm pytest runner: one JSON request per line on stdin.")
    parser.add_argument("--without-dlvc", action="store_true", help="warm the libraries only; each run imports its own dlvc")
    args = parser.parse_args(argv)
    if args.without_dlvc and sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
        sys.path.pop(0)  # run as a file: its folder, dlvc/course, is no place to import modules from
    os.environ.setdefault("MPLBACKEND", "Agg")  # for matplotlib, should a run teach the runner to import it
    for name in WARM_LIBRARIES + (() if args.without_dlvc else WARM_PACKAGE):
        importlib.import_module(name)
    sys.stdout.write(json.dumps({"ready": True}) + "\n")
    sys.stdout.flush()
    serve(sys.stdin, sys.stdout, with_dlvc=not args.without_dlvc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
