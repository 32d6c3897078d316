"""A warm pytest runner for the grader: import torch, pytest and the reference build once, fork a run per submission.

Importing torch and collecting the graded suite takes the grader's own process
about as long as most submissions' tests. ``dlvc grade`` therefore starts one
runner per job (``python -m dlvc.course.runner``); the runner imports what every
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

``python dlvc/course/runner.py --without-dlvc`` (the file, so that no ``dlvc`` is
imported to find it) warms the libraries only, so that each run may import a
``dlvc`` package of its own (``pytest tests/public --impl FOLDER``): the kit's tests
run the public tests on every mutant and every stub that way.
"""

import json
import os
import select
import signal
import sys
import tempfile
import time
from pathlib import Path

WARM_LIBRARIES = (
    "torch",
    "torch._dynamo",
    "torchvision",
    "torchvision.transforms.v2",
    "matplotlib",
    "torch.utils.tensorboard",
    "pytest",
)
WARM_PACKAGE = ("dlvc", "dlvc.course.graded")
PR_SET_DUMPABLE = 4


def serve(requests, replies) -> None:
    """Answer one JSON request per line with one JSON reply per line, until the end of ``requests``."""
    for line in requests:
        request = json.loads(line)
        read_end, write_end = os.pipe()  # both close on exec: no program the child starts holds them
        pid = os.fork()
        if pid == 0:
            os.close(read_end)
            _child(request, write_end)
        os.close(write_end)
        try:
            reply = _wait(pid, float(request["seconds"]), read_end)
        finally:
            os.close(read_end)
        replies.write(json.dumps(reply) + "\n")
        replies.flush()


def _child(request: dict, records: int) -> None:
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
        os._exit(int(code))
    finally:
        os._exit(70)


def _not_dumpable() -> None:
    """No process of another user, and none of this user but root, may open this process's descriptors through /proc."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)


def _wait(pid: int, seconds: float, records: int) -> dict:
    """Wait for the child, reading its records as they come; the reply."""
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
    lines = received.decode(errors="replace").splitlines()
    return {"status": None if timed_out else os.waitstatus_to_exitcode(status), "timed_out": timed_out, "records": lines}


def main(argv=None) -> int:
    import argparse
    import importlib

    parser = argparse.ArgumentParser(description="A warm pytest runner: one JSON request per line on stdin.")
    parser.add_argument("--without-dlvc", action="store_true", help="warm the libraries only; each run imports its own dlvc")
    args = parser.parse_args(argv)
    if args.without_dlvc and sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
        sys.path.pop(0)  # run as a file: its folder, dlvc/course, is no place to import modules from
    for name in WARM_LIBRARIES + (() if args.without_dlvc else WARM_PACKAGE):
        importlib.import_module(name)
    import matplotlib

    matplotlib.use("Agg")
    importlib.import_module("matplotlib.pyplot")
    sys.stdout.write(json.dumps({"ready": True}) + "\n")
    sys.stdout.flush()
    serve(sys.stdin, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
