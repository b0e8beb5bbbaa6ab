#!/usr/bin/env bash
# Runs one fuzz target for SECONDS (default 60), after installing cargo-fuzz when it is missing
# and seeding the target's corpus from the captured fixtures. Crashes land in
# fuzz/artifacts/TARGET/; libFuzzer's final stats (execs, cov, ft) are printed at the end.
#   fuzz/run.sh TARGET [SECONDS] [extra libFuzzer flags...]
#   fuzz/run.sh list            the targets
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
# shellcheck source=../scripts/toolchain.sh
. "$root/scripts/toolchain.sh"

if [ "${1:-}" = list ]; then
  sed -n 's/^name = "\(.*\)"$/\1/p' "$here/Cargo.toml" | grep -v '^leakscope-fuzz$'
  exit 0
fi
target="${1:?usage: fuzz/run.sh TARGET [SECONDS] (fuzz/run.sh list for the targets)}"
secs="${2:-60}"
shift $(($# < 2 ? $# : 2))

# cargo-fuzz from crates.io, once.
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi

# libFuzzer and the sanitizers need nightly flags: a nightly toolchain when rustup has one,
# else the stable one with RUSTC_BOOTSTRAP=1 (see README.md). LEAKSCOPE_FUZZ_TOOLCHAIN
# overrides (e.g. "nightly-2026-05-01" or "bootstrap").
toolchain="${LEAKSCOPE_FUZZ_TOOLCHAIN:-}"
if [ -z "$toolchain" ]; then
  if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    toolchain=nightly
  else
    toolchain=bootstrap
  fi
fi
if [ "$toolchain" = bootstrap ]; then
  fuzz=(env RUSTC_BOOTSTRAP=1 cargo fuzz)
else
  fuzz=(cargo "+$toolchain" fuzz)
fi

"$here/seed.sh" "$target"
cd "$root"
# -a: debug assertions (integer overflow checks) in the parsers under test.
exec "${fuzz[@]}" run -a "$target" -- \
  -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 "$@"
