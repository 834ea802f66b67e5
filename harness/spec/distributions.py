"""The names of the input distributions a suite may ask for, as plain data (the suite is read without
torch; the tensors themselves are made in harness.measure.inputs)."""

DISTRIBUTIONS = ("normal", "uniform", "large_logits", "large")
