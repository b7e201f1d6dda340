"""The base model's evaluations, saved beside its weights (``base_metrics.json``: {settings key: metrics}), so
the page can show where a run starts without sampling the base model again (``python -m hrf_core base-metrics``).
"""

from __future__ import annotations

import json
from pathlib import Path

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
    from hrf_core.measure.evaluation import Evaluator
    from hrf_core.models.registry import load_base_model
    from hrf_core.rewards.registry import make_reward
    from hrf_core.rl.sampling import sample_from
    from hrf_core.store.runs import write_json

    base = load_base_model(model, device)
    images = sample_from(base, samples, seed, num_steps=num_steps, eta=eta)
    evaluator = Evaluator(base.image_shape, base.device)
    saved = load_base_metrics(base.folder)
    for reward in rewards:
        metrics = evaluator(images, make_reward(reward)(images).float().cpu())
        saved[eval_settings_key(reward, num_steps, eta, samples, seed)] = metrics
    path = base.folder / BASE_METRICS_FILE
    write_json(path, saved)
    return path
