"""Datasets: imagefolder loading, subject-grouped splits, built-in datasets, memorization sets."""
