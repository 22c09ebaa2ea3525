#!/usr/bin/env bash
# The full mesh path on loopback: the app's request goes to a client
# sidecar's outbound listener, over the network to the server sidecar's
# inbound listener, then to the upstream app (nginx answering a fixed 200).
# Three targets, same load:
#   direct  — straight to the upstream;
#   plain   — two sidecars, plaintext between them (mtls: disabled);
#   mtls    — two sidecars, TLS 1.3 mTLS with SPIFFE certificates (strict).
# Per round (targets back to back, order rotated): wrk saturation req/s, then
# loadgen.rs at a fixed FIXED_RATE req/s (open loop, latency from each
# request's scheduled time) for the p99. Prints medians over ROUNDS and the
# ratios / p99 added over direct. Certificates are made with openssl (the
# same shape `gitmesh ca issue` makes). Bounded in time, loopback only.
#
#   apt-get install -y wrk nginx
#   proxy/bench/mesh.sh                 # from the repository root
set -euo pipefail

DURATION=${DURATION:-5s}
CONNECTIONS=${CONNECTIONS:-32}
THREADS=${THREADS:-1}
ROUNDS=${ROUNDS:-3}
FIXED_RATE=${FIXED_RATE:-1000}
FIXED_SECONDS=${FIXED_SECONDS:-10}
FIXED_CONNECTIONS=${FIXED_CONNECTIONS:-16}
UPSTREAM_PORT=18180
MTLS_OUT=18181 MTLS_IN=18186 MTLS_ADMIN1=18187 MTLS_ADMIN2=18188
PLAIN_OUT=18191 PLAIN_IN=18196 PLAIN_ADMIN1=18197 PLAIN_ADMIN2=18198
HERE=$(cd "$(dirname "$0")" && pwd)
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

for tool in wrk nginx rustc openssl python3; do
  command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install -y wrk nginx"; exit 1; }
done
rustc -O -o "$WORK/loadgen" "$HERE/loadgen.rs"

# shellcheck source=nginx-upstream.sh
. "$HERE/nginx-upstream.sh"
nginx_upstream "$WORK" $UPSTREAM_PORT

# A mesh CA and a certificate for each sidecar (URI SAN = SPIFFE ID).
cd "$WORK"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca-key.pem \
  -out ca.pem -days 1 -subj "/CN=bench mesh CA" \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign 2>/dev/null
for svc in up client; do
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$svc-key.pem" \
    -out "$svc.csr" -subj "/CN=$svc" 2>/dev/null
  printf 'subjectAltName=URI:spiffe://bench.local/svc/%s\nextendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=CA:FALSE\n' "$svc" >"$svc.ext"
  openssl x509 -req -in "$svc.csr" -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 1 \
    -out "$svc.pem" -extfile "$svc.ext" 2>/dev/null
done
cd - >/dev/null

config() { # service mode upstream-inbound-port
  local ups='[]'
  [ -n "${3:-}" ] && ups="[{\"name\":\"up\",\"endpoints\":[{\"address\":\"127.0.0.1:$3\"}]}]"
  echo "{\"version\":\"bench\",\"service\":\"$1\",\"mesh\":{\"trustDomain\":\"bench.local\",\"mtls\":\"$2\"},\"upstreams\":$ups}"
}
config up strict >"$WORK/mtls-up.json"
config client strict $MTLS_IN >"$WORK/mtls-client.json"
config up disabled >"$WORK/plain-up.json"
config client disabled $PLAIN_IN >"$WORK/plain-client.json"

cargo build --release -q -p gitmesh-proxy --example proxy
BIN=${CARGO_TARGET_DIR:-target}/release/examples/proxy
tls() { echo --tls-cert "$WORK/$1.pem" --tls-key "$WORK/$1-key.pem" --ca-bundle "$WORK/ca.pem"; }
# shellcheck disable=SC2046
RUST_LOG=warn "$BIN" --config "$WORK/mtls-up.json" --workers 1 $(tls up) --app 127.0.0.1:$UPSTREAM_PORT \
  --inbound 127.0.0.1:$MTLS_IN --outbound 127.0.0.1:0 --admin 127.0.0.1:$MTLS_ADMIN1 &
