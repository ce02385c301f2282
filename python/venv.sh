#!/usr/bin/env bash
# Makes (once) and updates the Python virtual environment the tests and the demo use:
# target/python-venv (under CARGO_TARGET_DIR if set), the package installed editable from
# this directory with its test extras (pytest, FastAPI, uvicorn, ...). Prints its python.
#
#   python/venv.sh
#
# Needs python3 (3.10+) with venv and pip. Run by python/run_tests.sh and `cargo xtask demo`.
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
  "$venv/bin/python" -m pip install -q --upgrade pip >&2
  # The distribution was named `conclib` before `conclib-actors`: a venv made then holds
  # both (two editable installs of one import name), and src/ its metadata.
  "$venv/bin/python" -m pip uninstall -q -y conclib >&2 2>/dev/null || true
  rm -rf python/src/conclib.egg-info
  "$venv/bin/python" -m pip install -q -e 'python[test]' >&2
  touch "$stamp"
fi
echo "$venv/bin/python"
