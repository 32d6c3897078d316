"""The sandboxed worker: calls go in and data comes back; what goes wrong comes back as a reason; nothing gets out.

Every behaviour is checked in each isolation mode: plain worker processes,
Landlock (with the unprivileged worker user where the tests run as root) and
bubblewrap. A mode's tests are skipped only where that mode cannot run; where
``DLVC_REQUIRE_ISOLATION`` names it (CI: ``bwrap landlock``), they fail instead.
What plain processes cannot keep out is tested for the two sandboxes only.
"""

import os
import socket
import uuid
from pathlib import Path

import pytest
import torch

from dlvc.course.grader.isolation import SandboxError, choose_isolation, find_worker_user
from dlvc.course.grader.sandbox import Limits, Sandbox, StudentError, WorkerEnded
from dlvc.course.authoring.stubs import copy_package
from dlvc.course.sandboxed.probes import forward_and_gradients

from isolation_modes import ISOLATIONS, SANDBOXES, require

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.isolation


def refused(error: StudentError) -> bool:
    """Whether an open() was refused: the path is not there (bubblewrap) or not allowed (Landlock)."""
    return error.is_a("FileNotFoundError") or error.is_a("PermissionError")


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> Path:
    return copy_package(REPOSITORY_ROOT, tmp_path_factory.mktemp("submission"))


def open_sandbox(isolation: str, package: Path, tmp_path_factory) -> Sandbox:
    """A sandbox on ``package`` that must also hide a folder holding ``secret.txt`` (its path: ``sandbox.secret``)."""
    require(isolation)
    hidden = tmp_path_factory.mktemp("hidden-from-the-sandbox")
    (hidden / "secret.txt").write_text("secret")
    sandbox = Sandbox(package, isolation, Limits(output_bytes=2**16), hidden=(REPOSITORY_ROOT, hidden), scratch=tmp_path_factory.mktemp("scratch"))
    sandbox.secret = hidden / "secret.txt"
    return sandbox


@pytest.fixture(scope="module", params=ISOLATIONS)
def sandbox(request, package, tmp_path_factory):
    with open_sandbox(request.param, package, tmp_path_factory) as sandbox:
        yield sandbox


def test_a_call_returns_the_student_objects_answer_as_data(sandbox):
    with sandbox.session("data", seconds=30) as worker:
        metric = worker.new("dlvc.metrics:SegMetrics", ["a", "b"])
        metric.call("update", torch.tensor([[[0, 1], [1, 1]]]), torch.tensor([[[0, 0], [1, 1]]]))
        assert metric.get("confusion_matrix").tolist() == [[1, 1], [0, 2]]
        assert metric.call("mIoU") == pytest.approx(7 / 12)
        assert metric.type_name == "dlvc.metrics.SegMetrics", "an object that is not data stays in the worker as a Remote"


def test_the_worker_imports_the_submissions_package(sandbox):
    with sandbox.session("package", seconds=30) as worker:
        path = worker.call("importlib:import_module", "dlvc").get("__file__")
    assert path in ("/submission/dlvc/__init__.py", str(sandbox.package_root / "dlvc" / "__init__.py")), path


def test_an_exception_of_the_students_code_comes_back_with_its_type_message_and_frames(sandbox):
    with sandbox.session("error", seconds=30) as worker:
        metric = worker.new("dlvc.metrics:SegMetrics", ["a", "b"])
        with pytest.raises(StudentError) as raised:
            metric.call("update", torch.zeros(1, 2, 2, dtype=torch.int64), torch.full((1, 2, 2), 7))
    error = raised.value
    assert error.is_a("ValueError") and "expected labels in [0, 2)" in error.message
    assert 'File "dlvc/metrics.py"' in error.traceback, "the frames of the student's own files are shown"
    assert str(error).startswith("SegMetrics.update(int64 (1, 2, 2), int64 (1, 2, 2)) raised ValueError")


