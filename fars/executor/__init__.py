"""Where training jobs run: a local pool of whole GPUs (or CPU slots), launchers, and SLURM via submitit.

``pool`` hands out slots without ever double-booking one; ``launch`` turns a job into a plain,
torchrun or DeepSpeed-launcher command and runs it with a time limit and process-group clean-up;
``slurm`` submits the same job through submitit (multi-node included).
"""

from fars.executor.launch import JobFailed, JobTimeout, build_command, job_env, run_command
from fars.executor.pool import Lease, PoolError, SlotBook, SlotPool

__all__ = [
    "JobFailed",
    "JobTimeout",
    "Lease",
    "PoolError",
    "SlotBook",
    "SlotPool",
    "build_command",
    "job_env",
    "run_command",
]
