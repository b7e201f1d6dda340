"""What every ``python -m hrf_core`` command line shares: a parser whose errors are one clear line, exit code 2."""

from __future__ import annotations

import argparse

EXIT_USAGE = 2


class Parser(argparse.ArgumentParser):
    """An ``argparse`` parser that reports bad input as ``error: ...`` on one line and exits with
    :data:`EXIT_USAGE`."""

    def error(self, message: str):  # one clear line, exit 2
        self.exit(EXIT_USAGE, f"error: {message}\n")
