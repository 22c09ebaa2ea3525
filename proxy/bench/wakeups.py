#!/usr/bin/env python3
"""Where the proxy's wakeups of wrk and the upstream land, and what follows.

Reads a `perf record` of scheduler events taken at saturation, e.g.

    perf record -e sched:sched_wakeup,sched:sched_switch,sched:sched_migrate_task \
        -a -o /tmp/sched.data -- sleep 1        # while run.sh's wrk is running
    proxy/bench/wakeups.py /tmp/sched.data proxy    # or haproxy, nginx

and counts, for each wakeup of `wrk` or `nginx` made by the proxy (the
event's current task), whether it was placed on the proxy's own CPU, and
then whether the wakee preempted the proxy there, ran after something
else, or was migrated first (see proxy/bench/README.md, "Preemption
decides the round").
"""
import sys, re, subprocess, collections
if len(sys.argv) != 3:
    sys.exit(__doc__)
f, proxy = sys.argv[1], sys.argv[2]  # perf.data, the proxy's comm
out = subprocess.run(["perf","script","-i",f,"-F","comm,pid,cpu,time,event,trace"],capture_output=True,text=True).stdout
pending = {}  # wakee pid -> (cpu, kind)
stats = collections.Counter()
for line in out.splitlines():
    m = re.match(r"\s*(.+?)\s+(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+sched:(\w+):\s+(.*)", line)
    if not m: continue
    comm, pid, cpu, t, ev, tr = m.group(1), int(m.group(2)), int(m.group(3)), float(m.group(4)), m.group(5), m.group(6)
    if ev == "sched_wakeup":
        w = re.search(r"comm=(\S+) pid=(\d+) .*target_cpu=(\d+)", tr)
        wc, wp, tc = w.group(1), int(w.group(2)), int(w.group(3))
        if comm == proxy and wc in ("wrk", "nginx"):
            same = tc == cpu
            stats[(wc, "woken onto proxy's cpu" if same else "woken onto other cpu")] += 1
            if same: pending[wp] = (cpu, wc)
    elif ev == "sched_migrate_task":
        w = re.search(r"comm=(\S+) pid=(\d+) .*orig_cpu=(\d+) dest_cpu=(\d+)", tr)
        wp = int(w.group(2))
        if wp in pending:
            stats[(pending[wp][1], "  then migrated before running")] += 1
            del pending[wp]
    elif ev == "sched_switch":
        s = re.search(r"prev_comm=(\S+) prev_pid=(\d+) .*prev_state=(\S+) ==> next_comm=(\S+) next_pid=(\d+)", tr)
        pc, pp, ps, nc, np_ = s.group(1), int(s.group(2)), s.group(3), s.group(4), int(s.group(5))
        if np_ in pending and pending[np_][0] == cpu:
            kind = pending.pop(np_)[1]
            if pc == proxy and ps.startswith("R"):
                stats[(kind, "  then preempted the proxy")] += 1
            else:
                stats[(kind, f"  then ran after {pc} ({ps})")] += 1
for k in sorted(stats): print(f"{stats[k]:7d}  {k[0]:6} {k[1]}")
