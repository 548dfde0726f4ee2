#!/usr/bin/env bash
# Installs everything khosim needs to build, test, fuzz and plot on Debian
# bookworm. Idempotent: when every package is already installed it does
# nothing (no apt-get update), so it is cheap to run before every build.
# Runs as root, or through sudo otherwise.
set -euo pipefail

packages=(
  build-essential cmake ninja-build ccache
  clang clang-format clang-tidy lld libclang-rt-14-dev
  libabsl-dev libboost-dev libgtest-dev libgmock-dev libbenchmark-dev libfdt-dev
  libyaml-cpp-dev nlohmann-json3-dev
  gnuplot-nox python3 python3-jsonschema jq
)

missing=()
for pkg in "${packages[@]}"; do
  status="$(dpkg-query -W -f='${db:Status-Abbrev}' "$pkg" 2>/dev/null || true)"
  if [[ "$status" != ii* ]]; then
    missing+=("$pkg")
  fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "install-deps: all ${#packages[@]} packages already installed"
  exit 0
fi

if [[ "$(id -u)" -eq 0 ]]; then
  as_root=()
elif command -v sudo >/dev/null 2>&1; then
  as_root=(sudo)
else
  echo "install-deps: need root (or sudo) to install: ${missing[*]}" >&2
  exit 1
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y --no-install-recommends "${missing[@]}"
