"""profiling.dataset."""
