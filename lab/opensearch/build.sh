#!/usr/bin/env bash
# Builds the embedded OpenSearch 2.19.6 launcher and installs it, with all its
# runtime jars, into ${LEAKSCOPE_LAB_CACHE:-$HOME/.cache/leakscope-lab}/opensearch-2.19.6/lib/.
#
# Idempotent: if that lib/ already holds a complete build of the current sources
# (hash of pom.xml, src/ and this script, recorded in build.stamp together with
# every jar's name and size), it exits 0 at once without running Maven.
set -euo pipefail

OS_VERSION=2.19.6
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${LEAKSCOPE_LAB_CACHE:-$HOME/.cache/leakscope-lab}"
DEST="$CACHE/opensearch-$OS_VERSION"
LIB="$DEST/lib"
STAMP="$DEST/build.stamp"

src_hash() {
  # stable order, paths relative to $HERE so the hash does not depend on the checkout location
  (cd "$HERE" && { echo pom.xml; echo build.sh; find src -type f | LC_ALL=C sort; } |
     while IFS= read -r f; do printf '%s\0' "$f"; sha256sum < "$f"; done) | sha256sum | cut -d' ' -f1
}

stamp_ok() {
  # $1 = wanted hash; true if the stamp matches and every recorded jar is present with its size
  [[ -f "$STAMP" && -d "$LIB" ]] || return 1
  local first kind name size
  first="$(head -n1 "$STAMP")"
  [[ "$first" == "hash $1" ]] || return 1
  grep -q '^jar ' "$STAMP" || return 1
  while read -r kind name size; do
    [[ "$kind" == jar ]] || continue
    [[ -f "$LIB/$name" ]] || return 1
    [[ "$(stat -c %s "$LIB/$name")" == "$size" ]] || return 1
  done < "$STAMP"
  return 0
}

want="$(src_hash)"
if stamp_ok "$want"; then
  exit 0
fi

mkdir -p "$DEST"
# serialise concurrent builds into the same cache
exec 9>"$DEST/.lock"
flock 9
if stamp_ok "$want"; then   # someone else finished it while we waited
  exit 0
fi

command -v mvn >/dev/null || { echo "build.sh: mvn not found (needs Maven 3.8+ and a JDK 17)" >&2; exit 1; }
command -v java >/dev/null || { echo "build.sh: java not found (needs a JDK 17)" >&2; exit 1; }

log="$HERE/target/build.log"
mkdir -p "$HERE/target"
echo "build.sh: building leakscope OpenSearch $OS_VERSION launcher into $LIB" >&2
if ! mvn -q -B -f "$HERE/pom.xml" clean package >"$log" 2>&1; then
  echo "build.sh: maven build failed; last lines of $log:" >&2
  tail -n 40 "$log" >&2
  exit 1
fi

stage="$DEST/lib.tmp.$$"
rm -rf "$stage"
mkdir -p "$stage"
trap 'rm -rf "$stage" "$STAMP.tmp"' EXIT
cp "$HERE/target/leakscope-lab-opensearch.jar" "$stage/"
cp "$HERE"/target/lib/*.jar "$stage/"

{
  echo "hash $want"
  (cd "$stage" && for j in *.jar; do echo "jar $j $(stat -c %s "$j")"; done)
} > "$STAMP.tmp"

rm -f "$STAMP"          # an interrupted swap must never look complete
rm -rf "$LIB"
mv "$stage" "$LIB"
mv "$STAMP.tmp" "$STAMP"
trap - EXIT
echo "build.sh: installed $(ls "$LIB" | wc -l) jars into $LIB" >&2
