#!/usr/bin/env bash
# The whole test suite: installs hrnn with every extra into .venv, then runs the Rust and Python
# lints, the Rust tests, the type checks and pytest (benchmarks included, with timing disabled).
# Usage: bash scripts/test.sh        (the same command CI runs, through .ci/run)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never PIP_DISABLE_PIP_VERSION_CHECK=1

step() { printf '\n== %s\n' "$*"; }

step "python environment (.venv) with hrnn[all]"
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# A real wheel, installed as a user gets it (not an editable install).
rm -rf dist
.venv/bin/python -m pip install -q 'maturin>=1.9,<2'
.venv/bin/maturin build --release --quiet --out dist
.venv/bin/python -m pip install -q --force-reinstall --no-deps dist/hrnn-*.whl
.venv/bin/python -m pip install -q "$(ls dist/hrnn-*.whl)[train,hpo,plot,pandas,test,bench,dev]"

step "rust: fmt, clippy, tests"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo test -p hrnn-core --quiet

step "python: ruff, mypy, stubtest"
.venv/bin/ruff check python tests benches
.venv/bin/ruff format --check python tests benches
.venv/bin/mypy
.venv/bin/python -m mypy.stubtest hrnn._hrnn

step "pytest"
# Run from tests' parent with the installed wheel (python/ is not on sys.path).
.venv/bin/python -m pytest -q -p no:cacheprovider
