"""Measurement: embeddings, Vendi and Inception Score, evaluation of a run, the projection, matched-reward
comparison (the frontier), DDPO's reference curve and where a reward is decided (locality)."""