@pytest.mark.parametrize(
    "target, arguments, reason, words",
    [
        ("time:sleep", (30,), "timeout", "timed out after 2 s"),
        ("os:_exit", (3,), "exit", "exited with status 3"),
        ("ctypes:string_at", (0,), "signal", "crashed with signal SIGSEGV"),
        ("builtins:bytearray", (3 * 2**30,), "memory", "exceeded the memory limit of 2 GiB"),
    ],
    ids=["loop", "exit", "segfault", "memory"],
)
def test_a_worker_that_goes_wrong_ends_with_the_reason_and_the_next_one_works(sandbox, target, arguments, reason, words):
    with sandbox.session(reason, seconds=2) as worker:
        with pytest.raises(WorkerEnded) as raised:
            worker.call(target, *arguments)
    assert raised.value.reason == reason and words in str(raised.value), str(raised.value)
    with sandbox.session("after", seconds=30) as worker:
        assert worker.call("math:sqrt", 16.0) == 4.0


def test_a_flood_of_output_ends_the_worker(sandbox):
    with sandbox.session("flood", seconds=30) as worker:
        with pytest.raises(WorkerEnded, match="printed more than 0.0625 MiB") as raised:
            worker.call("builtins:exec", "for _ in range(10**6):\n    print('x' * 1000)")
    assert raised.value.reason == "output"


@pytest.mark.parametrize(
    "code",
    [
        "import os; os.fork()",
        "import subprocess; subprocess.run(['true'])",
        "import os; os.kill(os.getppid(), 0)",
        "import os; os.kill(1, 0)",
        "import os; os.kill(-1, 0)",
        "import socket; socket.socket(socket.AF_INET)",
        "import socket; socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)",
    ],
    ids=["fork", "subprocess", "signal the parent", "signal pid 1", "signal everyone", "tcp socket", "udp socket"],
)
def test_a_worker_cannot_start_processes_signal_others_or_open_network_sockets(sandbox, code):
    with sandbox.session("processes", seconds=30) as worker:
        with pytest.raises(StudentError) as raised:
            worker.call("builtins:exec", code)
    assert raised.value.is_a("PermissionError"), str(raised.value)


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_a_module_beside_the_package_shadows_nothing(tmp_path, isolation):
    require(isolation)
    package = copy_package(REPOSITORY_ROOT, tmp_path)
    (tmp_path / "json.py").write_text("raise SystemExit('a fake json')\n")
    (tmp_path / "sitecustomize.py").write_text("raise SystemExit('a fake sitecustomize')\n")
    with Sandbox(package, isolation) as sandbox, sandbox.session("shadow", seconds=30) as worker:
        assert worker.call("importlib:import_module", "json").get("__file__").endswith("json/__init__.py")


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_a_missing_module_of_the_package_is_not_taken_from_the_repository(tmp_path, isolation):
    require(isolation)
    package = copy_package(REPOSITORY_ROOT, tmp_path)
    (package / "dlvc" / "losses.py").unlink()
    with Sandbox(package, isolation) as sandbox, sandbox.session("missing", seconds=30) as worker:
        with pytest.raises(StudentError) as raised:
            worker.call("importlib:import_module", "dlvc.losses")
    assert raised.value.is_a("ModuleNotFoundError"), str(raised.value)


def test_where_the_grader_is_root_a_landlock_worker_runs_as_the_unprivileged_user(tmp_path):
    require("landlock")
    package = copy_package(REPOSITORY_ROOT, tmp_path)
    user = find_worker_user()
    with Sandbox(package, "landlock") as sandbox, sandbox.session("user", seconds=30) as worker:
        ids = worker.call("os:getresuid"), worker.call("os:getresgid"), worker.call("os:getgroups")
    expected = (user.uid, user.gid) if user is not None else (os.getuid(), os.getgid())
    assert list(ids[0]) == [expected[0]] * 3 and list(ids[1]) == [expected[1]] * 3, f"the worker runs as uids {ids[0]}, gids {ids[1]}"
    assert user is None or ids[2] == [], f"the worker kept the groups {ids[2]}"


# ----- what only the sandboxes keep out: bubblewrap's namespaces, Landlock's file view -------------------


@pytest.fixture(scope="module", params=SANDBOXES)
def walled(request, package, tmp_path_factory):
    """Plain worker processes see what the grader's user sees (the grader warns about it); these tests are the sandboxes'."""
    with open_sandbox(request.param, package, tmp_path_factory) as sandbox:
        yield sandbox


