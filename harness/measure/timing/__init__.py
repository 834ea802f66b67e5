"""Measuring time: L2 flushing, the sampling loop, and when to stop."""
