"""Hydra launcher plugin `vectorized` (psmexp.vectorized.launcher); selected by psmexp's `launcher=vectorized`."""
