//! Writes a synthetic policy repo to a directory, to measure the real
//! binary (time, peak memory) on a big mesh:
//!
//!     cargo run --release -p gitmesh-reconciler --example gen_mesh -- /tmp/mesh10k 10000
//!     /usr/bin/time -v target/release/gitmesh compile /tmp/mesh10k > /dev/null

use gitmesh_reconciler::source::Content;

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = std::path::PathBuf::from(args.next().expect("usage: gen_mesh DIR [N]"));
    let n: usize = args
        .next()
        .map_or(10_000, |n| n.parse().expect("N is a number"));
    for file in gitmesh_reconciler::synthetic::mesh(n) {
        let path = dir.join(&file.path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let Content::Bytes(bytes) = file.content else {
            unreachable!()
        };
        std::fs::write(path, bytes).unwrap();
    }
    println!("wrote {n} services to {}", dir.display());
}
