"""profiling.measure."""
