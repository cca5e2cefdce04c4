"""Training templates the Experiment stage instantiates: one folder each, with a ``train.py``."""
