"""Build hook: ship conf/ (the Hydra configs) inside the package as fars/conf, so a wheel runs anywhere.

The repository keeps conf/ at its top level, where users read and edit it; ``fars.commands.configured``
finds it there in a checkout and at fars/conf in an installed wheel. Everything else is in pyproject.toml.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildWithConf(build_py):
    """build_py that also copies conf/ into the built package (not for editable installs: they read conf/)."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        source = Path(__file__).resolve().parent / "conf"
        target = Path(self.build_lib) / "fars" / "conf"
        shutil.copytree(source, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))


setup(cmdclass={"build_py": BuildWithConf})
