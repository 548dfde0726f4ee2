#!/usr/bin/env bash
# Builds the khosim CLI (default preset) and runs it. With no arguments it
# runs `khosim run`: the built-in default scenario. Any arguments are passed
# to khosim instead (e.g. `scripts/run-khosim.sh --help`).
# Setup output goes to stderr, so stdout is khosim's alone.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

{
  echo "==> Installing dependencies (scripts/install-deps.sh)"
  scripts/install-deps.sh
  echo "==> Configuring (cmake --preset default)"
  cmake --preset default
  echo "==> Building khosim (cmake --build --preset default --target khosim_cli)"
  cmake --build --preset default --target khosim_cli
} >&2

binary=""
for candidate in build/default/sim/cli/khosim build/default/sim/khosim; do
  if [[ -x "$candidate" ]]; then
    binary="$candidate"
    break
  fi
done
if [[ -z "$binary" ]]; then
  echo "run-khosim: the build produced no khosim binary under build/default/sim" >&2
  exit 1
fi

if [[ $# -eq 0 ]]; then
  set -- run
fi
echo "==> Running $binary $*" >&2
exec "$binary" "$@"
