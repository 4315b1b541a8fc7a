"""The seccomp filter of an unprivileged container: the policy of Docker's default profile, as an OCI section.

Everything not listed fails with EPERM. Left out, as Docker leaves them out for a container without
CAP_SYS_ADMIN: new namespaces (``unshare``, ``setns``, ``clone`` with namespace flags — the attack run got a
full capability set in a fresh user namespace), mounts, the kernel keyring (``keyctl``, ``add_key``,
``request_key``), ``bpf``, ``perf_event_open``, kernel modules, reboot, clock and swap changes,
``userfaultfd``, AF_VSOCK sockets and unusual ``personality`` values. ``clone3`` answers ENOSYS so that libc
falls back to ``clone``, whose flags a classic filter can inspect. A privileged container gets no filter.
"""

from __future__ import annotations

import ctypes
import os
from typing import Any

# Grouped by kind for review; the set is what counts.
_ALLOWED = """
accept accept4 bind connect getpeername getsockname getsockopt listen recv recvfrom recvmmsg recvmmsg_time64
recvmsg send sendmmsg sendmsg sendto setsockopt shutdown socketcall socketpair
access chdir chmod chown chown32 close close_range copy_file_range creat dup dup2 dup3 faccessat faccessat2
fadvise64 fadvise64_64 fallocate fchdir fchmod fchmodat fchown fchown32 fchownat fcntl fcntl64 fdatasync
fgetxattr flistxattr flock fremovexattr fsetxattr fstat fstat64 fstatat64 fstatfs fstatfs64 fsync ftruncate
ftruncate64 futimesat getcwd getdents getdents64 getxattr lchown lchown32 lgetxattr link linkat listxattr
llistxattr _llseek lremovexattr lseek lsetxattr lstat lstat64 mkdir mkdirat mknod mknodat name_to_handle_at
newfstatat open openat openat2 pread64 preadv preadv2 pwrite64 pwritev pwritev2 read readahead readlink
readlinkat readv removexattr rename renameat renameat2 rmdir sendfile sendfile64 setxattr splice stat stat64
statfs statfs64 statx symlink symlinkat sync sync_file_range syncfs tee truncate truncate64 umask unlink
unlinkat utime utimensat utimensat_time64 utimes vmsplice write writev
epoll_create epoll_create1 epoll_ctl epoll_ctl_old epoll_pwait epoll_pwait2 epoll_wait epoll_wait_old eventfd
eventfd2 pipe pipe2 inotify_add_watch inotify_init inotify_init1 inotify_rm_watch fanotify_mark poll ppoll ppoll_time64
pselect6 pselect6_time64 select _newselect signalfd signalfd4 timerfd_create timerfd_gettime
timerfd_gettime64 timerfd_settime timerfd_settime64
io_cancel io_destroy io_getevents io_pgetevents io_pgetevents_time64 io_setup io_submit io_uring_enter
io_uring_register io_uring_setup ioctl ioprio_get ioprio_set
brk madvise membarrier memfd_create memfd_secret mincore mlock mlock2 mlockall mmap mmap2 mprotect mremap
msync munlock munlockall munmap pkey_alloc pkey_free pkey_mprotect remap_file_pages
execve execveat exit exit_group fork vfork wait4 waitid waitpid kill tgkill tkill pidfd_open
pidfd_send_signal process_mrelease restart_syscall rseq set_robust_list get_robust_list set_tid_address
set_thread_area get_thread_area prctl seccomp capget capset landlock_add_rule landlock_create_ruleset
landlock_restrict_self
rt_sigaction rt_sigpending rt_sigprocmask rt_sigqueueinfo rt_sigreturn rt_sigsuspend rt_sigtimedwait
rt_sigtimedwait_time64 rt_tgsigqueueinfo sigaltstack sigprocmask sigreturn pause
futex futex_time64 futex_waitv nanosleep clock_nanosleep clock_nanosleep_time64 clock_getres
clock_getres_time64 clock_gettime clock_gettime64 clock_adjtime clock_adjtime64 adjtimex gettimeofday time
times alarm getitimer setitimer timer_create timer_delete timer_getoverrun timer_gettime timer_gettime64
timer_settime timer_settime64
getcpu getegid getegid32 geteuid geteuid32 getgid getgid32 getgroups getgroups32 getpgid getpgrp getpid
getppid getpriority getrandom getresgid getresgid32 getresuid getresuid32 getrlimit getrusage getsid gettid
getuid getuid32 prlimit64 setrlimit ugetrlimit setfsgid setfsgid32 setfsuid setfsuid32 setgid setgid32
setgroups setgroups32 setpgid setpriority setregid setregid32 setresgid setresgid32 setresuid setresuid32
setreuid setreuid32 setsid setuid setuid32 sysinfo uname
sched_getaffinity sched_getattr sched_getparam sched_get_priority_max sched_get_priority_min
sched_getscheduler sched_rr_get_interval sched_rr_get_interval_time64 sched_setaffinity sched_setattr
sched_setparam sched_setscheduler sched_yield
ipc mq_getsetattr mq_notify mq_open mq_timedreceive mq_timedreceive_time64 mq_timedsend mq_timedsend_time64
mq_unlink msgctl msgget msgrcv msgsnd semctl semget semop semtimedop semtimedop_time64 shmat shmctl shmdt
shmget
ptrace process_vm_readv process_vm_writev chroot
""".split()

