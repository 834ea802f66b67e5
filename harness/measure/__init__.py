"""Measuring one cell in a worker: inputs, correctness, guards, timing and the machine's state."""
