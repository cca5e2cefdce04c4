"""The environment a sandboxed program sees: built from an allow-list, never from the harness's own.

Nothing is inherited by default. A few harmless variables (PATH, locale, thread counts) are copied
from the harness; the caller may add more, but any name or value that looks like a credential (API
keys, W&B keys, tokens, passwords) is dropped and reported, so a secret cannot leak by accident.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence

# copied from the harness when set there; nothing else is
INHERITED = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "PYTHONHASHSEED")
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"

_SECRET_NAME = re.compile(
    r"KEY|TOKEN|SECRET|PASSW|PASSPHRASE|CREDENTIAL|AUTH|COOKIE|SESSION|PRIVATE|NETRC|_PAT$",
    re.IGNORECASE,
)
# well-known credential shapes: OpenAI/Anthropic (sk-), GitHub, Hugging Face, Slack, AWS, W&B (40 hex)
_SECRET_VALUE = re.compile(
    r"^(sk-[A-Za-z0-9_\-]{8,}|gh[pousr]_[A-Za-z0-9]{16,}|github_pat_\w{16,}|hf_[A-Za-z0-9]{16,}|"
    r"xox[abprs]-[A-Za-z0-9\-]{8,}|AKIA[0-9A-Z]{16}|[0-9a-f]{40})$"
)


def looks_secret(name: str, value: str) -> bool:
    """Whether a variable's name or value looks like a credential."""
    return bool(_SECRET_NAME.search(name) or _SECRET_VALUE.match(value.strip()))


def sandbox_env(
    home: str,
    tmpdir: str,
    *,
    extra: Mapping[str, str] | None = None,
    gpus: Sequence[int] = (),
) -> tuple[dict[str, str], list[str]]:
    """The sandbox's environment and the names of variables refused as secrets.

    ``HOME`` and ``TMPDIR`` point into the sandbox's own folder; ``CUDA_VISIBLE_DEVICES`` names only
    the allocated GPUs (empty: none).
    """
    env = {name: os.environ[name] for name in INHERITED if name in os.environ}
    env.setdefault("PATH", DEFAULT_PATH)
    refused = [name for name in env if looks_secret(name, env[name]) and name != "PATH"]
    for name, value in (extra or {}).items():
        if looks_secret(name, value):
            refused.append(name)
        else:
            env[name] = value
    for name in refused:
        env.pop(name, None)
    gpu_list = ",".join(str(g) for g in gpus)
    env.update(
        HOME=home,
        TMPDIR=tmpdir,
        PYTHONUNBUFFERED="1",
        PYTHONDONTWRITEBYTECODE="1",
        CUDA_VISIBLE_DEVICES=gpu_list,
        NVIDIA_VISIBLE_DEVICES=gpu_list or "void",
    )
    return env, sorted(set(refused))
