"""A warm pytest runner for the grader: import torch, pytest and the reference build once, fork a run per submission.

Importing torch and collecting the graded suite takes the grader's own process
about as long as most submissions' tests. ``dlvc grade`` therefore starts one
runner per job (``python -m dlvc.course.grader.runner``); the runner imports what every
run needs and then, for each request on its standard input (one JSON line: the
pytest arguments, the environment, the log file, a time limit), forks a child
that runs ``pytest.main`` and reports the child's exit status on its standard
output. Only trusted code runs here: the graded suite and the reference build;
the student's code runs in the suite's sandboxed workers, as always.

A child that outlives its time limit is killed, and the reply says so.

``python dlvc/course/grader/runner.py --without-dlvc`` (the file, so that no ``dlvc`` is
imported to find it) warms the libraries only, so that each run may import a
``dlvc`` package of its own (``pytest tests/public --impl FOLDER``): the kit's tests
run the public tests on every mutant and every stub that way.
"""

import json
import os
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
WARM_PACKAGE = ("dlvc", "dlvc.course.grader.graded")


def serve(requests, replies) -> None:
    """Answer one JSON request per line with one JSON reply per line, until the end of ``requests``."""
    for line in requests:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _child(request)
        status = _wait(pid, float(request["seconds"]))
        replies.write(json.dumps(status) + "\n")
        replies.flush()


def _child(request: dict) -> None:
    try:
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

        code = pytest.main(request["argv"])
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(int(code))
    finally:
        os._exit(70)


def _wait(pid: int, seconds: float) -> dict:
    deadline = time.monotonic() + seconds
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return {"status": os.waitstatus_to_exitcode(status), "timed_out": False}
        if time.monotonic() > deadline:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return {"status": None, "timed_out": True}
        time.sleep(0.05)


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