@pytest.mark.parametrize(
    "path",
    ["solutions/metrics.py", "tests/hidden/assignment1/test_metric.py", "dlvc/course/grader/grade.py", "assignments/assignment1/assignment.toml"],
)
def test_the_sandbox_shows_nothing_of_the_repository(walled, path):
    with walled.session("read", seconds=30) as worker:
        with pytest.raises(StudentError) as raised:
            worker.call("builtins:open", str(REPOSITORY_ROOT / path))
    assert refused(raised.value), str(raised.value)


def test_the_sandbox_hides_the_folders_it_is_told_to(walled):
    with walled.session("hidden", seconds=30) as worker:
        with pytest.raises(StudentError) as raised:
            worker.call("builtins:open", str(walled.secret))
    assert refused(raised.value), str(raised.value)


def test_the_sandbox_shows_nothing_of_the_graders_home(walled):
    canary = Path.home() / f".dlvc-canary-{uuid.uuid4().hex[:8]}"
    canary.write_text("the grader's own file")
    try:
        with walled.session("home", seconds=30) as worker:
            with pytest.raises(StudentError) as raised:
                worker.call("builtins:open", str(canary))
    finally:
        canary.unlink()
    assert refused(raised.value), str(raised.value)


@pytest.mark.parametrize("path", ["/submission/dlvc/new.py", "PACKAGE/dlvc/new.py", "/usr/new.txt", "/grader/worker.py", "/new.txt"])
def test_the_sandbox_writes_nowhere_but_its_scratch_folder(walled, path):
    path = path.replace("PACKAGE", str(walled.package_root))
    with walled.session("write", seconds=30) as worker:
        with pytest.raises(StudentError) as raised:
            worker.call("builtins:open", path, "w")
        assert raised.value.is_a("OSError")
        scratch = worker.call("os:getcwd")
        worker.call("builtins:open", f"{scratch}/allowed.txt", "w")
    assert not (walled.package_root / "dlvc" / "new.py").exists()


def test_nothing_a_worker_writes_reaches_the_machine(walled, tmp_path):
    """A path of the grader's machine names, inside the sandbox, either nothing writable or a place in the scratch tmpfs."""
    name = f"written-by-a-worker-{uuid.uuid4().hex[:8]}.txt"
    targets = [REPOSITORY_ROOT / name, tmp_path / name, Path("/tmp") / name, Path("/var/tmp") / name, Path("/dev/shm") / name]
    with walled.session("write-outside", seconds=30) as worker:
        for target in targets:
            try:
                worker.call("builtins:exec", f"open({str(target)!r}, 'w').write('x')")
            except StudentError:
                pass
    reached = [target for target in targets if target.exists()]
    for target in reached:
        target.unlink()
    assert not reached, f"a worker's write reached the grader's machine: {reached}"


def test_the_scratch_folder_is_thrown_away_between_workers(walled):
    with walled.session("first", seconds=30) as worker:
        worker.call("builtins:exec", "open('left-behind.txt', 'w').write('x')")
        first = worker.call("os:getcwd")
    with walled.session("second", seconds=30) as worker:
        assert not worker.call("os.path:exists", f"{first}/left-behind.txt"), "a file one worker left in its scratch folder is seen by the next"
        assert worker.call("os:listdir", worker.call("os:getcwd")) == []


def test_the_sandbox_has_no_network(walled):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        with walled.session("network", seconds=30) as worker:
            with pytest.raises(StudentError) as raised:
                worker.call("socket:create_connection", ("127.0.0.1", port), 5)
    assert raised.value.is_a("OSError"), str(raised.value)


def test_the_bwrap_sandbox_sees_only_its_own_processes(package, tmp_path_factory):
    with open_sandbox("bwrap", package, tmp_path_factory) as sandbox, sandbox.session("processes", seconds=30) as worker:
        pids = [name for name in worker.call("os:listdir", "/proc") if name.isdigit()]
    assert len(pids) <= 3, f"the worker sees processes {pids}: the fork server and itself at most"


