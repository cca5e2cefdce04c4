"""Subcommands of ``fars`` other than ``run``; each module exposes ``main(args: list[str]) -> int``."""
