#!/usr/bin/env bash
# Fill .whl/ (gitignored) with the wheels of bench/device-requirements.txt: what bench/gpu_check.py needs that the
# GPU machine's image lacks, at the versions this checkout's .venv resolved, and nothing else (no dependencies:
# the image has them): 8.4 MiB, diffusers 6.1 of it; vendi-score has no wheel on PyPI and is
# built here from its sdist. On the GPU machine (no network), from the repository root:
#   python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site -f .whl -r bench/device-requirements.txt
#   PYTHONPATH=/tmp/site python3 bench/gpu_check.py --budget 540
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
REQUIREMENTS=bench/device-requirements.txt
# the pins must be what the venv runs (what the tests here passed with)
"$PYTHON" - "$REQUIREMENTS" <<'PY'
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

lines = [line.split("#")[0].strip() for line in Path(sys.argv[1]).read_text().splitlines()]
bad = []
for name, pinned in (line.split("==") for line in lines if line):
    try:
        installed = version(name)
    except PackageNotFoundError:
        installed = None
    if installed != pinned:
        bad.append(f"{name}: pinned {pinned}, the venv has {installed}")
if bad:
    sys.exit(f"{sys.argv[1]} does not match the venv ({'; '.join(bad)}): update the pins")
PY
rm -rf .whl
mkdir -p .whl
"$PYTHON" -m pip wheel -q --disable-pip-version-check --no-deps -w .whl -r "$REQUIREMENTS"
ls -1 .whl
du -sh .whl
