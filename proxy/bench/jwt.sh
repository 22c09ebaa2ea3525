#!/usr/bin/env bash
# Inbound JWT authentication under load, on loopback: the gitmesh proxy's
# CPU time per request in front of an nginx app, with
#   - no JWT config (the floor),
#   - one bearer token sent on every request (a caller with a session: the
#     cache of verified tokens answers after the first),
#   - TOKENS distinct tokens in turn (more than the cache holds: nearly
#     every request checks a signature, and the cache evicts).
# RS256 tokens are signed here with the fixture key (openssl), valid for
# an hour. Bounded in time: about ROUNDS × 3 × DURATION.
#
#   apt-get install -y wrk nginx openssl curl
#   proxy/bench/jwt.sh                 # from the repository root
#   BIN=path/to/proxy proxy/bench/jwt.sh   # another build of the proxy
set -euo pipefail

DURATION=${DURATION:-8s}
CONNECTIONS=${CONNECTIONS:-16}
ROUNDS=${ROUNDS:-3}
TOKENS=${TOKENS:-2000}
APP_PORT=18180
PLAIN_PORT=18181
JWT_PORT=18182
HERE=$(cd "$(dirname "$0")" && pwd)
FIXTURES=$HERE/../tests/fixtures
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

for tool in wrk nginx openssl curl; do
  command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install -y wrk nginx openssl curl"; exit 1; }
done

# The app: nginx answering a fixed 200 (one worker).
# shellcheck source=nginx-upstream.sh
. "$HERE/nginx-upstream.sh"
nginx_upstream "$WORK" $APP_PORT

# RS256 tokens for the fixture key "rsa-a".
b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
HEADER=$(printf '{"alg":"RS256","typ":"JWT","kid":"rsa-a"}' | b64url)
EXP=$(($(date +%s) + 3600))
sign() {
  local payload
  payload=$(printf '{"iss":"https://idp.example","aud":"api","sub":"user-%s","exp":%s}' "$1" "$EXP" | b64url)
  printf '%s.%s.%s\n' "$HEADER" "$payload" \
    "$(printf '%s.%s' "$HEADER" "$payload" | openssl dgst -sha256 -sign "$FIXTURES/jwt-rsa-a.pem" | b64url)"
}
echo "signing $TOKENS tokens..."
for i in $(seq 1 "$TOKENS"); do sign "$i"; done >"$WORK/tokens"
ONE=$(head -1 "$WORK/tokens")
# wrk takes the many tokens in turn, one per request.
{
  echo 'local tokens, n = {}, 0'
  echo "for line in io.lines(\"$WORK/tokens\") do n = n + 1; tokens[n] = line end"
  echo 'local i = 0'
  echo 'request = function() i = i % n + 1'
  echo '  return wrk.format("GET", "/", {["Host"] = "api", ["Authorization"] = "Bearer " .. tokens[i]}) end'
} >"$WORK/many.lua"

proxy_config() {
  local inbound=$1
  printf '{"version":"bench","service":"api","mesh":{"mtls":"disabled"},"inbound":%s}\n' "$inbound"
}
proxy_config '{}' >"$WORK/plain.json"
proxy_config "{\"authorization\":{\"defaultAction\":\"deny\",\"rules\":[{\"source\":\"*\",\"permissions\":[{\"action\":\"allow\"}]}]},
  \"jwt\":{\"providers\":[{\"issuer\":\"https://idp.example\",\"audiences\":[\"api\"],\"jwks\":{\"file\":\"$FIXTURES/jwks-a.json\"}}]}}" \
  >"$WORK/jwt.json"

if [ -z "${BIN:-}" ]; then
  cargo build --release -q -p gitmesh-proxy --example proxy
  BIN=${CARGO_TARGET_DIR:-target}/release/examples/proxy
fi
start() {
  RUST_LOG=warn "$BIN" --config "$1" --workers 1 --app 127.0.0.1:$APP_PORT \
    --inbound 127.0.0.1:"$2" --outbound 127.0.0.1:0 --admin 127.0.0.1:"$3" &
}
start "$WORK/plain.json" $PLAIN_PORT 18190
PLAIN_PID=$!
start "$WORK/jwt.json" $JWT_PORT 18191
JWT_PID=$!
sleep 1

ticks() { sed 's/.*) //' /proc/"$1"/stat | awk '{print $12 + $13}'; }
HZ=$(getconf CLK_TCK)
measure() {
  local name=$1 port=$2 pid=$3 before after out; shift 3
  before=$(ticks "$pid")
  out=$(wrk -t1 -c"$CONNECTIONS" -d"$DURATION" -H "Host: api" "$@" "http://127.0.0.1:$port/")
  after=$(ticks "$pid")
  if echo "$out" | grep -q "Non-2xx"; then
    echo "$name: refused requests:"; echo "$out"; exit 1
  fi
  awk -v name="$name" -v hz="$HZ" -v t=$((after - before)) \
    -v n="$(echo "$out" | awk '/requests in/ {print $1}')" \
    -v rps="$(echo "$out" | awk '/Requests\/sec/ {print $2}')" \
    'BEGIN {printf "%-14s req/s %9.0f  cpu/req %7.2fus\n", name, rps, t / hz * 1e6 / n}'
}
for round in $(seq 1 "$ROUNDS"); do
  echo "== round $round"
  measure "no-jwt" $PLAIN_PORT $PLAIN_PID
  measure "one-token" $JWT_PORT $JWT_PID -H "Authorization: Bearer $ONE"
  measure "$TOKENS-tokens" $JWT_PORT $JWT_PID -s "$WORK/many.lua"
done
echo "== accepted tokens by verification"
curl -s http://127.0.0.1:18191/metrics | grep '^gitmesh_jwt_accepted_total' ||
  echo "(none: this build has no cache of verified tokens)"
