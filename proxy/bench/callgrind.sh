#!/usr/bin/env bash
# Instructions per request through one gitmesh hop, counted by callgrind:
# the steadiest figure there is for a change to the hot path (wall-clock
# req/s on a shared 2-core VM swings far more than a 1% change). Loopback
# only, about 15 s per run.
#
#   apt-get install -y valgrind wrk nginx     # Debian packages
#   proxy/bench/callgrind.sh                  # the working tree's build
#   BIN=/tmp/proxy-before proxy/bench/callgrind.sh   # another build, to compare
#   SIDE=inbound proxy/bench/callgrind.sh     # the inbound listener (to --app)
#
# The proxy (the `proxy` example, release build, access logs off) runs
# under callgrind while `wrk -t1 -c8` sends `GET /` with `Host: up` for
# DURATION (6s) to an nginx upstream answering a fixed 200. Startup (about
# 1.2M instructions) is counted too, under 0.2% here. The profile stays in
# $OUT (callgrind.out.gitmesh) for `callgrind_annotate`.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
DURATION=${DURATION:-6s}
OUT=${OUT:-$PWD/callgrind.out.gitmesh}
for tool in valgrind wrk nginx; do
  command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install -y valgrind wrk nginx"; exit 1; }
done
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
UPSTREAM_PORT=$(free_port)
PROXY_PORT=$(free_port)

if [ -z "${BIN:-}" ]; then
  (cd "$ROOT" && cargo build --release -q -p gitmesh-proxy --example proxy)
  BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/proxy
fi
# shellcheck source=nginx-upstream.sh
. "$HERE/nginx-upstream.sh"
nginx_upstream "$WORK" "$UPSTREAM_PORT" 2>/dev/null
cat >"$WORK/gitmesh.json" <<CONF
{"version":"bench","service":"bench","mesh":{"mtls":"disabled"},
 "upstreams":[{"name":"up","endpoints":[{"address":"127.0.0.1:$UPSTREAM_PORT"}]}]}
CONF
case ${SIDE:-outbound} in
  outbound) LISTENERS=(--outbound "127.0.0.1:$PROXY_PORT" --inbound 127.0.0.1:0) ;;
  # A peer's request (plaintext: the config disables mTLS) to the local app.
  inbound) LISTENERS=(--outbound 127.0.0.1:0 --inbound "127.0.0.1:$PROXY_PORT"
                      --app "127.0.0.1:$UPSTREAM_PORT") ;;
  *) echo "SIDE is outbound or inbound, not $SIDE"; exit 2 ;;
esac
RUST_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$OUT" "$BIN" \
  --config "$WORK/gitmesh.json" --workers 1 "${LISTENERS[@]}" \
  --admin 127.0.0.1:0 >/dev/null 2>&1 &
PROXY_PID=$!
# Under callgrind the proxy takes a few seconds to start.
for _ in $(seq 100); do
  python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1",int(sys.argv[1])),0.2)' "$PROXY_PORT" 2>/dev/null && break
  sleep 0.1
done
REQUESTS=$(wrk -t1 -c8 -d"$DURATION" -H 'Host: up' "http://127.0.0.1:$PROXY_PORT/" | awk '/requests in/ {print $1}')
kill -INT "$PROXY_PID"
wait "$PROXY_PID" 2>/dev/null || true
TOTAL=$(callgrind_annotate "$OUT" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
echo "requests $REQUESTS  instructions $TOTAL  per request $((TOTAL / REQUESTS))"