@pytest.mark.parametrize("isolation", SANDBOXES)
def test_nothing_of_the_sandbox_outlives_it(package, tmp_path, isolation):
    require(isolation)
    marker = copy_package(REPOSITORY_ROOT, tmp_path / "unique-marker")
    sandbox = Sandbox(marker, isolation)
    with sandbox.session("start", seconds=30) as worker:
        worker.call("math:sqrt", 1.0)
    sandbox.close()
    left = [pid for pid in os.listdir("/proc") if pid.isdigit() and _cmdline_mentions(pid, str(marker))]
    assert not left, f"processes of a closed sandbox are still running: {left}"


def _cmdline_mentions(pid: str, text: str) -> bool:
    try:
        return text.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def test_a_required_sandbox_that_cannot_run_is_an_error(monkeypatch):
    monkeypatch.setattr("dlvc.course.grader.isolation._BWRAP_PROBLEM", ["bwrap is not installed"])
    with pytest.raises(SandboxError, match="bwrap was required .* but bwrap is not installed"):
        choose_isolation("bwrap")


def test_auto_falls_back_to_landlock_then_to_plain_processes_with_a_warning(monkeypatch):
    monkeypatch.setattr("dlvc.course.grader.isolation._BWRAP_PROBLEM", ["bwrap is not installed"])
    monkeypatch.setattr("dlvc.course.grader.isolation._LANDLOCK_PROBLEM", {None: None})
    assert choose_isolation("auto") == ("landlock", None)
    monkeypatch.setattr("dlvc.course.grader.isolation._LANDLOCK_PROBLEM", {None: "the kernel has no Landlock"})
    isolation, warning = choose_isolation("auto")
    assert isolation == "process" and "bwrap is not installed; the kernel has no Landlock" in warning
    assert "sudo apt-get install bubblewrap" in warning
    with pytest.raises(SandboxError, match="landlock was required .* but the kernel has no Landlock"):
        choose_isolation("landlock")


def test_a_worker_user_that_does_not_exist_is_an_error_in_every_mode():
    expected = "no user no-such-user-dlvc" if os.geteuid() == 0 else "not as root"
    with pytest.raises(SandboxError, match=expected):
        find_worker_user("no-such-user-dlvc")
    for requested in ("auto", "process"):
        with pytest.raises(SandboxError, match=expected):
            choose_isolation(requested, "no-such-user-dlvc")


class TwoStreams(torch.nn.Module):
    """(B, C, H, W) main stream and (B, C, H, W) second stream, scaled -> (B, C, H, W), and the scale."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.tensor(2.0))

    def forward(self, main, second, scale):
        return self.weight * main * second * scale, scale


def test_forward_and_gradients_differentiates_every_tensor_input_and_judges_a_tuple_by_its_first_element():
    main, second = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    result = forward_and_gradients(TwoStreams(), main, second, 3, seed=7)
    weights = torch.randn(main.shape, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(result["output"], 6 * main * second)
    torch.testing.assert_close(result["input_grad"], 6 * second * weights)
    torch.testing.assert_close(result["argument_grads"][0], 6 * main * weights)
    assert result["argument_grads"][1] is None, "a number argument has no gradient"
    torch.testing.assert_close(result["parameter_grads"]["weight"], (3 * main * second * weights).sum())



def test_the_sandboxed_side_imports_only_the_standard_library_torch_and_itself():
    """Besides the libraries the fork server preloads for the student's code, and the student's own dlvc."""
    import ast
    import sys

    from dlvc.course.sandboxed.worker import PRELOADED

    folder = REPOSITORY_ROOT / "dlvc" / "course" / "sandboxed"
    siblings = {path.stem for path in folder.glob("*.py")}
    preloaded = {name.split(".")[0] for name in PRELOADED}
    for path in folder.glob("*.py"):
        tree = ast.parse(path.read_text())
        imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level == 0}
        relative = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level}
        others = imported - sys.stdlib_module_names - siblings - preloaded - {"torch", "dlvc"}
        assert not others, f"{path.name} imports {others}: the sandboxed side may import the standard library and torch only"
        assert relative <= {None} | siblings, f"{path.name} imports {relative} from the kit: the sandboxed side imports only its own files"
