//! Load + validate + compile a synthetic mesh in-process and print the wall
//! time of each stage and the process's peak memory (VmHWM), the figures the
//! foundation issue asks for:
//!
//!     cargo run --release -p gitmesh-reconciler --example pipeline_peak -- 10000

use std::time::Instant;

use gitmesh_reconciler::compile::{CanaryWeights, compile};
use gitmesh_reconciler::lint::lint;
use gitmesh_reconciler::synthetic;

fn peak_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map_or(10_000, |n| n.parse().expect("N is a number"));
    let files = synthetic::mesh(n);
    let before = peak_kib();
    let start = Instant::now();
    let result = lint(&files);
    let linted = start.elapsed();
    assert_eq!(result.errors(), 0, "the synthetic mesh lints clean");
    let snapshots = compile(&result.policies, "bench", &CanaryWeights::new());
    let total = start.elapsed();
    println!(
        "{n} services: load+validate {:.0} ms, compile {:.0} ms, total {:.0} ms; \
         {} snapshots; peak memory {} MiB (before loading: {} MiB)",
        linted.as_secs_f64() * 1e3,
        (total - linted).as_secs_f64() * 1e3,
        total.as_secs_f64() * 1e3,
        snapshots.len(),
        peak_kib().unwrap_or(0) / 1024,
        before.unwrap_or(0) / 1024,
    );
}
