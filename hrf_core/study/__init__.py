"""Studies over many runs: the experiments (their arms, units and reports), the matched-reward frontier and
DDPO's reference curve, where a reward is decided (locality) and its study, the base model's saved evaluations,
the embedded digits models' quality and cards, parallel units, the shipped examples and the check of the
report's prose."""
