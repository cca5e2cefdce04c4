"""Resource limits of one sandboxed program, and how they are applied (kernel rlimits).

Wall time, the folder's disk use, file count and depth, and the memory of all the program's processes
together are enforced by the harness's watchdog (memory also by a cgroup where one can be made); CPU
time, address space per process, processes, file size and open files by rlimits set before it starts. Soft and hard limits are
set together (CPU gets one second of grace for SIGXCPU), so the program cannot raise its own limits.
"""

from __future__ import annotations

import resource
from dataclasses import asdict, dataclass

from fars.config import SandboxConfig

_MB = 1024 * 1024


@dataclass(frozen=True)
class SandboxLimits:
    """What one sandboxed program may use; see ``SandboxConfig`` for the meaning of each field."""

    wall_s: float = 600.0
    cpu_s: int = 1200
    memory_mb: int = 8192
    processes: int = 256
    file_size_mb: int = 1024
    disk_mb: int = 4096
    open_files: int = 256
    files: int = 20_000
    folder_depth: int = 64

    @classmethod
    def from_config(cls, cfg: SandboxConfig) -> SandboxLimits:
        """The limits a ``sandbox`` config section sets."""
        return cls(
            wall_s=cfg.wall_s,
            cpu_s=cfg.cpu_s,
            memory_mb=cfg.memory_mb,
            processes=cfg.processes,
            file_size_mb=cfg.file_size_mb,
            disk_mb=cfg.disk_mb,
            open_files=cfg.open_files,
            files=cfg.files,
            folder_depth=cfg.folder_depth,
        )

    def as_dict(self) -> dict[str, float]:
        """The limits as plain numbers (for records)."""
        return asdict(self)

    def rlimits(self, existing_processes: int = 0, gpu: bool = False) -> dict[int, tuple[int, int]]:
        """The (soft, hard) rlimits to set, keyed by ``resource.RLIMIT_*``.

        ``existing_processes`` is added to the process limit when the program shares its user id with
        other processes (a non-root harness cannot give it a user id of its own). With ``gpu`` there
        is no address-space limit: the CUDA driver reserves virtual address space far beyond any RAM
        for unified addressing, and ``cuInit`` fails with "out of memory" under ``RLIMIT_AS``.
        """
        nproc = self.processes + existing_processes
        limits = {
            resource.RLIMIT_CPU: (self.cpu_s, self.cpu_s + 1),
            resource.RLIMIT_AS: (self.memory_mb * _MB, self.memory_mb * _MB),
            resource.RLIMIT_NPROC: (nproc, nproc),
            resource.RLIMIT_FSIZE: (self.file_size_mb * _MB, self.file_size_mb * _MB),
            resource.RLIMIT_NOFILE: (self.open_files, self.open_files),
            resource.RLIMIT_CORE: (0, 0),
        }
        if gpu:
            del limits[resource.RLIMIT_AS]
        return limits

    def prlimit_args(self, existing_processes: int = 0, gpu: bool = False) -> list[str]:
        """The same limits as arguments of util-linux ``prlimit``."""
        names = {
            resource.RLIMIT_CPU: "--cpu",
            resource.RLIMIT_AS: "--as",
            resource.RLIMIT_NPROC: "--nproc",
            resource.RLIMIT_FSIZE: "--fsize",
            resource.RLIMIT_NOFILE: "--nofile",
            resource.RLIMIT_CORE: "--core",
        }
        pairs = self.rlimits(existing_processes, gpu).items()
        return [f"{names[k]}={soft}:{hard}" for k, (soft, hard) in pairs]


def apply_rlimits(limits: dict[int, tuple[int, int]]) -> None:
    """Set rlimits in the current process (used in a child before exec when ``prlimit`` is missing)."""
    for kind, pair in limits.items():
        resource.setrlimit(kind, pair)
