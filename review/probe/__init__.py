"""The robustness probe: papers with planted flaws, reviewed beside their originals."""
