"""Confine a grading worker before it runs a student's code.

The grader forks each worker from a fork server, and the worker calls
:func:`confine` before it imports anything the student wrote. From then on the
worker, its threads and any program it execs:

* may add at most ``Limits.memory_bytes`` of address space to what it already
  maps (a process that imported torch maps gigabytes it never touches, so the
  limit is relative), write files of at most ``Limits.file_bytes``, hold
  ``Limits.open_files`` descriptors, optionally use ``Limits.cpu_seconds`` of
  CPU, and dump no core. Soft and hard limits are equal and
  ``CAP_SYS_RESOURCE`` is dropped, so the limits cannot be raised again;
* ignores SIGXFSZ (the interpreter usually does already; programs it execs
  inherit that), so that writing past the file limit raises ``OSError``
  (EFBIG) instead of killing the worker without a word;
* is killed with SIGKILL when the thread that forked it exits, and is not
  dumpable until it execs, so that other workers running as the same user
  cannot ptrace it or read its memory through ``/proc``;
* runs under a seccomp filter (x86_64 and aarch64 only): it cannot create
  processes (threads still work), signal or ``prlimit`` any process but
  itself, ptrace or otherwise inspect other processes, open a socket of any
  family but ``AF_UNIX`` (no network), or load kernel modules, mount file
  systems, enter namespaces and the like. A refused system call fails with
  EPERM (clone3 with ENOSYS, so that glibc falls back to clone, whose flags
  the filter can read), a system call of another architecture kills the
  process, and all other calls work. The filter survives ``execve``.

Two more parts are asked for by the caller, and a failure of either raises
:class:`ConfinementError` rather than warning, since the worker must not run
the student's code without them:

* ``user``: a process that runs as root becomes an unprivileged user (its
  groups, gid and uid, all three of each), so that it loses root's powers and
  cannot read or write what that user cannot;
* ``files`` (a :class:`FileView`): Landlock (Linux 5.13 and later, no
  privilege needed) lets it open only what the view names: the system and
  Python read-only, the submission read-only, its scratch folder read-write,
  a few devices. Where the kernel's Landlock ABI has them, it also refuses TCP
  ``bind`` and ``connect`` (ABI 4), and connections to abstract UNIX sockets
  and signals to processes outside its own domain (ABI 6). The system calls
  are made through ``ctypes``, as the kernel documentation describes them, so
  that the grader needs no package beyond the standard library inside the
  sandbox.

This file uses only the standard library and no other ``dlvc`` module, so it
can also be imported as a top-level ``confine`` module inside a sandbox where
``dlvc`` is the student's own package.
"""

import ctypes
import errno
import functools
import os
import platform
import resource
import signal
import struct
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """What a confined worker may use; see :func:`confine`."""

    memory_bytes: int = 2 * 2**30
    file_bytes: int = 256 * 2**20
    open_files: int = 256
    cpu_seconds: int | None = None

    def __post_init__(self):
        for name in ("memory_bytes", "file_bytes", "open_files"):
            if getattr(self, name) < 0:
                raise ValueError(f"Limits.{name} must not be negative, got {getattr(self, name)}")
        if self.cpu_seconds is not None and self.cpu_seconds < 1:
            raise ValueError(f"Limits.cpu_seconds must be None or at least 1, got {self.cpu_seconds}")


# prctl options, from include/uapi/linux/prctl.h.
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_SECCOMP = 22
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
SECCOMP_MODE_FILTER = 2

# Capabilities, from include/uapi/linux/capability.h.
CAP_SYS_RESOURCE = 24
LINUX_CAPABILITY_VERSION_3 = 0x20080522

# Socket families, from include/linux/socket.h.
AF_UNIX = 1

