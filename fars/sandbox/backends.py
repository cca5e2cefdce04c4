"""Which isolation this machine allows, probed once, and the command line that applies it.

Three backends, strongest first:

* ``bwrap`` (bubblewrap): new mount, PID, network, IPC and UTS namespaces; only the system folders,
  the Python installation and named read-only paths are visible, read-only; the work folder is the one
  writable place (plus a small, capped, private ``/tmp``); the network has only a loopback device; only the
  allocated GPU device files exist.
* ``unshare`` (util-linux): new PID, network, IPC and UTS namespaces; the file system is the host's,
  so writes are confined by file ownership only.
* ``rlimits``: resource limits and a scrubbed environment, nothing more; the network is NOT isolated.

Run as root, the harness also gives each sandbox a user id of its own (dropping every capability),
so the process limit counts only the sandbox's processes and the host's files are read-only to it.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fars.sandbox.memory import delegated_cgroup

# system folders a program needs; everything else on the host is invisible under bwrap
_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/opt/conda")
_ETC_FILES = (
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/alternatives",
    "/etc/localtime",
    "/etc/passwd",
    "/etc/group",
    "/etc/nsswitch.conf",
    "/etc/hosts",
    "/etc/os-release",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/mime.types",
)
_GPU_SHARED_DEVICES = ("/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools", "/dev/nvidia-modeset")
BACKENDS = ("bwrap", "unshare", "rlimits")


class SandboxUnavailable(RuntimeError):
    """The configured isolation cannot be had on this machine."""


@dataclass(frozen=True)
class Isolation:
    """What the chosen backend guarantees here; ``describe()`` is the run's start-up line."""

    backend: str
    network_isolated: bool
    filesystem_isolated: bool  # host hidden/read-only, writes only in the work folder
    pid_namespace: bool
    own_user: bool  # runs under a user id of its own, without capabilities
    gpu_devices_hidden: bool  # unallocated GPU device files are absent (not just CUDA_VISIBLE_DEVICES)
    notes: tuple[str, ...] = field(default_factory=tuple)
    memory_cgroup: bool = False  # a delegated cgroup v2 memory controller bounds a job's total in the kernel

    def describe(self) -> str:
        """One line saying which isolation is in force, and loudly what is not."""
        parts = [f"sandbox: {self.backend}"]
        parts.append("network cut" if self.network_isolated else "NETWORK NOT ISOLATED")
        parts.append(
            "host read-only, writes only in its folder"
            if self.filesystem_isolated
            else "FILE SYSTEM SHARED (writes confined by ownership only)"
        )
        parts.append("own PID namespace" if self.pid_namespace else "shares the PID space")
        parts.append("own unprivileged user" if self.own_user else "runs as the harness's user")
        parts.append("secret-free environment, limits on wall/CPU/memory/processes/file size/disk/open files")
        parts.append(self.describe_memory())
        return " | ".join(parts + list(self.notes))

    def describe_memory(self) -> str:
        """What bounds ``sandbox.memory_mb`` here: what the kernel holds, and what only the watchdog does."""
        each = "memory: each process bounded by the kernel (RLIMIT_AS; not GPU jobs)"
        if self.memory_cgroup:
            return f"{each}, all processes together by a cgroup's memory.max"
        return (
            f"{each}; ALL PROCESSES TOGETHER, AND GPU JOBS, BY THE WATCHDOG ONLY (no delegated cgroup v2): it "
            "looks every 5-250 ms, so a fast burst can pass the limit before it kills"
        )


def is_root() -> bool:
    """Whether the harness runs as root (and so can give the sandbox a user id of its own)."""
    return os.geteuid() == 0


