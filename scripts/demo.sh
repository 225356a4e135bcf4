#!/usr/bin/env bash
# The main job on its embedded default: installs hrnn with training support into .venv and runs
# `hrnn demo` (synthetic log → train → evaluate against popularity → real-time updates).
# Usage: bash scripts/demo.sh [hrnn demo flags]
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q '.[train]'
exec .venv/bin/hrnn demo "$@"
