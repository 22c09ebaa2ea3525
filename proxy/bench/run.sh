#!/usr/bin/env bash
# One-hop reverse-proxy benchmark on loopback: direct to the upstream, then
# through gitmesh proxy, nginx and HAProxy, each with one worker thread, with
# the same load. Bounded in time (about ROUNDS × 4 × (DURATION + FIXED_SECONDS)).
#
#   apt-get install -y wrk nginx haproxy      # Debian packages
#   proxy/bench/run.sh                        # from the repository root
#
# Per round and target (targets back to back, order rotated each round):
#   - saturation: wrk, CONNECTIONS keep-alive connections, DURATION;
#   - CPU time per request: the proxy's utime+stime (/proc/PID/stat, all of
#     its processes) over the saturation run, divided by the requests wrk made;
#   - p99 at a fixed rate: loadgen.rs (open loop, latency from each request's
#     scheduled time) at FIXED_RATE req/s for FIXED_SECONDS;
#   - the whole machine over the saturation run (/proc/stat): CPU time per
#     request of wrk, upstream and proxy together, and the cores kept busy.
#     Where the load shares the machine with the proxy, req/s is the one
#     divided by the other;
#   - how often the proxy was preempted (involuntary context switches per
#     100 requests): where busy cores are lost on a shared machine.
# Prints each round, then the medians over ROUNDS and gitmesh's ratios
# (the median over rounds of each round's ratio), with their spread and a
# verdict per target.
#
# FIXED_SECONDS=0 skips the fixed-rate runs and DIRECT=0 the direct ones:
# with ROUNDS=28 DURATION=6s that is a long interleaved A/B of saturation
# alone.
#
# HEADERS=host (default) sends only `Host`; HEADERS=browser adds the nine
# headers a browser's request carries through an application (user agent,
# accept*, a bearer token, traceparent, a request id, a cookie, a referer).
#
# LAYOUT=split (default) gives the proxy under test a CPU of its own (the
# last one) and runs wrk, loadgen and the upstream on the others (taskset),
# the same for every proxy: "one proxy worker thread" then means one core.
# LAYOUT=shared lets the scheduler place everything: on a two-core machine
# a round's req/s then follows how often the proxy is preempted by the
# load it serves, for every proxy, by up to 25% (see proxy/bench/README.md,
# "Preemption decides the round"). Each round prints how busy the proxy's
# CPU and the load's CPUs were: a split round with the load's CPUs near
# 100% was bounded by the load side, and the proxy's req/s in it is a lower
# bound of what the proxy can do.
set -euo pipefail

DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
ROUNDS=${ROUNDS:-3}
FIXED_RATE=${FIXED_RATE:-2000}
FIXED_SECONDS=${FIXED_SECONDS:-10}
FIXED_CONNECTIONS=${FIXED_CONNECTIONS:-16}
DIRECT=${DIRECT:-1}
HEADERS=${HEADERS:-host}
LAYOUT=${LAYOUT:-split}
UPSTREAM_PORT=18080
GITMESH_PORT=18081
NGINX_PORT=18082
HAPROXY_PORT=18083
ADMIN_PORT=18090
HERE=$(cd "$(dirname "$0")" && pwd)
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

for tool in wrk nginx haproxy rustc; do
  command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install -y wrk nginx haproxy"; exit 1; }
done
rustc -O -o "$WORK/loadgen" "$HERE/loadgen.rs"

# CPU placement: LOAD runs wrk, loadgen and the upstream, PROXY the proxy
# under test (both empty in the shared layout).
NCPU=$(nproc)
PROXY_CPU=$((NCPU - 1))
case $LAYOUT in
  split)
    if [ "$NCPU" -lt 2 ]; then
      echo "LAYOUT=split needs two CPUs, this machine has $NCPU: LAYOUT=shared"
      LAYOUT=shared
    fi ;;
  shared) ;;
  *) echo "LAYOUT is split or shared, not $LAYOUT"; exit 2 ;;
