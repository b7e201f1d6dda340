"""The evaluation used everywhere (trainer, app, benchmarks, experiments): metrics of a sample set.

The embeddings depend on the model: the embedded digits model is measured on the digits
classifier's features (Vendi, Inception Score, class coverage and entropy) and on pixels;
other models on pixels only unless a feature extractor is requested.
"""

from __future__ import annotations

import torch

from hrf_core.metrics import evaluate_samples


class Evaluator:
    """Callable ``(images [-1,1] (N,C,H,W), rewards (N,)) -> dict`` of named metrics."""

    def __init__(self, model_name: str, device: torch.device | str = "cpu", num_samples: int | None = None):
        self.model_name = model_name
        self.device = torch.device(device)
        self.classifier = None
        if model_name == "digits16":
            from hrf_core.digits import load_digit_classifier

            self.classifier = load_digit_classifier(device=self.device)

    @property
    def embeddings(self) -> tuple[str, ...]:
        return ("pixel", "classifier") if self.classifier is not None else ("pixel",)

    def __call__(self, images: torch.Tensor, rewards: torch.Tensor) -> dict:
        metrics = evaluate_samples(images, rewards, embeddings=self.embeddings, classifier=self.classifier)
        n = images.shape[0]
        metrics["eval_samples"] = n
        metrics["vendi_pixel"] = metrics[f"vendi_pixel@{n}"]  # the run store's headline key
        return metrics
