#!/usr/bin/env bash
# Creates .venv (if missing) and installs next_jax with its pinned dependencies into it.
# Idempotent and quick when nothing changed: a stamp records what was installed.
#   launch/setup_env.sh            core + test extras (what the README commands need)
#   NEXT_JAX_ACCELERATOR=tpu ...   installs jax[tpu] instead of the CPU build (TPU VM workers)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
python="${PYTHON:-python3}"
if [[ ! -x .venv/bin/python ]]; then
  echo "setup_env: creating .venv with $($python --version)" >&2
  "$python" -m venv .venv
fi
stamp=".venv/.next_jax_installed"
want="$(cat setup.py requirements.txt requirements-test.txt | sha256sum | cut -d' ' -f1)-${NEXT_JAX_ACCELERATOR:-cpu}"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  exit 0
fi
echo "setup_env: installing next_jax and its pinned dependencies into .venv (first time: a few minutes)" >&2
pip=(.venv/bin/python -m pip install --disable-pip-version-check -q)
"${pip[@]}" -r requirements.txt -r requirements-test.txt
if [[ "${NEXT_JAX_ACCELERATOR:-cpu}" == tpu ]]; then
  "${pip[@]}" "jax[tpu]==0.10.2" -f https://storage.googleapis.com/jax-releases/libtpu_releases.html
fi
"${pip[@]}" --no-deps -e .
echo "$want" > "$stamp"