# Landlock, from include/uapi/linux/landlock.h. Its three system calls have the
# same numbers on x86_64 and aarch64.
LANDLOCK_CREATE_RULESET = 444
LANDLOCK_ADD_RULE = 445
LANDLOCK_RESTRICT_SELF = 446
LANDLOCK_CREATE_RULESET_VERSION = 1 << 0
LANDLOCK_RULE_PATH_BENEATH = 1
FS_EXECUTE = 1 << 0
FS_WRITE_FILE = 1 << 1
FS_READ_FILE = 1 << 2
FS_READ_DIR = 1 << 3
FS_REFER = 1 << 13  # ABI 2
FS_TRUNCATE = 1 << 14  # ABI 3
FS_IOCTL_DEV = 1 << 15  # ABI 5
FS_ABI_1 = (1 << 13) - 1  # EXECUTE ... MAKE_SYM: bits 0 to 12
NET_BIND_TCP = 1 << 0  # ABI 4
NET_CONNECT_TCP = 1 << 1  # ABI 4
SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0  # ABI 6
SCOPE_SIGNAL = 1 << 1  # ABI 6
FS_FILE_RIGHTS = FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE | FS_IOCTL_DEV
"""The rights that a rule on a file (not a folder) may hold."""
FS_READ = FS_EXECUTE | FS_READ_FILE | FS_READ_DIR
FS_DEVICE = FS_READ_FILE | FS_WRITE_FILE | FS_TRUNCATE | FS_IOCTL_DEV

SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")
"""The system folders a worker may read in every isolation mode."""
DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom")
"""The devices a worker may open under Landlock (read and write)."""

# Filter return values, from include/uapi/linux/seccomp.h.
SECCOMP_RET_KILL_PROCESS = 0x80000000
SECCOMP_RET_ERRNO = 0x00050000
SECCOMP_RET_ALLOW = 0x7FFF0000

# clone() flags, from include/uapi/linux/sched.h.
CLONE_THREAD = 0x00010000
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_NEW_NAMESPACES = CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET

# Classic BPF opcodes, from include/uapi/linux/filter.h and bpf_common.h.
BPF_LD_W_ABS = 0x00 | 0x00 | 0x20  # BPF_LD | BPF_W | BPF_ABS
BPF_JEQ_K = 0x05 | 0x10 | 0x00  # BPF_JMP | BPF_JEQ | BPF_K
BPF_JGE_K = 0x05 | 0x30 | 0x00  # BPF_JMP | BPF_JGE | BPF_K
BPF_JSET_K = 0x05 | 0x40 | 0x00  # BPF_JMP | BPF_JSET | BPF_K
BPF_RET_K = 0x06 | 0x00  # BPF_RET | BPF_K

# Offsets into struct seccomp_data (include/uapi/linux/seccomp.h): int nr,
# __u32 arch, __u64 instruction_pointer, __u64 args[6]. Both supported
# architectures are little-endian, so an argument's low 32 bits come first.
SECCOMP_DATA_NR = 0
SECCOMP_DATA_ARCH = 4
SECCOMP_DATA_ARGS = 16

# System call numbers for x86_64, from arch/x86/entry/syscalls/syscall_64.tbl.
X86_64_SYSCALLS = {
    "clone": 56, "fork": 57, "vfork": 58, "kill": 62, "ptrace": 101, "rt_sigqueueinfo": 129,
    "pivot_root": 155, "chroot": 161, "mount": 165, "umount2": 166, "swapon": 167, "swapoff": 168,
    "reboot": 169, "init_module": 175, "delete_module": 176, "tkill": 200, "tgkill": 234,
    "kexec_load": 246, "add_key": 248, "request_key": 249, "keyctl": 250, "unshare": 272,
    "rt_tgsigqueueinfo": 297, "perf_event_open": 298, "prlimit64": 302, "setns": 308,
    "process_vm_readv": 310, "process_vm_writev": 311, "kcmp": 312, "finit_module": 313,
    "kexec_file_load": 320, "bpf": 321, "userfaultfd": 323, "pidfd_send_signal": 424,
    "io_uring_setup": 425, "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431,
    "fsmount": 432, "fspick": 433, "pidfd_open": 434, "clone3": 435, "mount_setattr": 442,
    "socket": 41, "socketpair": 53,
}

