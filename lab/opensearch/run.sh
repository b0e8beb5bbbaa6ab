#!/usr/bin/env bash
# Runs one embedded OpenSearch 2.19.6 node in the foreground (exec: the PID you
# get when backgrounding this script is the JVM's PID). Build it first with build.sh.
#
#   lab/opensearch/run.sh --host 127.0.10.1 --http-port 9200 --transport-port 9300 \
#       --data /tmp/x/os1 [--name os-open] [--cluster leakscope-lab]
#
# Logs go to stdout. Ready when stdout has the line "leakscope-lab: opensearch ready ..."
# (or when GET http://HOST:HTTP_PORT/ answers). SIGTERM closes the node cleanly.
# Env: LEAKSCOPE_LAB_CACHE (same as build.sh), LEAKSCOPE_LAB_JAVA (java binary,
# default: java on PATH; must be Java 17..21), LEAKSCOPE_LAB_OS_JAVA_OPTS (extra JVM
# options, appended last so e.g. -Xmx1g overrides the default).
set -euo pipefail

OS_VERSION=2.19.6
CACHE="${LEAKSCOPE_LAB_CACHE:-$HOME/.cache/leakscope-lab}"
LIB="$CACHE/opensearch-$OS_VERSION/lib"

if [[ ! -f "$CACHE/opensearch-$OS_VERSION/build.stamp" || ! -f "$LIB/leakscope-lab-opensearch.jar" ]]; then
  echo "run.sh: no launcher build in $LIB; run lab/opensearch/build.sh first" >&2
  exit 2
fi

JAVA="${LEAKSCOPE_LAB_JAVA:-java}"

# shellcheck disable=SC2086
exec "$JAVA" \
  -Xms256m -Xmx512m \
  -Xss1m \
  -XX:+UseG1GC \
  -XX:+ExitOnOutOfMemoryError \
  -Djava.awt.headless=true \
  -Dfile.encoding=UTF-8 \
  -Djna.nosys=true \
  -Djava.locale.providers=SPI,COMPAT \
  -Dio.netty.noUnsafe=true \
  -Dio.netty.noKeySetOptimization=true \
  -Dio.netty.recycler.maxCapacityPerThread=0 \
  -Dio.netty.allocator.numDirectArenas=0 \
  -Dlog4j.shutdownHookEnabled=false \
  -Dlog4j2.disable.jmx=true \
  -Dopensearch.distribution.type=tar \
  ${LEAKSCOPE_LAB_OS_JAVA_OPTS:-} \
  -cp "$LIB/*" \
  dev.leakscope.lab.OpenSearchLauncher "$@"
