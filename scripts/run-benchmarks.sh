#!/usr/bin/env bash
# Builds the `release` preset and runs every Google Benchmark suite it
# produced, each with
#   --benchmark_format=json --benchmark_out=<results-dir>/<name>.json
# then prints the ratios bench/README.md describes (the radix tracker vs the
# legacy kho-v1 bitmaps, the bitmap limit and the btree; kexec retrieve cost
# over the baseline kexec, radix and kho-v1; block sets and the KHO xarray
# per entry against host containers).
#
#   scripts/run-benchmarks.sh [results-dir]   (default build/release/bench-results)
#
# Environment:
#   BENCH_MIN_TIME  --benchmark_min_time in seconds (default 0.2). Rows with
#                   an untimed setup per iteration (cold boots, kexecs) take
#                   it as a wall-time budget instead; see bench/README.md.
#                   kho_tracker_bench and kho_kexec_bench take about 65 s at
#                   0.2 on 2 busy cores, kho_containers_bench about 5 minutes.
#   BENCH_FILTER    optional --benchmark_filter regex, given to every suite.
#   KHOSIM_BENCH_LARGE  if set, kho_containers_bench adds its xarray sizes
#                   that take gigabytes (about 10 more minutes; see
#                   bench/README.md).
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
  step "Trackers: keys/s per structure, and how many times faster the other structure is than radix"
  jq -r '
    def row: .name | sub("/iterations:[0-9]+$"; "");
    def ratio($a; $b): if $a == null or $b == null then "-" else ($a.keys / $b.keys * 100 | round / 100) end;
    [.benchmarks[] | select(.run_type == "iteration" and .error_occurred != true)
     | {name: row, order: .family_index, keys: .["keys/s"], meta: .["meta_B_per_GiB"],
        nodes: .node_pages, chunks: .chunk_pages}
     | select(.name | test("^(preserve|unpreserve)/.*/(radix|bitmap_v1|bitmap_limit|btree)$"))]
    | group_by(.name | sub("/[^/]+$"; "")) | sort_by(map(.order) | min)[]
    | (map({key: (.name | split("/") | last), value: .}) | from_entries) as $r
    | select($r.radix != null)
    | [(.[0].name | sub("/[^/]+$"; "")),
       ($r.radix.keys | floor),
       ($r.bitmap_v1.keys // 0 | floor),
       ($r.bitmap_limit.keys // 0 | floor),
       ($r.btree.keys // 0 | floor),
       ratio($r.bitmap_v1; $r.radix),
       ratio($r.bitmap_limit; $r.radix),
       ratio($r.btree; $r.radix),
       $r.radix.nodes,
       ($r.radix.meta | floor),
       (if $r.bitmap_v1 then "\($r.bitmap_v1.nodes)+\($r.bitmap_v1.chunks)" else "-" end),
       (if $r.bitmap_v1 then ($r.bitmap_v1.meta | floor) else "-" end)]
    | @tsv' "$tracker" |
    column -t -s $'\t' -N "shape,radix_keys/s,v1_keys/s,bitmap_limit_keys/s,btree_keys/s,v1/radix,bitmap/radix,btree/radix,radix_node_pages,radix_meta_B/GiB,v1_bitmaps+chunks,v1_meta_B/GiB" >&2
  step "kho-v1 finalize: building the chunk list, against preserving the same shape"
  jq -r '
    def row: .name | sub("/iterations:[0-9]+$"; "");
    def us: .cpu_time * (if .time_unit == "ms" then 1000 elif .time_unit == "ns" then 0.001
                          elif .time_unit == "s" then 1000000 else 1 end);
    [.benchmarks[] | select(.run_type == "iteration" and .error_occurred != true)
     | {name: row, us: us, chunks: .chunk_pages}] as $rows
    | $rows[] | select(.name | test("^finalize/.*/bitmap_v1$")) | . as $f
    | ($f.name | sub("^finalize/"; "preserve/")) as $p
    | ($rows | map(select(.name == $p)) | last) as $pre
    | [($f.name | sub("^finalize/"; "") | sub("/bitmap_v1$"; "")), ($f.us * 10 | round / 10),
       (if $pre then ($pre.us * 10 | round / 10) else "-" end),
       (if $pre and $pre.us > 0 then ($f.us / $pre.us * 1000 | round / 1000) else "-" end),
       $f.chunks]
    | @tsv' "$tracker" |
    column -t -s $'\t' -N "shape,finalize_us,preserve_us,finalize/preserve,chunk_pages" >&2
fi

kexec="$out_dir/kho_kexec_bench.json"
if [[ -f "$kexec" ]]; then
  step "Kexec: retrieve cost = kexec time - baseline kexec time of the same tracker (same run, CPU time)"
  rows='
    def row: .name | sub("/iterations:[0-9]+$"; "");
    def ms: .cpu_time * (if .time_unit == "us" then 0.001 elif .time_unit == "ns" then 0.000001
                          elif .time_unit == "s" then 1000 else 1 end);
    def tracker: if row | test("/bitmap_v1(/|$)") then "bitmap_v1" else "radix" end;
    [.benchmarks[] | select(.run_type == "iteration" and .error_occurred != true)] as $rows
    | {radix: ($rows | map(select(row == "kexec/baseline/nothing_preserved")) | last),
       bitmap_v1: ($rows | map(select(row == "kexec/baseline/nothing_preserved/bitmap_v1"))
                   | last)} as $bases
    | [$rows[] | select(row | test("^kexec/(dense|scattered)/"))
       | tracker as $t | select($bases[$t] != null) | ($bases[$t] | ms) as $b
       | {row: row, tracker: $t, key: (row | sub("/bitmap_v1"; "")), ms: ms, d: (ms - $b),
          blocks: .retrieved_blocks, nodes: .walk_nodes}] as $kexecs'
  jq -r "$rows"'
    | $bases | to_entries[]
    | if .value == null then "no \(.key) baseline row in this run: nothing to subtract"
      else "\(.key) baseline kexec (nothing preserved): \(.value | ms * 1000 | round) us" end' \
    "$kexec" >&2
  jq -r "$rows"'
    | $kexecs[]
    | [.row, (.ms * 1000 | round), (.d * 1000 | round), .blocks,
       (if .d > 0 then (.blocks / .d * 1000 | floor) else "-" end), .nodes]
    | @tsv' "$kexec" |
    column -t -s $'\t' -N "row,kexec_us,retrieve_us,blocks,retrieve_blocks/s,walk_nodes" >&2
  step "Kexec: kernel B's retrieve with kho-v1's chunk list over the radix tree's"
  jq -r "$rows"'
    | $kexecs | group_by(.key)
    | sort_by(.[0].key | [sub("/pages:.*"; ""), (capture("pages:(?<n>[0-9]+)").n | tonumber)])[]
    | (map({key: .tracker, value: .}) | from_entries) as $r
    | select($r.radix != null and $r.bitmap_v1 != null)
    | [.[0].key, ($r.radix.d * 1000 | round), ($r.bitmap_v1.d * 1000 | round),
       (if $r.radix.d > 0 then ($r.bitmap_v1.d / $r.radix.d * 100 | round / 100) else "-" end),
       $r.radix.nodes, $r.bitmap_v1.nodes]
    | @tsv' "$kexec" |
    column -t -s $'\t' -N "shape,radix_retrieve_us,v1_retrieve_us,v1/radix,radix_walk_nodes,v1_walk_nodes" >&2
fi

containers="$out_dir/kho_containers_bench.json"
if [[ -f "$containers" ]]; then
  # Rows of one run, without errors: {name (no /iterations:N), shape
  # (<entry or pattern>/n:N), op, structure, order, s (s/entry), bpe}.
  rows='
    def ns: if . == null then "-" else (. * 1e10 | round / 10) end;
    def ratio($a; $b): if $a == null or $b == null or $b == 0 then "-"
                       else ($a / $b * 10 | round / 10) end;
    [.benchmarks[] | select(.run_type == "iteration" and .error_occurred != true)
     | (.name | sub("/iterations:[0-9]+$"; "") | split("/")) as $p
     | select($p | length == 4)
     | {op: $p[0], shape: ($p[1:3] | join("/")), structure: $p[3], order: .family_index,
        s: .["s/entry"], bpe: .B_per_entry}]
    | group_by(.shape) | sort_by(map(.order) | min)[]
    | (map({key: "\(.op)/\(.structure)", value: .}) | from_entries) as $r'
  step "Block sets: ns per entry (CPU time), and kho_block against the host references"
  jq -r "$rows"'
    | select($r["bs_grow/kho_block"] != null)
    | (if $r["bs_append/kho_block"] then $r["bs_grow/kho_block"].s + $r["bs_append/kho_block"].s
       else null end) as $ga
    | [.[0].shape, ($r["bs_grow/kho_block"].s | ns), ($r["bs_append/kho_block"].s | ns),
       ($r["bs_iterate/kho_block"].s | ns), ($r["bs_restore/kho_block"].s | ns),
       ($r["bs_append/vector"].s | ns), ($r["bs_append/btree_map"].s | ns),
       ratio($ga; $r["bs_append/vector"].s), ratio($r["bs_iterate/kho_block"].s; $r["bs_iterate/vector"].s),
       ratio($r["bs_restore/kho_block"].s; $r["bs_iterate/kho_block"].s)]
    | @tsv' "$containers" |
    column -t -s $'\t' -N "shape,grow,append,iterate,restore,vector_push_back,btree_emplace,(grow+append)/push_back,iterate/vector_iterate,restore/iterate" >&2
  step "KHO xarray in kernel A: ns per entry (per seek for iterate_from), and how many times faster the host maps are"
  jq -r "$rows"'
    | select($r["xa_store/kho_xarray"] != null) | .[0].shape as $shape
    | ("xa_store", "xa_load", "xa_iterate", "xa_iterate_from") as $op
    | select($r["\($op)/kho_xarray"] != null)
    | $r["\($op)/kho_xarray"].s as $k
    | ["\($op)/\($shape)", ($k | ns), ($r["\($op)/std_map"].s | ns), ($r["\($op)/btree_map"].s | ns),
       ratio($k; $r["\($op)/std_map"].s), ratio($k; $r["\($op)/btree_map"].s),
       ($r["\($op)/kho_xarray"].bpe | floor), ($r["\($op)/std_map"].bpe // "-"), ($r["\($op)/btree_map"].bpe // "-" | if type == "number" then . * 10 | round / 10 else . end)]
    | @tsv' "$containers" |
    column -t -s $'\t' -N "operation/shape,kho_xarray,std_map,btree_map,xarray/std_map,xarray/btree_map,xarray_B/entry,std_map_B/entry,btree_B/entry" >&2
  step "KHO xarray in kernel B: ns per entry, against storing the entries again in a btree_map"
  jq -r "$rows"'
    | select($r["xa_restore/kho_xarray"] != null)
    | [.[0].shape, ($r["xa_store/kho_xarray"].s | ns), ($r["xa_restore/kho_xarray"].s | ns),
       ($r["xa_read_in_place/kho_xarray"].s | ns), ($r["xa_adopt/kho_xarray"].s | ns),
       ($r["xa_convert/kho_xarray"].s | ns), ($r["xa_store/btree_map"].s | ns),
       ratio($r["xa_convert/kho_xarray"].s; $r["xa_store/btree_map"].s),
       ratio($r["xa_read_in_place/kho_xarray"].s; $r["xa_iterate/kho_xarray"].s)]
    | @tsv' "$containers" |
    column -t -s $'\t' -N "shape,store,restore,read_in_place,adopt,convert,btree_store,convert/btree_store,read_in_place/iterate_in_A" >&2
fi

step "Done in $((SECONDS - start)) s; JSON results in $out_dir/"
exit "$failed"
