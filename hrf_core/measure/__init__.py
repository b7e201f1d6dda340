"""Measurement, pure metrics of sample sets: embeddings, Vendi and Inception Score, the calibrated measure and
its suite, the diversity bonus, a sample set's evaluation, the headline metric and the projection. It samples
nothing; the studies that sample (the frontier, DDPO's reference curve, the locality profile) are in ``study``."""
