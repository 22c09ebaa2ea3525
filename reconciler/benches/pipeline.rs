//! The whole checking-and-compiling half of the pipeline on a synthetic
//! repo of 10,000 services (each with a route and intentions): load (YAML,
//! positions, schema, types), semantic checks, secret scanning, compile.
//!
//!     cargo bench -p gitmesh-reconciler --bench pipeline

use criterion::{Criterion, criterion_group, criterion_main};
use gitmesh_reconciler::compile::{CanaryWeights, compile};
use gitmesh_reconciler::lint::lint;
use gitmesh_reconciler::synthetic;

fn pipeline(c: &mut Criterion) {
    let mut group = c.benchmark_group("pipeline");
    group.sample_size(10);
    for n in [100, 1_000, 10_000] {
        let files = synthetic::mesh(n);
        group.bench_function(format!("lint+compile/{n}"), |b| {
            b.iter(|| {
                let result = lint(&files);
                assert_eq!(result.errors(), 0);
                compile(&result.policies, "bench", &CanaryWeights::new())
            })
        });
    }
    let files = synthetic::mesh(10_000);
    let result = lint(&files);
    group.bench_function("compile/10000", |b| {
        b.iter(|| compile(&result.policies, "bench", &CanaryWeights::new()))
    });
    group.finish();
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
