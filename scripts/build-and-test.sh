#!/usr/bin/env bash
# The one command that builds khosim and runs its test suite: installs the
# Debian packages it needs (a no-op when present), then configures, builds
# and tests the `default` preset (RelWithDebInfo, -Werror). Tests labelled
# `slow` or `fuzz` are left to `ctest --preset slow` / the fuzz preset.
# Exits non-zero on the first failing step.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> %s\n' "$*"; }

step "Installing dependencies (scripts/install-deps.sh)"
scripts/install-deps.sh

step "Configuring (cmake --preset default)"
cmake --preset default

step "Building (cmake --build --preset default)"
cmake --build --preset default

step "Testing (ctest --preset default)"
ctest --preset default