esac
if [ "$LAYOUT" = split ]; then
  command -v taskset >/dev/null || { echo "missing taskset: apt-get install -y util-linux"; exit 1; }
  LOAD=(taskset -c "0-$((PROXY_CPU - 1))")
  PROXY=(taskset -c "$PROXY_CPU")
  # One wrk thread per CPU it has.
  THREADS=${THREADS:-$PROXY_CPU}
  echo "layout: split, the proxy on CPU $PROXY_CPU, wrk ($THREADS threads), loadgen and the upstream on CPUs 0-$((PROXY_CPU - 1))"
else
  LOAD=()
  PROXY=()
  THREADS=${THREADS:-2}
  echo "layout: shared, the scheduler places everything on $NCPU CPUs; wrk has $THREADS threads"
fi

# Request headers besides `Host: up`.
case $HEADERS in
  host) REQUEST_HEADERS=() ;;
  browser)
    REQUEST_HEADERS=(
      "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
      "Accept: application/json, text/plain, */*"
      "Accept-Language: en-US,en;q=0.5"
      "Accept-Encoding: gzip, deflate, br"
      "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1c2VyLTQyIn0.c2lnbmF0dXJl"
      "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
      "X-Request-Id: 7f2c1e9a-5b1d-4f0e-9c3a-2d8e6b4a1c7f"
      "Cookie: session=abc123; theme=dark"
      "Referer: http://frontend/products/42"
    ) ;;
  *) echo "HEADERS is host or browser, not $HEADERS"; exit 2 ;;
esac
WRK_HEADERS=(-H "Host: up")
for h in "${REQUEST_HEADERS[@]}"; do WRK_HEADERS+=(-H "$h"); done

# Upstream: nginx answering a fixed 200 (one worker).
# shellcheck source=nginx-upstream.sh
. "$HERE/nginx-upstream.sh"
nginx_upstream "$WORK" $UPSTREAM_PORT "${LOAD[@]}"
UPSTREAM_PID=$!

