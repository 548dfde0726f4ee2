#!/usr/bin/env bash
# Runs the benchmark suites behind docs/performance.md and writes it again,
# with its PNG plots in docs/performance/ (scripts/bench_report.py, gnuplot).
#
#   scripts/bench-report.sh              the published sizes: about 5 minutes
#                                        on 2 cores, 2 GB of host memory at peak
#   scripts/bench-report.sh --smoke --build build/default --out DIR
#                                        tiny sizes from an existing build,
#                                        report in DIR (CI: the generator, the
#                                        plots and every suite still work)
#
# Options:
#   --smoke       --benchmark_min_time=0.001, default sizes (no
#                 KHOSIM_BENCH_LARGE); never writes docs/ unless --out says so
#   --build DIR   use the benchmarks already built in DIR/bench instead of
#                 configuring and building the release preset
#   --out DIR     write DIR/performance.md and DIR/performance/*.png
#                 (default: docs/, which is what the repository ships)
#
# Every suite runs under `timeout` (SUITE_TIMEOUT seconds, default 1200),
# so the whole run is bounded; a suite that fails, times out or reports an
# error row fails the script and leaves docs/ untouched.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

smoke=0
build_dir=""
out_dir="docs"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --smoke) smoke=1 ;;
    --build) build_dir="$2"; shift ;;
    --out) out_dir="$2"; shift ;;
    *) echo "bench-report: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
suite_timeout="${SUITE_TIMEOUT:-1200}"
suites=(kho_workload_bench liveupdate_bench memfd_bench)

step() { printf '\n==> %s\n' "$*" >&2; }

if [[ -z "$build_dir" ]]; then
  step "Installing dependencies (scripts/install-deps.sh)"
  scripts/install-deps.sh
  step "Configuring and building the benchmarks (preset release)"
  cmake --preset release
  cmake --build --preset release --target "${suites[@]}"
  build_dir="build/release"
fi

results="$(mktemp -d)"
trap 'rm -rf "$results"' EXIT
start=$SECONDS
for suite in "${suites[@]}"; do
  binary="$build_dir/bench/$suite"
  [[ -x "$binary" ]] || { echo "bench-report: no $binary" >&2; exit 1; }
  args=(--benchmark_format=json --benchmark_out="$results/$suite.json")
  env=()
  if [[ $smoke -eq 1 ]]; then
    args+=(--benchmark_min_time=0.001)
  else
    case "$suite" in
      # Setup-bound rows run min_time / (seconds per iteration) iterations:
      # three of every small workload, one of each published-size one.
      kho_workload_bench) args+=(--benchmark_min_time=3); env+=(KHOSIM_BENCH_LARGE=1) ;;
      liveupdate_bench) args+=(--benchmark_min_time=5) ;;
      *) args+=(--benchmark_min_time=0.2) ;;
    esac
  fi
  step "Running $suite (timeout ${suite_timeout} s)"
  suite_start=$SECONDS
  env "${env[@]}" timeout "$suite_timeout" "$binary" "${args[@]}" >/dev/null
  echo "$suite: $((SECONDS - suite_start)) s" >&2
done

step "Writing $out_dir/performance.md and $out_dir/performance/*.png"
command="scripts/bench-report.sh"
[[ $smoke -eq 1 ]] && command+=" --smoke"
mkdir -p "$out_dir"
python3 scripts/bench_report.py --results "$results" --doc "$out_dir/performance.md" \
  --plots "$out_dir/performance" --command "$command"
step "Done in $((SECONDS - start)) s"
