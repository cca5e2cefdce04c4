"""FARS: an automated research factory with its evaluation built in."""

__version__ = "0.1.0"
