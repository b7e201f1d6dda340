"""``python -m hrf_core``: the command-line interface (see :mod:`hrf_core.cli`)."""

import os
import sys

# Idle OpenMP threads sleep instead of spinning: on a shared CPU, spinning threads slow UNet calls down
# (bench/README.md, "Figures"). Must be set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from hrf_core.cli import main  # noqa: E402

sys.exit(main())
