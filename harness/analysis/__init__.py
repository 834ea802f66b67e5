"""Reading stored results: statistics, run comparison, verdicts, the regression gate and the claims audit."""
