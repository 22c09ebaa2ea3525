# Sourced by the bench scripts: the upstream (or app) every proxy in them
# forwards to, nginx with one worker answering a fixed 200 "hello\n".
#
#   nginx_upstream WORK PORT [PREFIX...]   # starts it in the background; $! is its PID
#
# PREFIX, if given, is the command it runs under (run.sh: `taskset -c 0`).
nginx_upstream() {
  local work=$1 port=$2
  shift 2
  cat >"$work/upstream-$port.conf" <<CONF
worker_processes 1; daemon off; pid $work/upstream-$port.pid; error_log stderr warn;
events { worker_connections 4096; }
http { access_log off; server { listen 127.0.0.1:$port; keepalive_requests 100000;
  location / { return 200 "hello\n"; } } }
CONF
  "$@" nginx -c "$work/upstream-$port.conf" -p "$work" &
}
