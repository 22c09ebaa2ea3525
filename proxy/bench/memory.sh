#!/usr/bin/env bash
# Does a sidecar's memory grow with the services it talks to, or with the
# size of the mesh? Two measurements, loopback only, bounded (about 1 min):
#
#   1. Compile scoping: the config one service's sidecar receives, from a
#      synthetic mesh of 100 services and of 10,000 (same policy per
#      service). Its size must not change with the mesh.
#   2. Resident memory of `gitmesh proxy` running a config with N upstream
#      services (3 endpoints each), N = 1, 10, 100, 1,000, after start and
#      after traffic to one of them.
#
#   proxy/bench/memory.sh          # from the repository root
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}

cd "$ROOT"
cargo build --release -q -p gitmesh --bin gitmesh
cargo build --release -q -p gitmesh-reconciler --example gen_mesh
BIN=$TARGET/release/gitmesh
GEN=$TARGET/release/examples/gen_mesh

echo "== 1. the config one sidecar receives, by mesh size"
printf '%-12s %-14s %s\n' "mesh" "config bytes" "upstreams in it"
for n in 100 10000; do
  "$GEN" "$WORK/mesh$n" "$n" >/dev/null
  (cd "$WORK/mesh$n" && git init -q && git add -A && git -c user.name=b -c user.email=b@b commit -qm mesh)
  "$BIN" compile "$WORK/mesh$n" --service svc-00000 >"$WORK/cfg$n.json"
  ups=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["upstreams"]))' "$WORK/cfg$n.json")
  printf '%-12s %-14s %s\n' "$n services" "$(wc -c <"$WORK/cfg$n.json")" "$ups"
done

echo "== 2. proxy resident memory by upstream services in its config"
python3 - "$WORK" <<'PY'
import json, sys
work = sys.argv[1]
for n in (1, 10, 100, 1000):
    ups = [{"name": f"svc-{i:05}",
            "endpoints": [{"address": f"127.0.{i // 250 + 1}.{i % 250 + 1}:{8080 + e}"} for e in range(3)]}
           for i in range(n)]
    # The first upstream is the local test server, for the traffic step.
    ups[0]["endpoints"] = [{"address": "127.0.0.1:18180"}]
    json.dump({"version": "mem", "service": "bench", "mesh": {"mtls": "disabled"}, "upstreams": ups},
              open(f"{work}/up{n}.json", "w"))
PY
python3 -m http.server 18180 --bind 127.0.0.1 --directory "$WORK" >/dev/null 2>&1 &
sleep 0.5
rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
printf '%-10s %-14s %-14s %s\n' "upstreams" "RSS idle (kB)" "RSS after (kB)" "config bytes"
for n in 1 10 100 1000; do
  RUST_LOG=warn "$BIN" proxy --config "$WORK/up$n.json" --outbound 127.0.0.1:18181 \
    --inbound 127.0.0.1:0 --admin 127.0.0.1:18190 &
  pid=$!
  for _ in $(seq 50); do curl -sf -o /dev/null http://127.0.0.1:18190/ready && break; sleep 0.1; done
  idle=$(rss $pid)
  for _ in $(seq 200); do curl -sf -o /dev/null -H 'Host: svc-00000' http://127.0.0.1:18181/up1.json || true; done
  printf '%-10s %-14s %-14s %s\n' "$n" "$idle" "$(rss $pid)" "$(wc -c <"$WORK/up$n.json")"
  kill $pid; wait $pid 2>/dev/null || true
done
