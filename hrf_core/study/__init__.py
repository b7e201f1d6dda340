"""Studies over many runs: the frontier experiment and its report, parallel units, the shipped examples, the
locality study and the check of the report's prose."""
