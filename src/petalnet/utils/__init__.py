"""Helpers with no petalnet knowledge: atomic file writes, progress bars, CPU cores, plots, typed settings."""