# System call numbers for aarch64, which uses the generic table in
# include/uapi/asm-generic/unistd.h; it has no fork or vfork (glibc uses clone).
AARCH64_SYSCALLS = {
    "umount2": 39, "mount": 40, "pivot_root": 41, "chroot": 51, "unshare": 97, "kexec_load": 104,
    "init_module": 105, "delete_module": 106, "ptrace": 117, "kill": 129, "tkill": 130,
    "tgkill": 131, "rt_sigqueueinfo": 138, "reboot": 142, "add_key": 217, "request_key": 218,
    "keyctl": 219, "clone": 220, "swapon": 224, "swapoff": 225, "rt_tgsigqueueinfo": 240,
    "perf_event_open": 241, "prlimit64": 261, "setns": 268, "process_vm_readv": 270,
    "process_vm_writev": 271, "kcmp": 272, "finit_module": 273, "bpf": 280, "userfaultfd": 282,
    "kexec_file_load": 294, "pidfd_send_signal": 424, "io_uring_setup": 425, "open_tree": 428,
    "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433,
    "pidfd_open": 434, "clone3": 435, "mount_setattr": 442, "socket": 198, "socketpair": 199,
}


@dataclass(frozen=True)
class _Architecture:
    audit_arch: int  # AUDIT_ARCH_* from include/uapi/linux/audit.h
    syscalls: dict
    x32_bit: int | None = None  # set in x32 system call numbers, which the filter refuses


ARCHITECTURES = {
    "x86_64": _Architecture(audit_arch=0xC000003E, syscalls=X86_64_SYSCALLS, x32_bit=0x40000000),
    "aarch64": _Architecture(audit_arch=0xC00000B7, syscalls=AARCH64_SYSCALLS),
}

# Refused outright with EPERM (those an architecture lacks are skipped).
DENIED_SYSCALLS = (
    "fork", "vfork", "pidfd_send_signal",
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "perf_event_open", "bpf",
    "keyctl", "add_key", "request_key", "unshare", "setns",
    "mount", "umount2", "pivot_root", "chroot",
    "open_tree", "move_mount", "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr",
    "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load",
    "reboot", "swapon", "swapoff", "userfaultfd", "io_uring_setup",
)

# Allowed only when their first argument (a pid, or a tgid for tgkill and
# rt_tgsigqueueinfo) is the worker's own pid.
OWN_PID_SYSCALLS = ("kill", "tkill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo", "pidfd_open")

# Allowed only for the socket family AF_UNIX (their first argument): no network.
UNIX_ONLY_SYSCALLS = ("socket", "socketpair")


class ConfinementError(OSError):
    """A part of the confinement that the caller asked for (the user, the file view) could not be applied."""


@dataclass(frozen=True)
class FileView:
    """What a worker may open under Landlock; every other path of the machine is refused.

    Attributes:
        readable: files and folders it may read (folders with everything below them).
        writable: folders it may read, write, create and remove in.
        devices: device files it may read and write.
    """

    readable: tuple[str, ...]
    writable: tuple[str, ...]
    devices: tuple[str, ...] = DEVICES


