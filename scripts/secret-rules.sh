#!/usr/bin/env bash
# Fetches the secret ruleset leakscope embeds at build time: gitleaks' default rules
# (config/gitleaks.toml, MIT licence) from the Go module github.com/zricethezav/gitleaks/v8 at a
# pinned version, through the Go module proxy, checked against the module's pinned checksum
# (go verifies it against the checksum database too) and the file's SHA-256. Nothing of it is
# kept in the repository; the build (crates/core/build.rs) reads it from
#   ${LEAKSCOPE_SECRET_RULES:-$HOME/.cache/leakscope/gitleaks-v8.30.1.toml}
# and builds without it (with a warning) when it is missing. Idempotent.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/toolchain.sh"

module="github.com/zricethezav/gitleaks/v8"
version="v8.30.1"
module_sum="h1:PmEvCfVI7ti9dV3s5aMZUY7sS2GxRvG3yzih7E+cS3w="
file_sha256="e163e53b9e7e8a8511e77271e2b323ed057759542a6d988258afe3a1fa329caf"
dest="${LEAKSCOPE_SECRET_RULES:-$HOME/.cache/leakscope/gitleaks-$version.toml}"

if [ -f "$dest" ] && echo "$file_sha256  $dest" | sha256sum -c --status; then
  exit 0
fi
info="$(cd /tmp && go mod download -json "$module@$version")"
dir="$(printf '%s' "$info" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')"
sum="$(printf '%s' "$info" | sed -n 's/^\t"Sum": "\(.*\)",$/\1/p')"
if [ "$sum" != "$module_sum" ]; then
  echo "secret-rules: $module@$version has checksum $sum, expected $module_sum" >&2
  exit 1
fi
mkdir -p "$(dirname "$dest")"
cp "$dir/config/gitleaks.toml" "$dest.tmp"
cp "$dir/LICENSE" "$(dirname "$dest")/gitleaks-$version.LICENSE"
if ! echo "$file_sha256  $dest.tmp" | sha256sum -c --status; then
  echo "secret-rules: config/gitleaks.toml of $version does not have the pinned SHA-256" >&2
  rm -f "$dest.tmp"
  exit 1
fi
chmod 0644 "$dest.tmp"
mv "$dest.tmp" "$dest"
echo "secret-rules: gitleaks $version rules in $dest" >&2
