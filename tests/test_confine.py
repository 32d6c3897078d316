"""A confined grading worker cannot escape its limits (dlvc/course/sandboxed/confine.py).

Each test forks a child, confines it, has it try one thing and report the
outcome as a JSON line through a pipe; the parent asserts on the report. The
child always leaves through ``os._exit`` and is reaped within a timeout, so a
test never hangs and never runs pytest twice. confine.py is loaded from its file
as the top-level module ``confine``, the way the grader's sandbox imports it,
so these tests check the repository's copy whatever ``--impl`` says.
"""

import ast
import concurrent.futures
import ctypes
import errno
import importlib.util
import json
import multiprocessing
import os
import platform
import select
import signal
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

import pytest

resource = pytest.importorskip("resource", reason="confine needs POSIX resource limits")

CONFINE_PATH = Path(__file__).resolve().parents[1] / "dlvc" / "course" / "sandboxed" / "confine.py"
REPORT_FD_VARIABLE = "CONFINE_TEST_REPORT_FD"
TIMEOUT_S = 20.0

pytestmark = [pytest.mark.skipif(not sys.platform.startswith("linux"), reason="confine relies on Linux rlimits, prctl and /proc"), pytest.mark.isolation]


def load_standalone_confine():
    spec = importlib.util.spec_from_file_location("confine", CONFINE_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


confine = load_standalone_confine()

needs_seccomp = pytest.mark.skipif(
    not confine.seccomp_supported(), reason="confine's seccomp filter supports only 64-bit Linux on x86_64 and aarch64"
)


def report(fd, **fields):
    os.write(fd, (json.dumps(fields) + "\n").encode())


def run_in_child(body):
    """Run body() in a forked child and return what it returned (JSON-able).

    The pipe's write end is in the child's environment, so that a program the
    child execs can report a {"result": ...} line itself.
    """
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_fd)
            os.environ[REPORT_FD_VARIABLE] = str(write_fd)
            report(write_fd, result=body())
        except BaseException:
            report(write_fd, error=traceback.format_exc())
        finally:
            os._exit(0)
    os.close(write_fd)
    try:
        lines = read_until_eof(read_fd, time.monotonic() + TIMEOUT_S)
    finally:
        os.close(read_fd)
        reap(pid)
    merged = {}
    for line in lines:
        merged.update(json.loads(line))
    assert "error" not in merged, f"the child failed:\n{merged['error']}"
    assert "result" in merged, f"the child reported nothing (lines: {lines})"
    return merged["result"]


def read_until_eof(fd, deadline):
    data = b""
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no end of report within {TIMEOUT_S} s; got {data!r}"
        if select.select([fd], [], [], remaining)[0]:
            chunk = os.read(fd, 65536)
            if not chunk:
                return data.decode().splitlines()
            data += chunk


def reap(pid):
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


def run_confined(probe, limits=None, before=None):
    """Confine a forked child with limits (after calling before()), run probe() there and return its result.

    Where seccomp is supported the probe runs only if confine() warned of
    nothing: probing the parent without the filter could stop or kill it.
    """

    def body():
        if before is not None:
            before()
        warnings = confine.confine(limits or confine.Limits())
        if warnings and confine.seccomp_supported():
            raise AssertionError(f"confine() warned: {warnings}")
        return probe()

    return run_in_child(body)


def outcome(action):
    """'ok', the errno name of the OSError action raised, or the name of another exception."""
    try:
        action()
    except OSError as error:
        return errno.errorcode.get(error.errno, type(error).__name__)
    except Exception as error:
        return type(error).__name__
    return "ok"


def fork_and_reap():
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)


def start_and_join_process():
    process = multiprocessing.Process(target=os.getpid)
    process.start()
    process.join(TIMEOUT_S)


