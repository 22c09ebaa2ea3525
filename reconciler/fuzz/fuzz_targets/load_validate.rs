//! Fuzz target: arbitrary bytes as one YAML policy file through the whole
//! checking half of the pipeline (load, schema validation, semantic checks,
//! secret scanning), then, when that reports no errors, through compile.
//!
//! Any panic, hang or runaway allocation here is a bug: `gitmesh lint` runs
//! on untrusted pull requests, so it must turn every input into diagnostics.
#![no_main]

use gitmesh_reconciler::{compile, lint, source::SourceFile};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let result = lint::lint(&[SourceFile::new("fuzz.yaml", data.to_vec())]);
    if result.errors() == 0 {
        let _ = compile::compile(&result.policies, "fuzz", &Default::default());
    }
});
