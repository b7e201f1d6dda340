"""``python -m hrf_core``: the command-line interface (see :mod:`hrf_core.cli`)."""

import os
import sys

# Idle OpenMP threads sleep instead of spinning: on a shared 2-core CPU, spinning threads made UNet
# calls 2.6x slower (bench: 166 ms vs 63 ms per forward at batch 32). Must be set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from hrf_core.cli import main  # noqa: E402

sys.exit(main())