def confine(limits: Limits = Limits(), user: tuple[int, int] | None = None, files: FileView | None = None) -> list[str]:
    """Confine the calling process and everything it execs, as the module docstring describes.

    Call it in the child right after the fork, while it has only one thread:
    the seccomp filter and Landlock cover the calling thread and the threads and
    programs it starts later, not threads already running. The parent-death signal
    fires when the thread that forked the child exits, so fork from the fork
    server's main thread.

    Args:
        limits: the resource limits.
        user: ``(uid, gid)`` to become (the caller must be root), or None to stay.
        files: what Landlock lets the process open, or None for no Landlock.

    Returns a warning for each part that could not be applied (for example the
    seccomp filter on an unsupported architecture), [] when all of it was.
    Raises :class:`ConfinementError` when ``user`` or ``files`` could not be applied.
    """
    warnings: list[str] = []
    _attempt(warnings, "file, descriptor, core and CPU limits", _set_resource_limits, limits)
    _attempt(warnings, "address-space limit", _set_address_space_limit, limits.memory_bytes)
    _attempt(warnings, "ignoring SIGXFSZ", signal.signal, signal.SIGXFSZ, signal.SIG_IGN)
    _attempt(warnings, "dropping CAP_SYS_RESOURCE", _drop_sys_resource)
    if user is not None:
        _required("becoming the unprivileged user", become_user, *user)
    # A change of user clears the parent-death signal and the dumpable flag: both come after it.
    _attempt(warnings, "parent-death signal", _prctl, PR_SET_PDEATHSIG, signal.SIGKILL)
    _attempt(warnings, "non-dumpable", _prctl, PR_SET_DUMPABLE, 0)
    if files is not None:
        _required("Landlock", restrict_files, files)
    architecture = _architecture()
    if architecture is None:
        warnings.append(f"seccomp filter not applied: unsupported platform {sys.platform} {platform.machine()}")
    else:
        _attempt(warnings, "seccomp filter", _install_filter, architecture, os.getpid())
    return warnings


def current_address_space() -> int:
    """Bytes of virtual memory the calling process maps now (VmSize in /proc/self/status)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmSize:"):
                value, unit = line.split()[1:3]
                if unit != "kB":
                    raise OSError(errno.EINVAL, f"unexpected VmSize unit {unit!r}")
                return int(value) * 1024
    raise OSError(errno.ENOENT, "no VmSize in /proc/self/status")


def seccomp_supported() -> bool:
    """Whether :func:`confine` can install its seccomp filter here (64-bit Linux on x86_64 or aarch64)."""
    return _architecture() is not None


def _architecture() -> _Architecture | None:
    # A 32-bit interpreter on a 64-bit kernel makes system calls of another
    # architecture, which the filter would answer by killing the process.
    if not sys.platform.startswith("linux") or struct.calcsize("P") != 8:
        return None
    return ARCHITECTURES.get(platform.machine())


def _attempt(warnings: list[str], what: str, function, *args) -> None:
    try:
        function(*args)
    except (OSError, ValueError) as error:
        warnings.append(f"{what} not applied: {error}")


def _required(what: str, function, *args) -> None:
    try:
        function(*args)
    except (OSError, ValueError) as error:
        raise ConfinementError(f"{what} not applied: {error}") from None


def become_user(uid: int, gid: int) -> None:
    """Drop root for ``uid`` and ``gid``: no supplementary groups, real, effective and saved ids all changed."""
    if uid == 0 or gid == 0:
        raise ValueError(f"expected an unprivileged user, got uid {uid} and gid {gid}")
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    if os.getresuid() != (uid, uid, uid) or os.getresgid() != (gid, gid, gid) or os.getgroups():
        raise OSError(errno.EPERM, f"still uid {os.getresuid()}, gid {os.getresgid()}, groups {os.getgroups()}")


def landlock_abi() -> int:
    """The kernel's Landlock ABI version: 0 where Landlock is missing, disabled or not supported here."""
    if _architecture() is None:
        return 0
    try:
        return _check(_syscall(LANDLOCK_CREATE_RULESET, None, 0, LANDLOCK_CREATE_RULESET_VERSION))
    except OSError:
        return 0


