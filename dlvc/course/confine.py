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
  itself, ptrace or otherwise inspect other processes, or load kernel modules,
  mount file systems, enter namespaces and the like. A refused system call
  fails with EPERM (clone3 with ENOSYS, so that glibc falls back to clone,
  whose flags the filter can read), a system call of another architecture
  kills the process, and all other calls work. The filter survives ``execve``.

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
    "pidfd_open": 434, "clone3": 435, "mount_setattr": 442,
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


def confine(limits: Limits = Limits()) -> list[str]:
    """Confine the calling process and everything it execs, as the module docstring describes.

    Call it in the child right after the fork, while it has only one thread:
    the seccomp filter covers the calling thread and the threads and programs
    it starts later, not threads already running. The parent-death signal
    fires when the thread that forked the child exits, so fork from the fork
    server's main thread.
    Returns a warning for each part that could not be applied (for example the
    seccomp filter on an unsupported architecture), [] when all of it was.
    """
    warnings: list[str] = []
    _attempt(warnings, "file, descriptor, core and CPU limits", _set_resource_limits, limits)
    _attempt(warnings, "address-space limit", _set_address_space_limit, limits.memory_bytes)
    _attempt(warnings, "ignoring SIGXFSZ", signal.signal, signal.SIGXFSZ, signal.SIG_IGN)
    _attempt(warnings, "dropping CAP_SYS_RESOURCE", _drop_sys_resource)
    _attempt(warnings, "parent-death signal", _prctl, PR_SET_PDEATHSIG, signal.SIGKILL)
    _attempt(warnings, "non-dumpable", _prctl, PR_SET_DUMPABLE, 0)
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
    """The call is allowed if the low 32 bits of its first argument (a pid_t) are in allowed, else EPERM."""
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