def raw_syscall(number, *arguments):
    """'ok' or the errno name of a system call made through libc's syscall()."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    if libc.syscall(ctypes.c_long(number), *(ctypes.c_long(argument) for argument in arguments)) == -1:
        return errno.errorcode[ctypes.get_errno()]
    return "ok"


def syscall_number(name):
    return confine.ARCHITECTURES[platform.machine()].syscalls[name]


def test_confine_imports_only_the_standard_library():
    tree = ast.parse(CONFINE_PATH.read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level == 0}
    assert not any(isinstance(node, ast.ImportFrom) and node.level for node in ast.walk(tree)), "relative import"
    assert imported <= sys.stdlib_module_names, f"not in the standard library: {imported - sys.stdlib_module_names}"


@needs_seccomp
def test_confine_reports_no_warnings_on_a_supported_architecture():
    assert run_in_child(lambda: confine.confine()) == []


def test_confine_applies_only_rlimits_and_warns_on_an_unsupported_architecture():
    def body():
        confine.platform.machine = lambda: "riscv64"
        warnings = confine.confine()
        return {"warnings": warnings, "core": resource.getrlimit(resource.RLIMIT_CORE), "fork": outcome(fork_and_reap)}

    result = run_in_child(body)
    assert len(result["warnings"]) == 1 and "seccomp" in result["warnings"][0], result["warnings"]
    assert result["core"] == [0, 0]
    assert result["fork"] == "ok"


@needs_seccomp
def test_fork_fails_with_eperm():
    assert run_confined(lambda: outcome(fork_and_reap)) == "EPERM"


@needs_seccomp
def test_subprocess_popen_fails():
    assert run_confined(lambda: outcome(lambda: subprocess.Popen(["true"]).wait())) == "EPERM"


@needs_seccomp
def test_multiprocessing_process_start_fails():
    assert run_confined(lambda: outcome(start_and_join_process)) == "EPERM"


@needs_seccomp
def test_clone3_fails_with_enosys_so_that_glibc_falls_back_to_clone():
    # Unfiltered, clone3 with no arguments fails with EINVAL instead.
    assert run_confined(lambda: raw_syscall(syscall_number("clone3"), 0, 0)) == "ENOSYS"


@needs_seccomp
def test_cloning_a_thread_into_a_new_namespace_fails_with_eperm():
    # Unfiltered, the kernel refuses these flags with EINVAL (CLONE_THREAD needs CLONE_SIGHAND).
    flags = confine.CLONE_THREAD | confine.CLONE_NEWUSER
    assert run_confined(lambda: raw_syscall(syscall_number("clone"), flags, 0, 0, 0, 0)) == "EPERM"


@pytest.mark.skipif(platform.machine() != "x86_64" or not confine.seccomp_supported(), reason="x32 system calls exist only on x86_64")
def test_x32_system_calls_fail_with_eperm():
    x32_getpid = 0x40000000 | 39
    assert run_confined(lambda: raw_syscall(x32_getpid)) == "EPERM"


@needs_seccomp
def test_a_thread_runs_and_joins():
    def probe():
        ran = []
        thread = threading.Thread(target=ran.append, args=(True,))
        thread.start()
        thread.join(TIMEOUT_S)
        return ran

    assert run_confined(probe) == [True]


@needs_seccomp
def test_a_thread_pool_runs_four_workers_at_once():
    def probe():
        barrier = threading.Barrier(4, timeout=TIMEOUT_S)

        def meet(_):
            barrier.wait()
            return threading.get_ident()

        with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
            return len(set(pool.map(meet, range(4))))

    assert run_confined(probe) == 4


@needs_seccomp
def test_signalling_the_parent_fails_with_eperm():
    assert run_confined(lambda: outcome(lambda: os.kill(os.getppid(), 0))) == "EPERM"


@needs_seccomp
def test_signalling_every_process_or_the_process_group_fails_with_eperm():
    assert run_confined(lambda: [outcome(lambda: os.kill(pid, 0)) for pid in (-1, 0)]) == ["EPERM", "EPERM"]


@needs_seccomp
def test_signalling_itself_works():
    assert run_confined(lambda: outcome(lambda: os.kill(os.getpid(), 0))) == "ok"


@needs_seccomp
def test_raise_signal_reaches_the_installed_handler():
    def probe():
        received = []
        signal.signal(signal.SIGUSR1, lambda signum, frame: received.append(signum))
        signal.raise_signal(signal.SIGUSR1)
        return received

    assert run_confined(probe) == [signal.SIGUSR1]


@needs_seccomp
def test_prlimit_on_the_parent_fails_with_eperm():
    # Only reads the parent's limit: were the filter missing, setting it could kill the test run.
    assert run_confined(lambda: outcome(lambda: resource.prlimit(os.getppid(), resource.RLIMIT_CPU))) == "EPERM"


@needs_seccomp
def test_ptrace_attach_to_the_parent_fails_with_eperm():
    def probe():
        libc = ctypes.CDLL(None, use_errno=True)
        libc.ptrace.restype = ctypes.c_long
        arguments = (ctypes.c_long(os.getppid()), ctypes.c_void_p(), ctypes.c_void_p())
        if libc.ptrace(ctypes.c_long(16), *arguments) == -1:  # PTRACE_ATTACH
            return errno.errorcode[ctypes.get_errno()]
        libc.ptrace(ctypes.c_long(17), *arguments)  # PTRACE_DETACH, and let the parent run on
        os.kill(os.getppid(), signal.SIGCONT)
        return "ok"

    assert run_confined(probe) == "EPERM"


@needs_seccomp
def test_an_execed_program_is_still_confined():
    code = (
        "import errno, json, os\n"
        "try:\n"
        "    pid = os.fork()\n"
        "except OSError as error:\n"
        "    outcome = errno.errorcode[error.errno]\n"
        "else:\n"
        "    if pid == 0:\n"
        "        os._exit(0)\n"
        "    os.waitpid(pid, 0)\n"
        "    outcome = 'ok'\n"
        f"os.write(int(os.environ[{REPORT_FD_VARIABLE!r}]), (json.dumps({{'result': outcome}}) + '\\n').encode())\n"
    )

    def probe():
        os.set_inheritable(int(os.environ[REPORT_FD_VARIABLE]), True)
        os.execv(sys.executable, [sys.executable, "-I", "-S", "-c", code])

    assert run_confined(probe) == "EPERM"


def test_allocating_more_than_the_memory_limit_raises_memory_error():
    limits = confine.Limits(memory_bytes=512 * 2**20)
    assert run_confined(lambda: outcome(lambda: bytearray(3 * 2**30)), limits) == "MemoryError"


def test_allocating_within_the_memory_limit_works():
    limits = confine.Limits(memory_bytes=512 * 2**20)
    assert run_confined(lambda: outcome(lambda: bytearray(64 * 2**20)), limits) == "ok"


def test_writing_past_the_file_limit_raises_efbig(tmp_path):
    path = tmp_path / "big"

    def write():
        with open(path, "wb") as file:
            file.write(b"x" * 2 * 2**20)

    def probe():
        return {"write": outcome(write), "size": path.stat().st_size}

    # Python ignores SIGXFSZ at startup; restore the default, which kills, to see that confine ignores it.
    result = run_confined(probe, confine.Limits(file_bytes=2**20), before=lambda: signal.signal(signal.SIGXFSZ, signal.SIG_DFL))
    assert result == {"write": "EFBIG", "size": 2**20}


def test_hard_limits_cannot_be_raised_again():
    def raise_limit(limit):
        hard = resource.getrlimit(limit)[1]
        resource.setrlimit(limit, (hard + 1, hard + 1))

    limits = {"AS": resource.RLIMIT_AS, "FSIZE": resource.RLIMIT_FSIZE, "NOFILE": resource.RLIMIT_NOFILE, "CORE": resource.RLIMIT_CORE}
    result = run_confined(lambda: {name: outcome(lambda limit=limit: raise_limit(limit)) for name, limit in limits.items()})
    assert result == dict.fromkeys(limits, "ValueError")


def test_the_child_is_not_dumpable():
    def probe():
        return ctypes.CDLL(None, use_errno=True).prctl(ctypes.c_int(3), ctypes.c_ulong(0))  # PR_GET_DUMPABLE

    assert run_confined(probe) == 0


def test_the_child_is_killed_when_its_parent_dies():
    read_fd, write_fd = os.pipe()
    parent = os.fork()
    if parent == 0:
        try:
            os.close(read_fd)
            if os.fork() == 0:
                confine.confine()
                report(write_fd, pid=os.getpid())
            else:
                os.close(write_fd)
            time.sleep(TIMEOUT_S)
        finally:
            os._exit(0)
    os.close(write_fd)
    try:
        ready = os.read(read_fd, 4096) if select.select([read_fd], [], [], TIMEOUT_S)[0] else b""
        assert ready, "the confined grandchild never reported"
        os.kill(parent, signal.SIGKILL)
        os.waitpid(parent, 0)
        try:
            # The grandchild holds the last write end: end of file means it died.
            read_until_eof(read_fd, time.monotonic() + 5)
        except AssertionError:
            os.kill(json.loads(ready)["pid"], signal.SIGKILL)
            raise
    finally:
        os.close(read_fd)


@needs_seccomp
def test_a_network_socket_fails_with_eperm_and_a_unix_socket_works():
    import socket

    def probe():
        return [outcome(lambda: socket.socket(family).close()) for family in (socket.AF_INET, socket.AF_INET6, socket.AF_UNIX)]

    assert run_confined(probe) == ["EPERM", "EPERM", "ok"]


needs_landlock = pytest.mark.skipif(confine.landlock_abi() < 1, reason="the kernel has no Landlock")


@needs_landlock
def test_landlock_lets_the_child_read_and_write_only_what_its_view_names(tmp_path):
    readable, writable, outside = tmp_path / "readable", tmp_path / "writable", tmp_path / "outside"
    for folder in (readable, writable, outside):
        folder.mkdir()
    (readable / "file.txt").write_text("read me")
    (outside / "secret.txt").write_text("secret")
    view = confine.FileView(readable=(str(readable),), writable=(str(writable),))

    def probe():
        return {
            "read": outcome(lambda: open(readable / "file.txt").read()),
            "write where readable": outcome(lambda: open(readable / "new.txt", "w").close()),
            "write where writable": outcome(lambda: open(writable / "new.txt", "w").close()),
            "read outside": outcome(lambda: open(outside / "secret.txt").read()),
            "list outside": outcome(lambda: os.listdir(outside)),
            "write outside": outcome(lambda: open(outside / "new.txt", "w").close()),
            "device": outcome(lambda: open("/dev/null", "w").write("x")),
        }

    result = run_in_child(lambda: (confine.confine(files=view), probe())[1])
    assert result == {
        "read": "ok", "write where readable": "EACCES", "write where writable": "ok",
        "read outside": "EACCES", "list outside": "EACCES", "write outside": "EACCES", "device": "ok",
    }


def test_a_root_child_becomes_the_user_it_is_given_with_no_groups_and_another_user_cannot():
    def probe():
        try:
            confine.confine(user=(65534, 65534))
        except confine.ConfinementError as error:
            return str(error)
        return [list(os.getresuid()), list(os.getresgid()), os.getgroups()]

    result = run_in_child(probe)
    if os.geteuid() == 0:
        assert result == [[65534] * 3, [65534] * 3, []]
    else:
        assert "becoming the unprivileged user not applied" in result, result


def test_a_user_or_file_view_that_cannot_be_applied_is_an_error_not_a_warning():
    def probe():
        confine.landlock_abi = lambda: 0
        try:
            confine.confine(files=confine.FileView(readable=(), writable=()))
        except confine.ConfinementError as error:
            return str(error)
        return "applied"

    assert "Landlock not applied" in run_in_child(probe)
    assert "expected an unprivileged user" in run_in_child(lambda: _raised(lambda: confine.confine(user=(0, 0))))


def _raised(action) -> str:
    try:
        action()
    except confine.ConfinementError as error:
        return str(error)
    return "applied"
