"""Around the measurements: the kernel build, the profilers, cross-checks, the wheelhouse and diagnostics."""
