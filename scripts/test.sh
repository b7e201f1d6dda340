#!/usr/bin/env bash
# The one test entry point: the README and .ci/run both call this.
# Creates (or reuses) .venv, installs the test extras, runs ruff and pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 GRADIO_ANALYTICS_ENABLED=False
export PYTHONUNBUFFERED=1
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -r requirements-test.txt
.venv/bin/python -m pip check
.venv/bin/python -m ruff check .
set +e
# two workers, a file each at a time (a module's fixtures, such as its served app or Ray cluster, start once):
# most tests run one torch thread or wait on a server or a browser, so the suite takes about half the time on a
# 2-core machine; add -n 0 to run it in one process
.venv/bin/python -m pytest -n 2 --dist loadfile --durations=15 "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: treating as a failure" >&2
  exit 1
fi
exit "$rc"
