//! A tiny open-loop HTTP/1.1 load generator for `run.sh`: sends GET requests
//! at a fixed total rate over keep-alive connections and reports latency
//! percentiles measured from each request's *scheduled* send time, so a stall
//! is not hidden by the generator waiting for it (no coordinated omission).
//! Standard library only: `rustc -O -o loadgen proxy/bench/loadgen.rs`.
//!
//!   loadgen ADDR HOST RATE SECONDS CONNECTIONS [HEADER ...]
//!
//! Each HEADER ("Name: value") is sent with every request, after `Host`.
//!
//! Talks only to the address it is given (run.sh passes 127.0.0.1 ports) and
//! stops by itself after SECONDS.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 6 {
        eprintln!("usage: loadgen ADDR HOST RATE SECONDS CONNECTIONS [HEADER ...]");
        std::process::exit(2);
    }
    let addr = args[1].clone();
    let host = args[2].clone();
    let rate: f64 = args[3].parse().expect("RATE");
    let seconds: f64 = args[4].parse().expect("SECONDS");
    let conns: usize = args[5].parse().expect("CONNECTIONS");
    let interval = Duration::from_secs_f64(conns as f64 / rate);
    let per_conn = (rate * seconds / conns as f64) as usize;
    let start = Instant::now() + Duration::from_millis(50);
    let extra: String = args[6..].iter().map(|h| format!("{h}\r\n")).collect();
    let request = format!("GET / HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n").into_bytes();
    let threads: Vec<_> = (0..conns)
        .map(|c| {
            let addr = addr.clone();
            let request = request.clone();
            // Stagger the connections evenly over one interval.
            let offset = interval.mul_f64(c as f64 / conns as f64);
            std::thread::spawn(move || run(&addr, &request, start + offset, interval, per_conn))
        })
        .collect();
    let mut lat: Vec<u64> = Vec::new();
    let mut errors = 0;
    for t in threads {
        let (l, e) = t.join().expect("worker");
        lat.extend(l);
        errors += e;
    }
    lat.sort_unstable();
    let pct = |p: f64| -> f64 {
        if lat.is_empty() {
            return f64::NAN;
        }
        let i = ((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1;
        lat[i] as f64 / 1000.0
    };
    let elapsed = start.elapsed().as_secs_f64();
    println!(
        "requests {} errors {} rate {:.0}/s p50 {:.3}ms p90 {:.3}ms p99 {:.3}ms p99.9 {:.3}ms max {:.3}ms",
        lat.len(),
        errors,
        lat.len() as f64 / elapsed,
        pct(0.50),
        pct(0.90),
        pct(0.99),
        pct(0.999),
        pct(1.0)
    );
}

/// One connection: sends `count` requests on the schedule, returns latencies
/// in microseconds and the number of failed requests.
fn run(
    addr: &str,
    request: &[u8],
    first: Instant,
    interval: Duration,
    count: usize,
) -> (Vec<u64>, usize) {
    let mut lat = Vec::with_capacity(count);
    let mut errors = 0;
    let mut stream: Option<TcpStream> = None;
    let mut buf = vec![0u8; 16 * 1024];
    let deadline = first + interval * count as u32 + Duration::from_secs(5);
    for i in 0..count {
        let due = first + interval * i as u32;
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        if Instant::now() > deadline {
            errors += count - i;
            break;
        }
        if stream.is_none() {
            match TcpStream::connect(addr) {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                    stream = Some(s);
                }
                Err(_) => {
                    errors += 1;
                    continue;
                }
            }
        }
        let s = stream.as_mut().expect("connected");
        if s.write_all(request).is_err() || !read_response(s, &mut buf) {
            errors += 1;
            stream = None;
            continue;
        }
        lat.push(due.elapsed().as_micros() as u64);
    }
    (lat, errors)
}

/// Reads one response with a Content-Length body; `false` on any failure.
fn read_response(s: &mut TcpStream, buf: &mut [u8]) -> bool {
    let mut have = 0;
    loop {
        let n = match s.read(&mut buf[have..]) {
            Ok(0) | Err(_) => return false,
            Ok(n) => n,
        };
        have += n;
        let Some(end) = find(&buf[..have], b"\r\n\r\n") else {
            if have == buf.len() {
                return false;
            }
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        if !head.starts_with("http/1.1 2") {
            return false;
        }
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        let mut body = have - (end + 4);
        while body < len {
            match s.read(buf) {
                Ok(0) | Err(_) => return false,
                Ok(n) => body += n,
            }
        }
        return true;
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
