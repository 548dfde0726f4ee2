#!/usr/bin/env bash
# Builds the `fuzz` preset (clang, ASan + UBSan, libFuzzer) and runs each KHO
# fuzz target for a bounded time on a temporary copy of its checked-in seed
# corpus (tests/fuzz/corpus/<target>/), so the checked-in files never change.
#
#   scripts/run-fuzzers.sh [target...]        default: every target
#
# Environment:
#   FUZZ_SECONDS    seconds per target (default 20)
#   FUZZ_ARTIFACTS  where crash/leak/timeout inputs are kept
#                   (default build/fuzz/fuzz-artifacts)
#   FUZZ_KEEP_CORPUS=1  keep the grown corpus copies (path printed at the end)
#
# Exits non-zero if any target reports a crash, leak, timeout or
# out-of-memory; the offending input is in FUZZ_ARTIFACTS. Reproduce with
#   build/fuzz/tests/fuzz/<target> <artifact>
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo="$(pwd)"

seconds="${FUZZ_SECONDS:-20}"
artifacts="${FUZZ_ARTIFACTS:-$repo/build/fuzz/fuzz-artifacts}"
targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
  targets=(kho_fdt_fuzzer kho_radix_walk_fuzzer kho_incoming_fuzzer kho_block_set_fuzzer
           kho_xarray_fuzzer luo_incoming_fuzzer pci_incoming_fuzzer iommu_incoming_fuzzer
           iommufd_incoming_fuzzer vfio_incoming_fuzzer)
fi

# Largest input each target reads (bytes beyond are ignored or truncated).
max_len_for() {
  case "$1" in
    kho_fdt_fuzzer) echo 4160 ;;          # one 4 KiB root FDT page + a name
    kho_radix_walk_fuzzer) echo 65553 ;;  # 17-byte header + 16 pages of 4 KiB
    kho_incoming_fuzzer) echo 1024 ;;     # 2-byte header + patch records
    kho_block_set_fuzzer) echo 512 ;;     # 6-byte header + up to 32 patch records
    kho_xarray_fuzzer) echo 512 ;;        # 5-byte header + up to 32 patch records
    luo_incoming_fuzzer) echo 2048 ;;     # 4-byte header + patch records
    pci_incoming_fuzzer) echo 512 ;;      # 1-byte shape + up to 16 patch records
    iommu_incoming_fuzzer) echo 512 ;;    # 1-byte shape + up to 16 patch records
    iommufd_incoming_fuzzer) echo 512 ;;  # 1-byte shape + up to 16 patch records
    vfio_incoming_fuzzer) echo 512 ;;     # 1-byte shape + up to 16 patch records
    *) echo 4096 ;;
  esac
}

step() { printf '\n==> %s\n' "$*"; }

step "Configuring and building (cmake --preset fuzz)"
cmake --preset fuzz
cmake --build --preset fuzz

work="$(mktemp -d)"
cleanup() {
  if [[ "${FUZZ_KEEP_CORPUS:-0}" != 1 ]]; then rm -rf "$work"; fi
}
trap cleanup EXIT
mkdir -p "$artifacts"

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

failed=()
for target in "${targets[@]}"; do
  binary="build/fuzz/tests/fuzz/$target"
  seeds="tests/fuzz/corpus/$target"
  if [[ ! -x "$binary" ]]; then
    echo "run-fuzzers: no fuzzer binary $binary" >&2
    exit 1
  fi
  if [[ ! -d "$seeds" ]]; then
    echo "run-fuzzers: no seed corpus $seeds" >&2
    exit 1
  fi
  corpus="$work/$target"
  mkdir -p "$corpus"
  cp -R "$seeds/." "$corpus/"
  args=(
    "-max_total_time=$seconds"
    "-max_len=$(max_len_for "$target")"
    -timeout=10
    -rss_limit_mb=4096
    -print_final_stats=1
    "-artifact_prefix=$artifacts/$target-"
  )
  if [[ -f "tests/fuzz/$target.dict" ]]; then
    args+=("-dict=tests/fuzz/$target.dict")
  fi
  step "Fuzzing $target for ${seconds} s ($(ls "$seeds" | wc -l) seeds)"
  if "$binary" "${args[@]}" "$corpus"; then
    echo "run-fuzzers: $target: no crash ($(ls "$corpus" | wc -l) corpus files after the run)"
  else
    rc=$?
    echo "run-fuzzers: $target FAILED (exit $rc); inputs in $artifacts" >&2
    failed+=("$target")
  fi
done

if [[ "${FUZZ_KEEP_CORPUS:-0}" == 1 ]]; then
  echo "run-fuzzers: grown corpora kept in $work"
fi
if [[ ${#failed[@]} -ne 0 ]]; then
  echo "run-fuzzers: failing targets: ${failed[*]}" >&2
  exit 1
fi
echo "run-fuzzers: all ${#targets[@]} targets ran ${seconds} s without a finding"
