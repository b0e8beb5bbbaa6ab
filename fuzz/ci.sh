#!/usr/bin/env bash
# Every fuzz target briefly (SECONDS each, default 10), for CI: fails on the first crash, leak,
# timeout or out-of-memory, and prints one line per target (execs, coverage) at the end.
#   fuzz/ci.sh [SECONDS]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
secs="${1:-10}"
logs="$(mktemp -d)"
trap 'rm -rf "$logs"' EXIT
summary=()
for target in $("$here/run.sh" list); do
  echo "fuzz: $target for ${secs}s" >&2
  if ! "$here/run.sh" "$target" "$secs" >"$logs/$target.log" 2>&1; then
    tail -n 60 "$logs/$target.log" >&2
    echo "fuzz: $target FAILED (artifacts in fuzz/artifacts/$target/)" >&2
    exit 1
  fi
  execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$logs/$target.log" | tail -1)"
  cov="$(grep -o 'cov: [0-9]*' "$logs/$target.log" | tail -1 | cut -d' ' -f2)"
  ft="$(grep -o 'ft: [0-9]*' "$logs/$target.log" | tail -1 | cut -d' ' -f2)"
  summary+=("$(printf '%-18s %8ss %12s execs  cov %6s  ft %6s' "$target" "$secs" "${execs:-?}" "${cov:-?}" "${ft:-?}")")
done
printf '%s\n' "${summary[@]}"
