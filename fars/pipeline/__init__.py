"""Running one run: preflight checks, the project queue, the live status board and the tracker (W&B)."""
