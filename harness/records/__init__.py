"""The records a run produces (one Result per backend, problem and timing mode)."""
