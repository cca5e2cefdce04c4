"""Shell completion of ``fars``: command names, then Hydra's own completion of ``fars run``'s overrides.

``eval "$(fars run -sc install=bash)"`` (or ``fars -sc install=bash``; also zsh and fish) installs Hydra's
script for the ``fars`` command. On TAB it calls ``fars -sc query=SHELL`` with the line typed so far in
``COMP_LINE``; Hydra reads that line as ``APP OVERRIDES...``, so the word ``run`` is taken out first.
"""

from __future__ import annotations

import os
import sys

from fars.cli import COMMANDS, _hydra_entry, run_command

COMMAND_NAMES = ("run", *COMMANDS)


def complete(args: list[str]) -> int:
    """Answer ``fars -sc ARGS``: a completion query (``query=bash``), else an install or uninstall of the script."""
    if not any(a.startswith("query=") for a in args):  # `fars -sc install=bash`: the same as `fars run -sc ...`
        return run_command(["-sc", *args])
    line = os.environ.get("COMP_LINE", "")
    words = line.split()
    if len(words) < 2 or (len(words) == 2 and not line.endswith(" ")):  # still typing the command's name
        prefix = words[1] if len(words) == 2 else ""
        print(" ".join(name for name in COMMAND_NAMES if name.startswith(prefix)))
        return 0
    if words[1] != "run":
        return 0  # the other commands take files and KEY=VALUE of their own: the shell's default completion
    head, _, tail = line.partition(" run")
    os.environ["COMP_LINE"] = head + tail
    sys.argv = ["fars", "-sc", *args]
    _hydra_entry()
    return 0
