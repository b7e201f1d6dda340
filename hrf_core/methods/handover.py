"""The training-free hand-over: the base model samples the steps before S, a DDPO checkpoint the rest.

Not trained: the experiment writes its runs (one row per S, from S = K down to 0) from a DDPO run's final
checkpoint (ImageReFL's "combined generation", arXiv 2505.22569), so one checkpoint traces a whole frontier.
"""

from __future__ import annotations

from hrf_core.methods.base import Method


class Handover(Method):
    name = "handover"
    label = "hand-over"
    help = "The base model for the steps before S, a DDPO checkpoint from S on: no training."
    color = "#ff7f0e"
    trainable = False
    windowed = False

    def schedule(self, config: dict) -> str:
        return "nothing: sampled with the base model before S and a DDPO checkpoint from S (hand-over)"
