"""The evaluation used everywhere (trainer, app, benchmarks, experiments): metrics of a sample set.

The embeddings depend on the images: 1x16x16 digits are measured on the digits classifier's
features (Vendi, Inception Score, class coverage and entropy) and on pixels; other models on
pixels only.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from hrf_core.metrics import evaluate_samples

#: The image shape the digits classifier reads: any model producing it gets classifier metrics.
DIGITS_SHAPE = (1, 16, 16)


class Evaluator:
    """Callable ``(images [-1,1] (N,C,H,W), rewards (N,)) -> dict`` of named metrics.

    Models whose samples are 1x16x16 (the embedded digits model and its fine-tuned checkpoints)
    are also measured on the digits classifier: Vendi on its features, IS, class coverage/entropy.
    """

    def __init__(self, sample_shape: tuple[int, int, int], device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.classifier = None
        if tuple(sample_shape) == DIGITS_SHAPE:
            from hrf_core.digits import load_digit_classifier

            self.classifier = load_digit_classifier(device=self.device)

    @property
    def embeddings(self) -> tuple[str, ...]:
        return ("pixel", "classifier") if self.classifier is not None else ("pixel",)

    def __call__(self, images: torch.Tensor, rewards: torch.Tensor, arrays: dict | None = None) -> dict:
        """Named metrics; ``arrays`` (a dict) receives the per-sample features, probabilities and rewards."""
        metrics = evaluate_samples(images, rewards, embeddings=self.embeddings, classifier=self.classifier,
                                   arrays=arrays)
        n = images.shape[0]
        metrics["eval_samples"] = n
        metrics["vendi_pixel"] = metrics[f"vendi_pixel@{n}"]  # the run store's headline key
        return metrics


BASE_METRICS_FILE = "base_metrics.json"


def eval_settings_key(reward: str, num_steps: int, eta: float, samples: int, seed: int) -> str:
    """The key of one base-model evaluation in ``base_metrics.json``."""
    return f"{reward}|K={num_steps}|eta={eta:g}|n={samples}|seed={seed}"


def load_base_metrics(model_folder: Path) -> dict:
    """Saved base-model evaluations beside a model's weights ({key: metrics}); {} when absent."""
    try:
        return json.loads((Path(model_folder) / BASE_METRICS_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def write_base_metrics(model: str, rewards: list[str], num_steps: int, eta: float, samples: int, seed: int,
                       device: str = "cpu") -> Path:
    """Evaluate the base model once per reward (one shared sample set) and save beside its weights."""
    from hrf_core.models import load_base_model
    from hrf_core.rewards import make_reward
    from hrf_core.runs import write_json
    from hrf_core.sampling import sample_from

    base = load_base_model(model, device)
    images = sample_from(base, samples, seed, num_steps=num_steps, eta=eta)
    evaluator = Evaluator(base.sample_shape, base.device)
    saved = load_base_metrics(base.folder)
    for reward in rewards:
        metrics = evaluator(images, make_reward(reward)(images).float().cpu())
        saved[eval_settings_key(reward, num_steps, eta, samples, seed)] = metrics
    path = base.folder / BASE_METRICS_FILE
    write_json(path, saved)
    return path
