#!/usr/bin/env bash
# Builds the `release` preset and runs every Google Benchmark suite it
# produced, each with
#   --benchmark_format=json --benchmark_out=<results-dir>/<name>.json
# then prints the ratios bench/README.md describes (tracker vs the bitmap
# limit and the btree; kexec retrieve cost over the baseline kexec).
#
#   scripts/run-benchmarks.sh [results-dir]   (default build/release/bench-results)
#
# Environment:
#   BENCH_MIN_TIME  --benchmark_min_time in seconds (default 0.2). Rows with
#                   an untimed setup per iteration (cold boots, kexecs) take
#                   it as a wall-time budget instead; see bench/README.md.
#                   Both suites together take about 40 s at 0.2 on 2 cores.
#   BENCH_FILTER    optional --benchmark_filter regex, given to every suite.
#
# Exits non-zero if the build or any suite fails, or if any row reported an
# error (SkipWithError).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

out_dir="${1:-build/release/bench-results}"
min_time="${BENCH_MIN_TIME:-0.2}"
filter="${BENCH_FILTER:-}"

step() { printf '\n==> %s\n' "$*" >&2; }

step "Installing dependencies (scripts/install-deps.sh)"
scripts/install-deps.sh

step "Configuring (cmake --preset release)"
cmake --preset release

step "Building the benchmarks (cmake --build --preset release --target khosim_benchmarks)"
cmake --build --preset release --target khosim_benchmarks

mkdir -p "$out_dir"
benchmarks=()
for candidate in build/release/bench/*_bench; do
  if [[ -f "$candidate" && -x "$candidate" ]]; then benchmarks+=("$candidate"); fi
done
if [[ ${#benchmarks[@]} -eq 0 ]]; then
  echo "run-benchmarks: the build produced no benchmark under build/release/bench" >&2
  exit 1
fi

args=(--benchmark_min_time="$min_time")
if [[ -n "$filter" ]]; then args+=(--benchmark_filter="$filter"); fi

start=$SECONDS
failed=0
for binary in "${benchmarks[@]}"; do
  name="$(basename "$binary")"
  json="$out_dir/$name.json"
  step "Running $name (min_time ${min_time} s) -> $json"
  suite_start=$SECONDS
  rm -f "$json"  # never summarize a previous run's file
  # stdout repeats the JSON file; the file is what is kept.
  "$binary" --benchmark_format=json --benchmark_out="$json" "${args[@]}" >/dev/null
  if [[ ! -s "$json" ]]; then
    echo "$name: no row matched the filter" >&2
    rm -f "$json"
    continue
  fi
  echo "$name: $(jq '[.benchmarks[] | select(.run_type == "iteration")] | length' "$json") rows" \
    "in $((SECONDS - suite_start)) s" >&2
  errors="$(jq -r '.benchmarks[] | select(.error_occurred == true)
                   | "  \(.name): \(.error_message)"' "$json")"
  if [[ -n "$errors" ]]; then
    echo "run-benchmarks: $name reported errors:" >&2
    echo "$errors" >&2
    failed=1
  fi
done

# The summaries read only rows without errors, from this run's files (a
# suite the filter left out has none).
tracker="$out_dir/kho_tracker_bench.json"
if [[ -f "$tracker" ]]; then
  step "Tracker: keys/s per structure, and how many times faster the reference is"
  jq -r '
    def row: .name | sub("/iterations:[0-9]+$"; "");
    [.benchmarks[] | select(.run_type == "iteration" and .error_occurred != true)
     | {name: row, order: .family_index, keys: .["keys/s"], meta: .["meta_B_per_GiB"],
        nodes: .node_pages}
     | select(.name | test("/(radix|bitmap_limit|btree)$"))]
    | group_by(.name | sub("/[^/]+$"; "")) | sort_by(map(.order) | min)[]
    | (map({key: (.name | split("/") | last), value: .}) | from_entries) as $r
    | select($r.radix != null)
    | [(.[0].name | sub("/[^/]+$"; "")),
       ($r.radix.keys | floor),
       ($r.bitmap_limit.keys // 0 | floor),
       ($r.btree.keys // 0 | floor),
       (if $r.bitmap_limit then ($r.bitmap_limit.keys / $r.radix.keys * 10 | round / 10) else "-" end),
       (if $r.btree then ($r.btree.keys / $r.radix.keys * 10 | round / 10) else "-" end),
       $r.radix.nodes,
       ($r.radix.meta | floor)]
    | @tsv' "$tracker" |
    column -t -s $'\t' -N "shape,radix_keys/s,bitmap_limit_keys/s,btree_keys/s,bitmap/radix,btree/radix,radix_node_pages,radix_meta_B/GiB" >&2
fi

kexec="$out_dir/kho_kexec_bench.json"
if [[ -f "$kexec" ]]; then
  step "Kexec: retrieve cost = kexec time - baseline kexec time (same run, CPU time)"
  rows='
    def row: .name | sub("/iterations:[0-9]+$"; "");
    def ms: .cpu_time * (if .time_unit == "us" then 0.001 elif .time_unit == "ns" then 0.000001
                          elif .time_unit == "s" then 1000 else 1 end);
    [.benchmarks[] | select(.run_type == "iteration" and .error_occurred != true)] as $rows
    | ($rows | map(select(row == "kexec/baseline/nothing_preserved")) | last) as $base'
  jq -r "$rows"'
    | if $base == null then "no kexec/baseline row in this run: nothing to subtract"
      else "baseline kexec (nothing preserved): \($base | ms * 1000 | round) us" end' "$kexec" >&2
  jq -r "$rows"'
    | select($base != null) | ($base | ms) as $b
    | $rows[] | select(row | test("^kexec/(dense|scattered)/"))
    | (ms - $b) as $d
    | [row, (ms * 1000 | round), ($d * 1000 | round), .retrieved_blocks,
       (if $d > 0 then (.retrieved_blocks / $d * 1000 | floor) else "-" end), .walk_nodes]
    | @tsv' "$kexec" |
    column -t -s $'\t' -N "row,kexec_us,retrieve_us,blocks,retrieve_blocks/s,walk_nodes" >&2
fi

step "Done in $((SECONDS - start)) s; JSON results in $out_dir/"
exit "$failed"
