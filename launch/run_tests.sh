#!/usr/bin/env bash
# Runs the test suite, after setting up .venv if needed. Extra arguments go to pytest
# (e.g. `launch/run_tests.sh -m heavy` for the subprocess and training tests, `-m slow` for the
# slow ones, `-m ""` for everything).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$here/launch/setup_env.sh"
cd "$here"
exec .venv/bin/python -m pytest "$@"
