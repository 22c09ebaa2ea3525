//! The traffic generator: one thread per caller sidecar sends
//! `GET http://api/items` through it on a keep-alive connection and records
//! every answer (which version, which route revision, status, latency).
//! [`Summary::of`] turns a slice of those records into shares per version,
//! error rates and p99s: pure, so the display and the JSON events agree.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

/// One answer (or failure) seen by the generator.
#[derive(Clone, Debug)]
pub struct Record {
    pub at: Instant,
    /// Index of the caller sidecar it went through.
    pub caller: usize,
    /// `x-demo-version` of the answer (`None`: no app answered).
    pub version: Option<String>,
    /// `x-demo-route` of the answer.
    pub route: Option<String>,
    /// 0 when the request failed before any status.
    pub status: u16,
    pub latency: Duration,
}

/// Everything recorded so far; shared by the generator threads (writers,
/// holding the lock for one push) and the runner (reader).
#[derive(Clone, Default)]
pub struct Recorder(Arc<Mutex<Vec<Record>>>);

impl Recorder {
    fn push(&self, record: Record) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(record);
    }

    /// The records made in `[from, to)`.
    pub fn between(&self, from: Instant, to: Instant) -> Vec<Record> {
        let all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        all.iter()
            .filter(|r| r.at >= from && r.at < to)
            .cloned()
            .collect()
    }
}

/// Runs the generator until `stop` is set: one thread per caller.
pub fn start(callers: &[SocketAddr], recorder: &Recorder, stop: &Arc<AtomicBool>) {
    for (caller, addr) in callers.iter().copied().enumerate() {
        let recorder = recorder.clone();
        let stop = stop.clone();
        std::thread::spawn(move || drive(caller, addr, &recorder, &stop));
    }
}