def restrict_files(view: FileView) -> None:
    """Let the calling thread (and what it starts later) open only what ``view`` names, with Landlock.

    Every right the kernel's ABI knows is handled, so whatever no rule grants is
    refused (EACCES): reading outside ``view.readable``, and writing, creating,
    removing, renaming and linking outside ``view.writable``. A path of the view
    that does not exist is left out.
    """
    abi = landlock_abi()
    if abi < 1:
        raise OSError(errno.EOPNOTSUPP, "the kernel has no Landlock (Linux 5.13 or later, enabled at boot)")
    handled_fs = FS_ABI_1 | (FS_REFER if abi >= 2 else 0) | (FS_TRUNCATE if abi >= 3 else 0) | (FS_IOCTL_DEV if abi >= 5 else 0)
    handled_net = NET_BIND_TCP | NET_CONNECT_TCP if abi >= 4 else 0
    scoped = SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL if abi >= 6 else 0
    size = 24 if abi >= 6 else 16 if abi >= 4 else 8
    attributes = ctypes.create_string_buffer(struct.pack("=QQQ", handled_fs, handled_net, scoped)[:size], size)
    ruleset = _check(_syscall(LANDLOCK_CREATE_RULESET, attributes, size, 0))
    try:
        rules = [(path, FS_READ) for path in view.readable] + [(path, handled_fs) for path in view.writable]
        rules += [(path, FS_DEVICE) for path in view.devices]
        for path, rights in rules:
            _add_path_rule(ruleset, path, rights & handled_fs)
        _prctl(PR_SET_NO_NEW_PRIVS, 1)
        _check(_syscall(LANDLOCK_RESTRICT_SELF, ruleset, 0))
    finally:
        os.close(ruleset)


def _add_path_rule(ruleset: int, path: str, rights: int) -> None:
    try:
        descriptor = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        if not os.path.isdir(path):
            rights &= FS_FILE_RIGHTS
        rule = ctypes.create_string_buffer(struct.pack("=Qi", rights, descriptor), 12)  # struct landlock_path_beneath_attr, packed
        _check(_syscall(LANDLOCK_ADD_RULE, ruleset, LANDLOCK_RULE_PATH_BENEATH, rule, 0))
    finally:
        os.close(descriptor)


def _syscall(number: int, *arguments) -> int:
    """A system call through libc's syscall(); pointers may be ctypes buffers or None, the rest ints."""
    function = _libc().syscall
    function.restype = ctypes.c_long
    converted = [argument if isinstance(argument, ctypes.Array) else ctypes.c_void_p(argument) if argument is None else ctypes.c_long(argument) for argument in arguments]
    return function(ctypes.c_long(number), *converted)


def _set_resource_limits(limits: Limits) -> None:
    _lower(resource.RLIMIT_FSIZE, limits.file_bytes)
    _lower(resource.RLIMIT_NOFILE, limits.open_files)
    _lower(resource.RLIMIT_CORE, 0)
    if limits.cpu_seconds is not None:
        # Soft equal to hard: the kernel sends SIGKILL, which cannot be caught.
        _lower(resource.RLIMIT_CPU, limits.cpu_seconds)


def _set_address_space_limit(memory_bytes: int) -> None:
    _lower(resource.RLIMIT_AS, current_address_space() + memory_bytes)


def _lower(limit: int, value: int) -> None:
    """Set both the soft and the hard limit to value, but never above the current hard limit."""
    hard = resource.getrlimit(limit)[1]
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    resource.setrlimit(limit, (value, value))


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _check(result: int) -> int:
    if result == -1:
        error = ctypes.get_errno()
        raise OSError(error, os.strerror(error))
    return result


def _prctl(option: int, second: int = 0, third: int = 0) -> int:
    arguments = [ctypes.c_ulong(value) for value in (second, third, 0, 0)]
    return _check(_libc().prctl(ctypes.c_int(option), *arguments))


class _CapabilityHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapabilityData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def _drop_sys_resource() -> None:
    """Remove CAP_SYS_RESOURCE, without which no one can raise a hard limit (root has it).

    It leaves the effective, permitted and inheritable sets always; it leaves
    the bounding set only with CAP_SETPCAP, which matters only for root, who
    would get it back on exec otherwise.
    """
    header = _CapabilityHeader(LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapabilityData * 2)()
    _check(_libc().capget(ctypes.byref(header), data))
    keep = ~(1 << CAP_SYS_RESOURCE) & 0xFFFFFFFF
    data[0].effective &= keep
    data[0].permitted &= keep
    data[0].inheritable &= keep
    _check(_libc().capset(ctypes.byref(header), data))
    if _prctl(PR_CAPBSET_READ, CAP_SYS_RESOURCE) == 1:
        try:
            _prctl(PR_CAPBSET_DROP, CAP_SYS_RESOURCE)
        except PermissionError:
            if 0 in os.getresuid():
                raise


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _install_filter(architecture: _Architecture, own_pid: int) -> None:
    program = _filter_program(architecture, own_pid)
    instructions = ctypes.create_string_buffer(program, len(program))
    fprog = _SockFprog(len(program) // 8, ctypes.addressof(instructions))
    _prctl(PR_SET_NO_NEW_PRIVS, 1)
    _prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(fprog))