# Flags of clone() that make new namespaces (CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET).
CLONE_NAMESPACE_FLAGS = 0x7E020000
AF_VSOCK = 40
# personality(): the query (0xffffffff), PER_LINUX, PER_LINUX32 and their UNAME26 variants.
PERSONALITIES = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)
ENOSYS = 38

_ARCHES = {
    "x86_64": (["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"], ["arch_prctl", "modify_ldt"]),
    "aarch64": (["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"], ["arm_fadvise64_64", "arm_sync_file_range",
                                                         "sync_file_range2", "breakpoint", "cacheflush", "set_tls"]),
    "armv7l": (["SCMP_ARCH_ARM"], ["arm_fadvise64_64", "arm_sync_file_range", "sync_file_range2", "breakpoint",
                                   "cacheflush", "set_tls"]),
    "riscv64": (["SCMP_ARCH_RISCV64"], ["riscv_flush_icache"]),
}  # fmt: skip


def _arg(index: int, value: int, op: str) -> dict[str, Any]:
    return {"index": index, "value": value, "op": op}


def default_profile(machine: str | None = None) -> dict[str, Any]:
    """The OCI ``linux.seccomp`` section for an unprivileged container on ``machine`` (default: this host)."""
    arches, extra = _ARCHES.get(machine or os.uname().machine, ([], []))
    syscalls: list[dict[str, Any]] = [
        {"names": sorted({*_ALLOWED, *extra}), "action": "SCMP_ACT_ALLOW"},
        {"names": ["socket"], "action": "SCMP_ACT_ALLOW", "args": [_arg(0, AF_VSOCK, "SCMP_CMP_NE")]},
        # OCI's MASKED_EQ: (arg & value) == valueTwo, i.e. no namespace flag set.
        {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": CLONE_NAMESPACE_FLAGS, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]},
        {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS},
    ]  # fmt: skip
    syscalls += [
        {"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [_arg(0, p, "SCMP_CMP_EQ")]}
        for p in PERSONALITIES
    ]
    return {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 1,
        "architectures": arches,
        "syscalls": syscalls,
    }


# ---- the same policy for a process worker, compiled by libseccomp (what runc uses) and loaded with prctl ----

# libseccomp's actions and comparison operators (seccomp.h).
_ACT_ALLOW = 0x7FFF0000
_ACT_ERRNO = 0x00050000
_CMP = {"SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4, "SCMP_CMP_GE": 5,
        "SCMP_CMP_GT": 6, "SCMP_CMP_MASKED_EQ": 7}  # fmt: skip
_NR_ERROR = -1  # __NR_SCMP_ERROR: a name libseccomp does not know
PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 22, 2


class _ArgCmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("datum_a", ctypes.c_uint64),
                ("datum_b", ctypes.c_uint64)]  # fmt: skip


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _action(rule: dict[str, Any], errno_default: int) -> int:
    if rule["action"] == "SCMP_ACT_ALLOW":
        return _ACT_ALLOW
    if rule["action"] == "SCMP_ACT_ERRNO":
        return _ACT_ERRNO | (int(rule.get("errnoRet", errno_default)) & 0xFFFF)
    raise ValueError(f"seccomp action {rule['action']!r} is not supported here")


def compile_filter(profile: dict[str, Any]) -> bytes:
    """The classic BPF program of an OCI ``linux.seccomp`` section, for this process's architecture.

    Compiled once (by the fork server) with libseccomp, the library runc uses; :class:`Filter` installs it.
    Raises OSError when libseccomp is missing or refuses the profile."""
    try:
        lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
    except OSError as exc:
        raise OSError(0, f"libseccomp is not installed ({exc})") from None
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    lib.seccomp_arch_resolve_name.restype = ctypes.c_uint32
    lib.seccomp_arch_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_arch_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint,
                                           ctypes.POINTER(_ArgCmp)]  # fmt: skip
    lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]

    errno_default = int(profile.get("defaultErrnoRet", 1))
    ctx = lib.seccomp_init(_action({"action": profile["defaultAction"]}, errno_default))
    if not ctx:
        raise OSError(0, "libseccomp could not start a filter")
    try:
        for arch in profile.get("architectures", []):
            token = lib.seccomp_arch_resolve_name(arch.removeprefix("SCMP_ARCH_").lower().encode())
            if token and lib.seccomp_arch_add(ctx, token) not in (0, -17):  # -EEXIST: the native one
                raise OSError(0, f"libseccomp refused architecture {arch}")
        for rule in profile["syscalls"]:
            action = _action(rule, errno_default)
            args = rule.get("args") or []
            array = (_ArgCmp * max(len(args), 1))(
                *(_ArgCmp(a["index"], _CMP[a["op"]], a["value"], a.get("valueTwo", 0)) for a in args)
            )
            for name in rule["names"]:
                nr = lib.seccomp_syscall_resolve_name(name.encode())
                if nr == _NR_ERROR:
                    continue  # not a system call of this libseccomp's architectures
                if (result := lib.seccomp_rule_add_array(ctx, action, nr, len(args), array)) != 0:
                    raise OSError(-result, f"libseccomp refused the rule for {name}: {os.strerror(-result)}")
        fd = os.memfd_create("edgefc-seccomp")
        try:
            if (result := lib.seccomp_export_bpf(ctx, fd)) != 0:
                raise OSError(-result, f"libseccomp could not export the filter: {os.strerror(-result)}")
            os.lseek(fd, 0, os.SEEK_SET)
            chunks = []
            while chunk := os.read(fd, 1 << 16):
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)
    finally:
        lib.seccomp_release(ctx)


class Filter:
    """A program from :func:`compile_filter`, ready to install: built before a fork, the child only calls prctl."""

    def __init__(self, program: bytes) -> None:
        self._buf = ctypes.create_string_buffer(program, len(program))
        self._prog = _SockFprog(len(program) // 8, ctypes.addressof(self._buf))
        self._libc = ctypes.CDLL(None, use_errno=True)

    def install(self) -> None:
        """Filter this thread's system calls from now on (needs ``no_new_privs`` or CAP_SYS_ADMIN). Raises OSError."""
        if self._libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(self._prog), 0, 0) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"installing the seccomp filter: {os.strerror(err)}")
