"""HRF Explorer core library: DDPO, HRF and HRF-D fine-tuning of diffusers DDPMs.

This package never imports gradio; the UI lives in ``app.py``.
"""

from pathlib import Path

__version__ = "0.1.0"

#: Repository root (the folder holding ``checkpoints/``).
REPO_ROOT = Path(__file__).resolve().parent.parent
#: Models that ship with the repository.
CHECKPOINTS_DIR = REPO_ROOT / "checkpoints"

# The settings register their check with the config when they load (TrainConfig.validate runs it): loaded here, with
# the package, so a config always validates, whichever module a caller imported first.
from hrf_core import settings  # noqa: E402, F401
