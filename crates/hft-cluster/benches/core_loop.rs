//! Criterion bench of the engine's core loop (book → strategy → risk → OMS → encode).

use criterion::{Criterion, Throughput};
use hft_cluster::bench::CoreLoop;
use hft_config::Config;

fn bench_core_loop(c: &mut Criterion) {
    let config = Config::default_embedded();
    let mut bench = CoreLoop::new(&config, 1).expect("core loop set-up");
    let mut group = c.benchmark_group("core_loop");
    group.throughput(Throughput::Elements(1_000));
    group.bench_function("1000_events", |b| b.iter(|| bench.run(1_000)));
    group.finish();
}

// What `criterion_group!`/`criterion_main!` expand to, written out because the
// macro's generated `pub fn` trips the workspace's `missing_docs` lint.
fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench_core_loop(&mut c);
    c.final_summary();
}
