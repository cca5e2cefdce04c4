"""A template's extension point: the method module a plan's code defines (``--method FILE``), imported here.

Standard library only: every template's ``train.py`` imports it, the torch-free ``llm_judge`` included.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType


def load_method(path: Path | None) -> ModuleType | None:
    """Import a method module from a file (the functions of the template's extension points), or None without one."""
    if path is None:
        return None
    spec = importlib.util.spec_from_file_location("fars_method", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"--method {path}: not a Python file that can be imported")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