fn drive(caller: usize, addr: SocketAddr, recorder: &Recorder, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        let Ok(stream) = TcpStream::connect(addr) else {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let Ok(read_half) = stream.try_clone() else {
            continue;
        };
        let mut reader = BufReader::new(read_half);
        let mut writer = stream;
        while !stop.load(Ordering::Relaxed) {
            let start = Instant::now();
            let answer = writer
                .write_all(b"GET http://api/items HTTP/1.1\r\nhost: api\r\n\r\n")
                .ok()
                .and_then(|()| read_response(&mut reader));
            let failed = answer.is_none();
            let answer = answer.unwrap_or_default();
            recorder.push(Record {
                at: Instant::now(),
                caller,
                version: answer.version,
                route: answer.route,
                status: answer.status,
                latency: start.elapsed(),
            });
            if failed {
                std::thread::sleep(Duration::from_millis(100));
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

#[derive(Default)]
struct Answer {
    status: u16,
    version: Option<String>,
    route: Option<String>,
}

/// Reads one HTTP/1.1 response with a content-length body.
fn read_response(reader: &mut impl BufRead) -> Option<Answer> {
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut answer = Answer {
        status: line.split_whitespace().nth(1)?.parse().ok()?,
        ..Answer::default()
    };
    let mut length = 0;
    loop {
        line.clear();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            let value = value.trim();
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.parse().ok()?,
                "x-demo-version" => answer.version = Some(value.to_string()),
                "x-demo-route" => answer.route = Some(value.to_string()),
                _ => {}
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(answer)
}

/// What one version did over a slice of records.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionStats {
    pub requests: u64,
    /// Percent of all answered requests in the slice.
    pub share_pct: f64,
    pub errors: u64,
    pub error_rate_pct: f64,
    pub p99_ms: Option<f64>,
}

/// What one caller saw: its requests and the share of each route revision.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CallerStats {
    pub requests: u64,
    pub route_share_pct: BTreeMap<String, f64>,
}

/// A slice of traffic, summarized.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub requests: u64,
    /// Requests per second over the slice.
    pub rate: f64,
    /// Requests no app answered (connection or proxy failures).
    pub failed: u64,
    pub error_rate_pct: f64,
    pub versions: BTreeMap<String, VersionStats>,
    pub callers: Vec<CallerStats>,
}

impl Summary {
    pub fn of(records: &[Record], callers: usize, seconds: f64) -> Summary {
        let mut by_version: BTreeMap<String, Vec<&Record>> = BTreeMap::new();
        let mut failed = 0;
        for r in records {
            match &r.version {
                Some(v) => by_version.entry(v.clone()).or_default().push(r),
                None => failed += 1,
            }
        }
        let answered = (records.len() as u64 - failed).max(1) as f64;
        let is_error = |r: &Record| r.status == 0 || r.status >= 500;
        let errors = records.iter().filter(|r| is_error(r)).count() as f64;
        let versions = by_version
            .into_iter()
            .map(|(version, rs)| {
                let errors = rs.iter().filter(|r| is_error(r)).count() as u64;
                let mut latencies: Vec<f64> = rs
                    .iter()
                    .map(|r| r.latency.as_secs_f64() * 1000.0)
                    .collect();
                latencies.sort_by(f64::total_cmp);
                let stats = VersionStats {
                    requests: rs.len() as u64,
                    share_pct: round(rs.len() as f64 * 100.0 / answered),
                    errors,
                    error_rate_pct: round(errors as f64 * 100.0 / rs.len() as f64),
                    p99_ms: p99(&latencies),
                };
                (version, stats)
            })
            .collect();
        let callers = (0..callers)
            .map(|c| {
                let mine: Vec<&Record> = records
                    .iter()
                    .filter(|r| r.caller == c && r.route.is_some())
                    .collect();
                let mut route_share_pct = BTreeMap::new();
                for r in &mine {
                    *route_share_pct
                        .entry(r.route.clone().unwrap_or_default())
                        .or_insert(0.0) += 1.0;
                }
                for share in route_share_pct.values_mut() {
                    *share = round(*share * 100.0 / mine.len() as f64);
                }
                CallerStats {
                    requests: mine.len() as u64,
                    route_share_pct,
                }
            })
            .collect();
        Summary {
            requests: records.len() as u64,
            rate: if seconds > 0.0 {
                round(records.len() as f64 / seconds)
            } else {
                0.0
            },
            failed,
            error_rate_pct: if records.is_empty() {
                0.0
            } else {
                round(errors * 100.0 / records.len() as f64)
            },
            versions,
            callers,
        }
    }

    /// Share (percent) of answers from `version`.
    pub fn share(&self, version: &str) -> f64 {
        self.versions.get(version).map_or(0.0, |v| v.share_pct)
    }
}

/// The nearest-rank p99 of sorted values.
fn p99(sorted: &[f64]) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((sorted.len() as f64) * 0.99).ceil() as usize;
    Some(round(sorted[rank.clamp(1, sorted.len()) - 1]))
}

fn round(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(caller: usize, version: Option<&str>, route: &str, status: u16, ms: u64) -> Record {
        Record {
            at: Instant::now(),
            caller,
            version: version.map(str::to_string),
            route: version.map(|_| route.to_string()),
            status,
            latency: Duration::from_millis(ms),
        }
    }

    #[test]
    fn shares_errors_and_p99_per_version() {
        let mut records = Vec::new();
        for i in 0..80 {
            records.push(record(0, Some("v1"), "r1", 200, 10 + i % 10));
        }
        for i in 0..20 {
            let status = if i < 5 { 503 } else { 200 };
            records.push(record(1, Some("v2"), "r2", status, 30));
        }
        records.push(record(1, None, "", 0, 5000));
        let s = Summary::of(&records, 2, 2.0);
        assert_eq!(s.requests, 101);
        assert_eq!(s.failed, 1);
        assert_eq!(s.share("v1"), 80.0);
        assert_eq!(s.share("v2"), 20.0);
        assert_eq!(s.share("v3"), 0.0);
        assert_eq!(s.versions["v2"].errors, 5);
        assert_eq!(s.versions["v2"].error_rate_pct, 25.0);
        assert_eq!(s.versions["v1"].p99_ms, Some(19.0));
        assert_eq!(s.rate, 50.5);
        assert_eq!(s.callers[0].route_share_pct["r1"], 100.0);
        assert_eq!(s.callers[1].route_share_pct["r2"], 100.0);
        assert_eq!(s.callers[1].requests, 20);
    }

    #[test]
    fn nothing_recorded_is_an_empty_summary() {
        let s = Summary::of(&[], 3, 1.0);
        assert_eq!(s.requests, 0);
        assert_eq!(s.error_rate_pct, 0.0);
        assert_eq!(s.callers.len(), 3);
        assert!(s.versions.is_empty());
    }

    #[test]
    fn reads_version_and_route_headers() {
        let text = "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 5\r\nX-Demo-Version: v3\r\nx-demo-route: r2\r\n\r\nhello";
        let a = read_response(&mut BufReader::new(text.as_bytes())).unwrap();
        assert_eq!(a.status, 503);
        assert_eq!(a.version.as_deref(), Some("v3"));
        assert_eq!(a.route.as_deref(), Some("r2"));
    }
}
