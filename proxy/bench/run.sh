#!/usr/bin/env bash
# One-hop reverse-proxy benchmark on loopback: direct to the upstream, then
# through gitmesh proxy, nginx and HAProxy, each with one worker thread, with
# the same wrk load. Bounded in time (DURATION per run).
#
#   apt-get install -y wrk nginx haproxy      # Debian packages
#   proxy/bench/run.sh                        # from the repository root
#
# Prints saturation req/s and latency percentiles, then p99 at a fixed rate
# is left to wrk2-style tools (wrk has no fixed-rate mode).
set -euo pipefail

DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
UPSTREAM_PORT=18080
GITMESH_PORT=18081
NGINX_PORT=18082
HAPROXY_PORT=18083
ADMIN_PORT=18090
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

for tool in wrk nginx haproxy; do
  command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install -y wrk nginx haproxy"; exit 1; }
done

# Upstream: nginx answering a fixed 200 (one worker).
cat >"$WORK/upstream.conf" <<CONF
worker_processes 1; daemon off; pid $WORK/upstream.pid; error_log stderr warn;
events { worker_connections 4096; }
http { access_log off; server { listen 127.0.0.1:$UPSTREAM_PORT; keepalive_requests 100000;
  location / { return 200 "hello\n"; } } }
CONF
nginx -c "$WORK/upstream.conf" -p "$WORK" &

# nginx as a one-hop reverse proxy with upstream keep-alive.
cat >"$WORK/proxy.conf" <<CONF
worker_processes 1; daemon off; pid $WORK/proxy.pid; error_log stderr warn;
events { worker_connections 4096; }
http { access_log off;
  upstream up { server 127.0.0.1:$UPSTREAM_PORT; keepalive 64; }
  server { listen 127.0.0.1:$NGINX_PORT; keepalive_requests 100000;
    location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
CONF
nginx -c "$WORK/proxy.conf" -p "$WORK" &

cat >"$WORK/haproxy.cfg" <<CONF
global
  nbthread 1
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  option http-keep-alive
frontend fe
  bind 127.0.0.1:$HAPROXY_PORT
  default_backend be
backend be
  http-reuse always
  server s1 127.0.0.1:$UPSTREAM_PORT
CONF
haproxy -f "$WORK/haproxy.cfg" &

cat >"$WORK/gitmesh.json" <<CONF
{"version":"bench","service":"bench","mesh":{"mtls":"disabled"},
 "upstreams":[{"name":"up","endpoints":[{"address":"127.0.0.1:$UPSTREAM_PORT"}]}]}
CONF
cargo build --release -q -p gitmesh-proxy --example proxy
BIN=${CARGO_TARGET_DIR:-target}/release/examples/proxy
RUST_LOG=warn "$BIN" --config "$WORK/gitmesh.json" --workers 1 \
  --outbound 127.0.0.1:$GITMESH_PORT --inbound 127.0.0.1:0 --admin 127.0.0.1:$ADMIN_PORT &
GITMESH_PID=$!
sleep 1

run() {
  local name=$1 port=$2
  echo "== $name"
  wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -H "Host: up" "http://127.0.0.1:$port/" \
    | grep -E "Requests/sec|50%|99%"
}
run direct $UPSTREAM_PORT
run gitmesh $GITMESH_PORT
run nginx $NGINX_PORT
run haproxy $HAPROXY_PORT
echo "== gitmesh resident memory after load"
grep VmRSS "/proc/$GITMESH_PID/status"
