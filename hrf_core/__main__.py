"""``python -m hrf_core``: the command-line interface (see :mod:`hrf_core.cli`)."""

import sys

from hrf_core.cli import main

sys.exit(main())
