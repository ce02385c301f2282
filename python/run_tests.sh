#!/usr/bin/env bash
# The Python client's test command: a venv in target/python-venv (made once, reused), the
# package installed from this directory with its test extras, the Rust test server built,
# then pytest against a private redis-server and that server. Exits non-zero on failure.
#
#   python/run_tests.sh [pytest arguments...]
#
# Needs python3 (3.10+), pip and redis-server; CARGO_TARGET_DIR is honoured.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
target=${CARGO_TARGET_DIR:-$root/target}
venv=$target/python-venv

if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
# Reinstalled only when the package's metadata changed (the install is editable), or when
# the editable install points at another checkout (a venv shared between worktrees).
stamp=$venv/.conclib-installed
installed=$("$venv/bin/python" -c 'import conclib, os; print(os.path.realpath(conclib.__file__))' 2>/dev/null || true)
if [ ! -f "$stamp" ] || [ python/pyproject.toml -nt "$stamp" ] \
    || [ "$installed" != "$(realpath python/src/conclib/__init__.py)" ]; then
  "$venv/bin/python" -m pip install -q --upgrade pip
  # The distribution was named `conclib` before `conclib-actors`: a venv made then holds
  # both (two editable installs of one import name), and src/ its metadata.
  "$venv/bin/python" -m pip uninstall -q -y conclib 2>/dev/null || true
  rm -rf python/src/conclib.egg-info
  "$venv/bin/python" -m pip install -q -e 'python[test]'
  touch "$stamp"
fi

cargo build -q -p conclib-pyserver

cd python
exec "$venv/bin/python" -m pytest "$@"