# shellcheck disable=SC2046
RUST_LOG=warn "$BIN" --config "$WORK/mtls-client.json" --workers 1 $(tls client) \
  --outbound 127.0.0.1:$MTLS_OUT --inbound 127.0.0.1:0 --admin 127.0.0.1:$MTLS_ADMIN2 &
RUST_LOG=warn "$BIN" --config "$WORK/plain-up.json" --workers 1 --app 127.0.0.1:$UPSTREAM_PORT \
  --inbound 127.0.0.1:$PLAIN_IN --outbound 127.0.0.1:0 --admin 127.0.0.1:$PLAIN_ADMIN1 &
RUST_LOG=warn "$BIN" --config "$WORK/plain-client.json" --workers 1 \
  --outbound 127.0.0.1:$PLAIN_OUT --inbound 127.0.0.1:0 --admin 127.0.0.1:$PLAIN_ADMIN2 &
sleep 1
for port in $MTLS_OUT $PLAIN_OUT; do
  code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Host: up' "http://127.0.0.1:$port/" || true)
  [ "$code" = 200 ] || { echo "sidecar pair on $port answers $code, not 200"; exit 1; }
done

to_ms() { awk '{v=$1; if (v ~ /us$/) {sub(/us$/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v*=1000}; printf "%.3f", v}'; }
RESULTS=$WORK/results
: >"$RESULTS"
measure() {
  local name=$1 port=$2 out rps p99 fixed fp99 handshakes
  out=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -H "Host: up" "http://127.0.0.1:$port/")
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p99=$(echo "$out" | awk '$1 == "99%" {print $2}' | to_ms)
  sleep 1
  fixed=$("$WORK/loadgen" "127.0.0.1:$port" up "$FIXED_RATE" "$FIXED_SECONDS" "$FIXED_CONNECTIONS")
  fp99=$(echo "$fixed" | awk '{for (i = 1; i < NF; i++) if ($i == "p99") {sub(/ms$/, "", $(i+1)); print $(i+1)}}')
  printf '%-7s req/s %9s  sat-p99 %8sms  fixed-%s p99 %8sms  (%s)\n' \
    "$name" "$rps" "$p99" "$FIXED_RATE" "$fp99" "$(echo "$fixed" | awk '{print $4, "errors"}')"
  echo "$name $rps $p99 $fp99" >>"$RESULTS"
  sleep 1
}

TARGETS=("direct $UPSTREAM_PORT" "plain $PLAIN_OUT" "mtls $MTLS_OUT")
for round in $(seq 1 "$ROUNDS"); do
  echo "== round $round"
  for i in 0 1 2; do
    # shellcheck disable=SC2086
    measure ${TARGETS[$(((i + round - 1) % 3))]}
  done
done

echo "== connections the server sidecar accepted over mTLS (pooling: few handshakes)"
curl -s "http://127.0.0.1:$MTLS_ADMIN1/metrics" | grep -Ei 'connection|tls' | grep -v '^#' | head -8 || true

echo "== medians over $ROUNDS rounds"
python3 - "$RESULTS" "$FIXED_RATE" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    name, *vals = line.split()
    rows.setdefault(name, []).append([float(v) for v in vals])
med = {n: [statistics.median(c) for c in zip(*r)] for n, r in rows.items()}
print(f"| path | req/s | p99 (saturated) | p99 at {sys.argv[2]}/s |")
print("|---|---:|---:|---:|")
for n in ["direct", "plain", "mtls"]:
    rps, p99, fp99 = med[n]
    print(f"| {n} | {rps:,.0f} | {p99:.2f}ms | {fp99:.2f}ms |")
d = rows["direct"]
for n in ["plain", "mtls"]:
    r = rows[n]
    ratio = statistics.median(r[i][0] / d[i][0] for i in range(len(r)))
    added = statistics.median(r[i][2] - d[i][2] for i in range(len(r)))
    print(f"{n}: req/s {ratio:.2f}x direct; p99 added at {sys.argv[2]}/s: {added:.2f}ms (median of per-round differences)")
m, p = rows["mtls"], rows["plain"]
print(f"mtls/plain req/s: {statistics.median(m[i][0] / p[i][0] for i in range(len(m))):.2f}x")
PY
