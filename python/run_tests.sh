#!/usr/bin/env bash
# The Python client's test command: a venv in target/python-venv (made once, reused, by
# python/venv.sh), the package installed from this directory with its test extras, the Rust
# test server built, then pytest against a private redis-server and that server. Exits
# non-zero on failure.
#
#   python/run_tests.sh [pytest arguments...]
#
# Needs python3 (3.10+), pip and redis-server; CARGO_TARGET_DIR is honoured.
set -euo pipefail
cd "$(dirname "$0")/.."
python=$(bash python/venv.sh)

cargo build -q -p conclib-pyserver

cd python
exec "$python" -m pytest "$@"