def _filter_program(architecture: _Architecture, own_pid: int) -> bytes:
    """The seccomp program as an array of struct sock_filter.

    Each rule is a block that starts by comparing the system call number
    (kept in the accumulator) and either returns or falls through to the next.
    """
    numbers = architecture.syscalls
    program = [
        _load(SECCOMP_DATA_ARCH),
        _jump(BPF_JEQ_K, architecture.audit_arch, 1, 0),
        _return(SECCOMP_RET_KILL_PROCESS),
        _load(SECCOMP_DATA_NR),
    ]
    if architecture.x32_bit is not None:
        program += [_jump(BPF_JGE_K, architecture.x32_bit, 0, 1), _return(_errno(errno.EPERM))]
    program += _threads_only(numbers["clone"])
    # glibc's pthread_create and posix_spawn try clone3 first and fall back to
    # clone on ENOSYS; clone3 passes its flags in memory the filter cannot read.
    program += _refuse(numbers["clone3"], errno.ENOSYS)
    for name in OWN_PID_SYSCALLS:
        program += _allow_first_argument_in(numbers[name], (own_pid,))
    program += _allow_first_argument_in(numbers["prlimit64"], (0, own_pid))
    for name in UNIX_ONLY_SYSCALLS:
        program += _allow_first_argument_in(numbers[name], (AF_UNIX,))
    for name in DENIED_SYSCALLS:
        if name in numbers:
            program += _refuse(numbers[name], errno.EPERM)
    program.append(_return(SECCOMP_RET_ALLOW))
    return b"".join(program)


def _threads_only(clone: int) -> list[bytes]:
    """clone() is allowed only to create a thread, in the caller's namespaces."""
    return [
        _jump(BPF_JEQ_K, clone, 0, 5),
        _load(SECCOMP_DATA_ARGS),
        _jump(BPF_JSET_K, CLONE_NEW_NAMESPACES, 2, 0),
        _jump(BPF_JSET_K, CLONE_THREAD, 0, 1),
        _return(SECCOMP_RET_ALLOW),
        _return(_errno(errno.EPERM)),
    ]


def _allow_first_argument_in(number: int, allowed: tuple[int, ...]) -> list[bytes]:
    """The call is allowed if the low 32 bits of its first argument (a pid_t, a socket family) are in allowed, else EPERM."""
    count = len(allowed)
    block = [_jump(BPF_JEQ_K, number, 0, count + 3), _load(SECCOMP_DATA_ARGS)]
    for index, value in enumerate(allowed):
        last = index == count - 1
        block.append(_jump(BPF_JEQ_K, value & 0xFFFFFFFF, count - 1 - index, 1 if last else 0))
    return block + [_return(SECCOMP_RET_ALLOW), _return(_errno(errno.EPERM))]


def _refuse(number: int, error: int) -> list[bytes]:
    return [_jump(BPF_JEQ_K, number, 0, 1), _return(_errno(error))]


def _errno(error: int) -> int:
    return SECCOMP_RET_ERRNO | error


def _load(offset: int) -> bytes:
    return _instruction(BPF_LD_W_ABS, 0, 0, offset)


def _jump(code: int, value: int, if_true: int, if_false: int) -> bytes:
    return _instruction(code, if_true, if_false, value)


def _return(value: int) -> bytes:
    return _instruction(BPF_RET_K, 0, 0, value)


def _instruction(code: int, if_true: int, if_false: int, k: int) -> bytes:
    """One struct sock_filter: __u16 code, __u8 jt, __u8 jf, __u32 k."""
    return struct.pack("=HBBI", code, if_true, if_false, k)
