"""Data: the embedded synthetic dataset, sources, the grain pipeline and augmentations."""
