#!/usr/bin/env bash
# Runs the test suite, after setting up .venv if needed. Extra arguments go to pytest
# (e.g. `launch/run_tests.sh -m slow` for the slow tests, `-m ""` for everything).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$here/launch/setup_env.sh"
cd "$here"
exec .venv/bin/python -m pytest "$@"
