"""The sandbox for model-written code: no network, no secrets, read-only host, hard limits.

``run_sandboxed(argv, workdir, limits, gpus=...)`` runs one program and returns a ``SandboxResult``;
``describe_isolation()`` says which isolation this machine gives (bubblewrap, namespaces, or rlimits
only), for the run's start-up line. ``read_sandbox_file`` reads what the program wrote without
following links it may have planted.
"""

from fars.sandbox.backends import Isolation, SandboxUnavailable, describe_isolation, probe
from fars.sandbox.environment import looks_secret, sandbox_env
from fars.sandbox.limits import SandboxLimits
from fars.sandbox.runner import (
    SandboxError,
    SandboxResult,
    folder_bytes,
    read_sandbox_file,
    run_sandboxed,
    run_sandboxed_async,
)

__all__ = [
    "Isolation",
    "SandboxError",
    "SandboxLimits",
    "SandboxResult",
    "SandboxUnavailable",
    "describe_isolation",
    "folder_bytes",
    "looks_secret",
    "probe",
    "read_sandbox_file",
    "run_sandboxed",
    "run_sandboxed_async",
    "sandbox_env",
]
