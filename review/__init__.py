"""The ICLR-style reviewer, importable without the rest of the factory."""
