#!/usr/bin/env bash
# Portable wheels: one abi3 wheel (CPython >= 3.11) tagged manylinux2014 (glibc >= 2.17), built
# with zig as the linker so it does not depend on this machine's newer glibc, plus the sdist.
# A plain `maturin build` here would tag the wheel manylinux_2_34 (this machine's glibc), which
# older systems refuse.
# Usage: bash scripts/build-wheels.sh [OUT_DIR]      (default: dist/)
#   PYTHON=/path/to/python  the environment that gets maturin and ziglang (default: .venv, created
#                           if missing). Needs a Rust toolchain (rustup.rs) on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1 CARGO_TERM_COLOR=never
out="$(realpath -m "${1:-dist}")"
if [ -z "${PYTHON:-}" ]; then
    [ -x .venv/bin/python ] || python3 -m venv .venv
    PYTHON=.venv/bin/python
fi
PYTHON="$(realpath -s "$PYTHON")"
bin="$(dirname "$PYTHON")"
# ziglang is zig itself, packaged on PyPI; maturin finds it through `python -m ziglang`
"$PYTHON" -m pip install -q 'maturin>=1.9,<2' 'ziglang>=0.13'
maturin="$bin/maturin"
[ -x "$maturin" ] || maturin="$(command -v maturin)"
export PATH="$bin:$PATH"
mkdir -p "$out"
"$maturin" build --release --zig --compatibility manylinux2014 --out "$out"
"$maturin" sdist --out "$out"
wheel="$(ls -t "$out"/hrnn-*-abi3-manylinux2014_*.whl 2>/dev/null | head -n 1 || true)"
if [ -z "$wheel" ]; then
    echo "build-wheels: no manylinux2014 abi3 wheel in $out:" >&2
    ls "$out" >&2
    exit 1
fi
echo "$wheel"