# nginx as a one-hop reverse proxy with upstream keep-alive.
cat >"$WORK/proxy.conf" <<CONF
worker_processes 1; daemon off; pid $WORK/proxy.pid; error_log stderr warn;
events { worker_connections 4096; }
http { access_log off;
  upstream up { server 127.0.0.1:$UPSTREAM_PORT; keepalive 64; }
  server { listen 127.0.0.1:$NGINX_PORT; keepalive_requests 100000;
    location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
CONF
"${PROXY[@]}" nginx -c "$WORK/proxy.conf" -p "$WORK" &
NGINX_PID=$!

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
"${PROXY[@]}" haproxy -f "$WORK/haproxy.cfg" &
HAPROXY_PID=$!

cat >"$WORK/gitmesh.json" <<CONF
{"version":"bench","service":"bench","mesh":{"mtls":"disabled"},
 "upstreams":[{"name":"up","endpoints":[{"address":"127.0.0.1:$UPSTREAM_PORT"}]}]}
CONF
cargo build --release -q -p gitmesh-proxy --example proxy
BIN=${CARGO_TARGET_DIR:-target}/release/examples/proxy
RUST_LOG=warn "${PROXY[@]}" "$BIN" --config "$WORK/gitmesh.json" --workers 1 \
  --outbound 127.0.0.1:$GITMESH_PORT --inbound 127.0.0.1:0 --admin 127.0.0.1:$ADMIN_PORT &
GITMESH_PID=$!
sleep 1

# CPU ticks of a process and its direct children (nginx's master and
# worker): "utime stime".
ticks() {
  local pid=$1 user=0 sys=0 p u s
  for p in $pid $(cat /proc/"$pid"/task/*/children 2>/dev/null); do
    [ -r /proc/"$p"/stat ] || continue
    # Fields after the ")" of comm: utime is the 12th, stime the 13th.
    read -r u s < <(sed 's/.*) //' /proc/"$p"/stat | awk '{print $12, $13}')
    user=$((user + u))
    sys=$((sys + s))
  done
  echo "$user $sys"
}
HZ=$(getconf CLK_TCK)

# Involuntary context switches of a process's threads and its direct
# children's.
preemptions() {
  local pid=$1 n=0 p
  for p in $pid $(cat /proc/"$pid"/task/*/children 2>/dev/null); do
    n=$((n + $(cat /proc/"$p"/task/*/status 2>/dev/null |
      awk '/^nonvoluntary_ctxt_switches/ {s += $2} END {print s + 0}')))
  done
  echo "$n"
}

# CPU ticks from /proc/stat of the proxy's CPU (the last one) and of the
# others together: "busy idle busy idle" (busy is user, nice, system, irq,
# softirq and steal; idle is idle and iowait). Their sum is the machine's.
cpu_ticks() {
  awk -v last="cpu$PROXY_CPU" '$1 ~ /^cpu[0-9]/ {
      b = $2 + $3 + $4 + $7 + $8 + $9; i = $5 + $6
      if ($1 == last) { pb += b; pi += i } else { lb += b; li += i } }
    END {print pb, pi, lb, li}' /proc/stat
}

# wrk prints latency with units; normalise to milliseconds.
to_ms() { awk '{v=$1; if (v ~ /us$/) {sub(/us$/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v*=1000}; printf "%.3f", v}'; }

RESULTS=$WORK/results
: >"$RESULTS"
measure() {
  local name=$1 port=$2 pid=$3 out before after cbefore cafter pbefore pafter
  local reqs rps p99 cpu user sys fixed fp99 fixed_note mcpu cores preempted
  local proxy_busy load_busy busy_note
  before=$(ticks "$pid")
  cbefore=$(cpu_ticks)
  pbefore=$(preemptions "$pid")
  out=$("${LOAD[@]}" wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "${WRK_HEADERS[@]}" "http://127.0.0.1:$port/")
  pafter=$(preemptions "$pid")
  cafter=$(cpu_ticks)
  after=$(ticks "$pid")
  reqs=$(echo "$out" | awk '/requests in/ {print $1}')
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p99=$(echo "$out" | awk '$1 == "99%" {print $2}' | to_ms)
  # CPU µs per request: user + kernel, then each (the kernel's share is
  # loopback TCP, about the same for every proxy; the user share is the
  # proxy's own work).
  read -r user sys < <(echo "$before $after" | awk -v hz="$HZ" -v n="$reqs" \
    '{printf "%.2f %.2f\n", ($3 - $1) / hz * 1e6 / n, ($4 - $2) / hz * 1e6 / n}')
  cpu=$(awk -v u="$user" -v s="$sys" 'BEGIN {printf "%.2f", u + s}')
  # The whole machine (load generator, upstream and proxy together): CPU
  # µs per request, and how many of its cores were busy. On a machine the
  # load shares with the proxy, saturation req/s is cores busy divided by
  # machine CPU per request. Then how busy the proxy's CPU and the load's
  # CPUs were (0 to 1 each; in the shared layout nothing is placed, and
  # only the machine's figures say anything).
  read -r mcpu cores proxy_busy load_busy < <(echo "$cbefore $cafter" | \
    awk -v hz="$HZ" -v n="$reqs" -v ncpu="$NCPU" \
    '{pb = $5 - $1; pi = $6 - $2; lb = $7 - $3; li = $8 - $4; b = pb + lb; i = pi + li
      printf "%.2f %.3f %.2f %.2f\n", b / hz * 1e6 / n, ncpu * b / (b + i),
        pb / (pb + pi + 1e-9), lb / (lb + li + 1e-9)}')
  preempted=$(awk -v a="$pbefore" -v b="$pafter" -v n="$reqs" 'BEGIN {printf "%.2f", (b - a) * 100 / n}')
  busy_note=
  [ "$LAYOUT" = split ] && busy_note="  busy: proxy CPU $proxy_busy, load CPUs $load_busy"
  sleep 1
  fp99=0 fixed_note=
  if [ "$FIXED_SECONDS" != 0 ]; then
    fixed=$("${LOAD[@]}" "$WORK/loadgen" "127.0.0.1:$port" up "$FIXED_RATE" "$FIXED_SECONDS" "$FIXED_CONNECTIONS" \
      "${REQUEST_HEADERS[@]}")
    fp99=$(echo "$fixed" | awk '{for (i = 1; i < NF; i++) if ($i == "p99") {sub(/ms$/, "", $(i+1)); print $(i+1)}}')
    fixed_note=$(printf '  fixed-%s p99 %8sms  (%s errors)' "$FIXED_RATE" "$fp99" "$(echo "$fixed" | awk '{print $4}')")
  fi
  printf '%-8s req/s %9s  sat-p99 %8sms  cpu/req %7sus (user %sus)  machine %sus/req on %s cores%s  preempted %s/100 req%s\n' \
    "$name" "$rps" "$p99" "$cpu" "$user" "$mcpu" "$cores" "$busy_note" "$preempted" "$fixed_note"
  echo "$name $rps $p99 $cpu $fp99 $user $sys $mcpu $cores $preempted $proxy_busy $load_busy" >>"$RESULTS"
  sleep 1
}

TARGETS=("gitmesh $GITMESH_PORT $GITMESH_PID" "nginx $NGINX_PORT $NGINX_PID" "haproxy $HAPROXY_PORT $HAPROXY_PID")
for round in $(seq 1 "$ROUNDS"); do
  echo "== round $round"
  if [ "$DIRECT" != 0 ]; then
    # shellcheck disable=SC2086
    measure direct $UPSTREAM_PORT $UPSTREAM_PID
  fi
  for i in 0 1 2; do
    # shellcheck disable=SC2086
    measure ${TARGETS[$(((i + round - 1) % 3))]}
  done
done

echo "== gitmesh resident memory after load"
grep VmRSS "/proc/$GITMESH_PID/status"

echo "== medians over $ROUNDS rounds"
echo "(layout: $LAYOUT)"
python3 - "$RESULTS" "$FIXED_RATE" "$FIXED_SECONDS" "$LAYOUT" <<'PY'
import random, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    name, *vals = line.split()
    rows.setdefault(name, []).append([float(v) for v in vals])
med = {n: [statistics.median(c) for c in zip(*r)] for n, r in rows.items()}
fixed = sys.argv[3] != "0"
split = sys.argv[4] == "split"
# Which side a split round's req/s was bounded by: the CPU that was (near)
# fully busy. "proxy and load" when each was; the proxy's figure is then a
# lower bound of what it can do.
def bound(proxy_busy, load_busy):
    if not split:
        return "-"
    sides = [name for name, busy in (("proxy", proxy_busy), ("load", load_busy)) if busy >= 0.97]
    return " and ".join(sides) if sides else "neither"
print(f"| target  | req/s  | p99 (saturated) | CPU µs/req | user | kernel | p99 at {sys.argv[2]}/s "
      "| machine µs/req | cores busy | proxy CPU busy | load CPUs busy | bounded by | preempted /100 req |")
print("|---------|-------:|------:|------:|------:|------:|------:|------:|------:|------:|------:|------|------:|")
for n in ["direct", "gitmesh", "nginx", "haproxy"]:
    if n in med:
        rps, p99, cpu, fp99, user, kernel, mcpu, cores, preempted, proxy_busy, load_busy = med[n]
        fp99 = f"{fp99:.2f}ms" if fixed else "-"
        # Direct has no proxy: its "bound" is the load side's ceiling.
        side = "-" if n == "direct" else bound(proxy_busy, load_busy)
        busy = f"{proxy_busy:.2f} | {load_busy:.2f}" if split else "- | -"
        print(f"| {n:<7} | {rps:,.0f} | {p99:.2f}ms | {cpu:.1f} | {user:.1f} | {kernel:.1f} | {fp99} "
              f"| {mcpu:.1f} | {cores:.2f} | {busy} | {side} | {preempted:.1f} |")
# Ratios per round (each round runs the targets back to back), then their
# median: steadier on a shared machine than a ratio of medians.
g = rows["gitmesh"]
for other in ["nginx", "haproxy"]:
    o = rows[other]
    r = [statistics.median(g[i][k] / o[i][k] if o[i][k] else float("inf") for i in range(len(g)))
         for k in range(9)]
    fp99 = f"{r[3]:.2f}x" if fixed else "-"
    print(f"gitmesh/{other} (median of per-round ratios): req/s {r[0]:.2f}x  "
          f"cpu/req {r[2]:.2f}x (user {r[4]:.2f}x, kernel {r[5]:.2f}x)  "
          f"p99@{sys.argv[2]}/s {fp99}  p99@saturation {r[1]:.2f}x  "
          f"machine cpu/req {r[6]:.2f}x  cores busy {r[7]:.2f}x  preempted {r[8]:.2f}x")

# Each target of issue 3 against its bound, with the spread of the
# per-round ratios and a 95% bootstrap interval of their median: "met" when
# the whole interval is on the right side of 1, "not met" when it is all
# on the wrong side, else "parity (within noise)".
rng = random.Random(3)
def verdict(ratios, higher_is_better):
    n = len(ratios)
    meds = sorted(statistics.median(rng.choices(ratios, k=n)) for _ in range(2000))
    lo, hi = meds[50], meds[1949]
    good = (lambda x: x >= 1) if higher_is_better else (lambda x: x <= 1)
    if n < 5:
        word = "too few rounds for a verdict (ROUNDS >= 5)"
    elif good(lo) and good(hi):
        word = "met"
    elif not good(lo) and not good(hi):
        word = "not met"
    else:
        word = "parity (within noise)"
    wins = sum(good(x) for x in ratios)
    return (f"median {statistics.median(ratios):.2f}x, rounds {min(ratios):.2f}-{max(ratios):.2f}x, "
            f"95% CI {lo:.2f}-{hi:.2f}x, {wins}/{n} rounds on target: {word}")
targets = [("saturation req/s >= nginx", "nginx", 0, True),
           ("saturation req/s >= HAProxy", "haproxy", 0, True),
           ("CPU per request <= nginx", "nginx", 2, False)]
if fixed:
    targets.append((f"p99 at {sys.argv[2]}/s <= nginx", "nginx", 3, False))
print("issue 3's targets:")
for label, other, k, higher in targets:
    o = rows[other]
    ratios = [g[i][k] / o[i][k] for i in range(len(g))]
    print(f"  {label:<28} {verdict(ratios, higher)}")

# In the shared layout, on this kind of machine a round's req/s follows
# how often the scheduler preempted the proxy in it (each proxy falls into
# that state some rounds and not others; see proxy/bench/README.md,
# "Preemption decides the round"). A least-squares line of req/s on preemptions per target, and
# its req/s at one preemption count for all: a comparison with the
# scheduler's share of the noise taken out. Not a target; the verdicts
# above use the raw ratios.
names = ["gitmesh", "nginx", "haproxy"]
if not split and len(g) >= 5 and all(statistics.pvariance([r[8] for r in rows[n]]) > 0 for n in names):
    x0 = statistics.median(r[8] for n in names for r in rows[n])
    at = {}
    print(f"req/s against preemptions per 100 requests (fitted at {x0:.1f}, the median of all rounds):")
    for n in names:
        x = [r[8] for r in rows[n]]
        y = [r[0] for r in rows[n]]
        slope, intercept = statistics.linear_regression(x, y)
        at[n] = intercept + slope * x0
        print(f"  {n:<8} {at[n]:,.0f} req/s, {slope:+,.0f} per preemption, r {statistics.correlation(x, y):.2f}")
    print(f"  gitmesh/nginx {at['gitmesh'] / at['nginx']:.2f}x, "
          f"gitmesh/haproxy {at['gitmesh'] / at['haproxy']:.2f}x at equal preemption")
PY
