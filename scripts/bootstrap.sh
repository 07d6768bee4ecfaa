#!/usr/bin/env bash
# Create (or reuse) the project environment at .venv and install vitaltwin into it.
#
# The environment is large (torch), so it lives in a cache outside the clone, keyed by the
# hash of pyproject.toml, and .venv is a link to it: a fresh clone with unchanged dependencies
# reuses it in seconds; a dependency change builds a new one; a missing cache is rebuilt from
# the registries. Set VITALTWIN_VENV_IN_TREE=1 to build a real .venv inside the clone instead.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
cache="${VITALTWIN_CACHE:-$HOME/.cache/vitaltwin}"
python="${PYTHON:-}"
if [ -z "$python" ]; then
  for candidate in python3.12 python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
      "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      python="$candidate"
      break
    fi
  done
fi
[ -n "$python" ] || { echo "bootstrap: Python >= 3.11 is required" >&2; exit 1; }

deps_hash="$(cat pyproject.toml | sha256sum | cut -c1-16)"
pyver="$("$python" -c 'import sys; print(f"{sys.version_info[0]}{sys.version_info[1]}")')"

# A PyPI torch wheel for Linux is a multi-GB CUDA build; prefer a local CPU build if one exists.
find_links=()
if [ -d /opt/wheels ] && ls /opt/wheels/torch-*.whl >/dev/null 2>&1; then
  find_links=(--find-links /opt/wheels)
fi

env_ok() {
  [ -x "$1/bin/python" ] && "$1/bin/python" -c 'import sys' 2>/dev/null &&
    [ "$(cat "$1/.vitaltwin-deps" 2>/dev/null)" = "$deps_hash" ]
}

if [ "${VITALTWIN_VENV_IN_TREE:-0}" = "1" ]; then
  target="$repo/.venv"
  [ -L .venv ] && rm .venv
else
  target="$cache/venv-py$pyver-$deps_hash"
  if [ -e .venv ] && [ ! -L .venv ]; then
    # A real .venv made by hand or an older bootstrap: use it if current, else move aside.
    if env_ok .venv; then target="$repo/.venv"; else rm -rf .venv; fi
  fi
fi

if ! env_ok "$target"; then
  echo "bootstrap: creating environment $target (first run downloads torch; a few minutes)" >&2
  # The deps stamp is written last, so an interrupted build is detected and started over.
  rm -rf "$target"
  mkdir -p "$(dirname "$target")"
  "$python" -m venv "$target"
  "$target/bin/python" -m pip install --quiet --upgrade pip
  "$target/bin/python" -m pip install --quiet "${find_links[@]}" -e ".[dev]"
  "$target/bin/python" -m pip check
  echo "$repo" >"$target/.vitaltwin-repo"
  echo "$deps_hash" >"$target/.vitaltwin-deps"
fi

if [ "$target" != "$repo/.venv" ]; then
  ln -sfn "$target" .venv
fi

# The editable install points at one clone; re-point it when this clone is a different one.
if [ "$(cat .venv/.vitaltwin-repo 2>/dev/null)" != "$repo" ]; then
  .venv/bin/python -m pip install --quiet --no-deps --no-build-isolation -e . >/dev/null
  echo "$repo" >.venv/.vitaltwin-repo
fi