def _probe(argv: list[str]) -> bool:
    try:
        done = subprocess.run(
            argv, capture_output=True, timeout=20, stdin=subprocess.DEVNULL, env={"PATH": "/usr/bin:/bin"}
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _bwrap_works() -> bool:
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return False
    drop = _drop_privileges(65534, 65534) if is_root() else []
    if is_root() and not drop:
        return False
    ns = ["--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts"]
    if not is_root():
        ns.append("--unshare-user")
    return _probe(
        [bwrap, *ns, "--die-with-parent", *_system_binds(), "--proc", "/proc", "--dev", "/dev", "--", *drop, "true"]
    )


def _unshare_works() -> bool:
    unshare = shutil.which("unshare")
    if unshare is None:
        return False
    return _probe([*_unshare_prefix(unshare), "true"])


def _unshare_prefix(unshare: str) -> list[str]:
    user = [] if is_root() else ["--user", "--map-current-user"]
    return [unshare, *user, "--net", "--pid", "--fork", "--kill-child", "--mount-proc", "--ipc", "--uts", "--"]


@functools.cache
def probe(wanted: str = "auto") -> Isolation:
    """The isolation to use: ``wanted`` if it works here, else (for ``auto``) the strongest that does."""
    if wanted not in ("auto", *BACKENDS):
        raise SandboxUnavailable(f"unknown sandbox backend {wanted!r}; choose auto, {', '.join(BACKENDS)}")
    root = is_root()
    own_user = root and shutil.which("setpriv") is not None
    notes: list[str] = []
    if root and not own_user:
        notes.append("WARNING: util-linux setpriv missing, code runs as root")
    order = BACKENDS if wanted == "auto" else (wanted,)
    cgroup = delegated_cgroup() is not None
    for backend in order:
        if backend == "bwrap" and _bwrap_works():
            return Isolation("bwrap", True, True, True, own_user or not root, True, tuple(notes), cgroup)
        if backend == "unshare" and _unshare_works():
            extra = (*notes, "GPU visibility by CUDA_VISIBLE_DEVICES only")
            return Isolation("unshare", True, False, True, own_user, False, extra, cgroup)
        if backend == "rlimits":
            extra = (*notes, "install bubblewrap (apt-get install bubblewrap) for real isolation")
            return Isolation("rlimits", False, False, False, own_user, False, extra, cgroup)
        if wanted != "auto":
            raise SandboxUnavailable(
                f"sandbox backend {backend!r} does not work on this machine "
                f"({'bwrap missing or user namespaces disabled' if backend == 'bwrap' else 'unshare refused'}); "
                "set sandbox.backend=auto to use the strongest one that does"
            )
    raise AssertionError("unreachable: rlimits always works")


def describe_isolation(wanted: str = "auto") -> str:
    """The start-up line: which isolation model-written code runs under on this machine."""
    try:
        return probe(wanted).describe()
    except SandboxUnavailable as exc:
        return f"sandbox: UNAVAILABLE ({exc})"


def _system_binds() -> list[str]:
    args: list[str] = []
    for path in _SYSTEM_DIRS:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    for path in _ETC_FILES:
        if os.path.exists(path):
            args += ["--ro-bind", path, path]
    return args


def _open_parents(paths: Sequence[str]) -> list[str]:
    """bwrap arguments creating every parent folder of ``paths`` (outside the system folders) as 0755."""
    parents: list[str] = []
    for path in paths:
        for parent in reversed(Path(path).parents):
            text = str(parent)
            if text == "/" or text in parents or any(text == s or text.startswith(s + "/") for s in _SYSTEM_DIRS):
                continue
            if text == "/tmp":
                continue  # the sandbox's own tmpfs
            parents.append(text)
    return [arg for parent in parents for arg in ("--perms", "0755", "--dir", parent)]


def python_paths() -> list[str]:
    """The folders of the running Python (installation and virtual environment)."""
    paths = {sys.base_prefix, sys.prefix, str(Path(sys.executable).resolve().parent.parent)}
    return sorted(p for p in paths if p and not any(p.startswith(s + "/") or p == s for s in _SYSTEM_DIRS))


def _drop_privileges(uid: int, gid: int) -> list[str]:
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return []
    return [
        setpriv,
        f"--reuid={uid}",
        f"--regid={gid}",
        "--clear-groups",
        "--inh-caps=-all",
        "--bounding-set=-all",
        "--no-new-privs",
        "--",
    ]


def wrap_command(
    isolation: Isolation,
    argv: Sequence[str],
    workdir: Path,
    *,
    uid: int | None,
    readable: Sequence[str] = (),
    gpus: Sequence[int] = (),
    tmp_mb: int = 64,
) -> list[str]:
    """The full command line that runs ``argv`` under ``isolation`` (limits are applied around it)."""
    drop = _drop_privileges(uid, uid) if uid is not None else []
    if isolation.backend == "bwrap":
        bwrap = shutil.which("bwrap") or "bwrap"
        ns = ["--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
        if not is_root():
            ns += ["--unshare-user", "--disable-userns"]
        args = [bwrap, *ns, "--die-with-parent", "--new-session", "--hostname", "sandbox", *_system_binds()]
        mounts = [p for p in [*python_paths(), *readable] if os.path.exists(p)]
        # bwrap makes the parents of a mount point private (0700, root): open them so the sandbox user
        # can reach what is bound there (they are empty folders of the sandbox's own root, not the host's)
        # a small private /tmp (memory-backed, capped), mounted first so binds below /tmp stay visible;
        # TMPDIR points into the work folder
        args += ["--size", str(tmp_mb * 1024 * 1024), "--tmpfs", "/tmp"]
        args += _open_parents([*mounts, str(workdir)])
        for path in mounts:
            args += ["--ro-bind", path, path]
        args += ["--proc", "/proc", "--dev", "/dev"]
        for gpu in gpus:
            for device in (f"/dev/nvidia{gpu}",):
                if os.path.exists(device):
                    args += ["--dev-bind", device, device]
        if gpus:
            for device in _GPU_SHARED_DEVICES:
                if os.path.exists(device):
                    args += ["--dev-bind", device, device]
            if os.path.isdir("/proc/driver/nvidia"):
                args += ["--ro-bind", "/sys", "/sys"]
        args += ["--bind", str(workdir), str(workdir)]
        args += ["--chdir", str(workdir), "--"]
        return [*args, *drop, *argv]
    if isolation.backend == "unshare":
        # a shell between init and the program turns death by signal N into exit 128+N, which unshare
        # passes on (it cannot re-raise the signal on itself inside a PID namespace)
        keep_status = ["/bin/sh", "-c", '"$@"; exit $?', "sh"]
        return [*_unshare_prefix(shutil.which("unshare") or "unshare"), *drop, *keep_status, *argv]
    return [*drop, *argv]
