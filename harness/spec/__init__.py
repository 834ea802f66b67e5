"""What is measured: problems, suites, the attention arithmetic and published claims. Plain data, no torch."""
