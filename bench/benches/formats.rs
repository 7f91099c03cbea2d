//! `cargo bench -p bench --bench formats`: the decode and prefill products `g4q bench` times, as
//! Criterion groups `formats/<type>/<decode|prefill128>/<path>/<shape>` for regression tracking.
//! E2B's shapes `ffn_up` and `attn_q` over a 64 MiB working set, every native kernel path, the
//! global rayon pool (all threads). `G4Q_BENCH_TYPES=Q4_K,Q8_0` chooses the formats (default:
//! Q4_K, Q8_0, Q4_0, IQ4_XS, F16, AWQ_INT4_G128).

use std::time::Duration;

use bench::formats::{self, Format, Op, Product};
use convert::Variant;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kernels::simd::{self, Path};

fn formats_bench(c: &mut Criterion) {
    let list = std::env::var("G4Q_BENCH_TYPES")
        .unwrap_or_else(|_| "Q4_K,Q8_0,Q4_0,IQ4_XS,F16,AWQ_INT4_G128".to_string());
    let types: Vec<Format> = list
        .split(',')
        .map(|s| s.parse().unwrap_or_else(|e| panic!("G4Q_BENCH_TYPES: {e}")))
        .collect();
    let shapes: Vec<_> = formats::shapes(&formats::variant_config(Variant::E2B))
        .into_iter()
        .filter(|s| s.name == "ffn_up" || s.name == "attn_q")
        .collect();
    let paths: Vec<Path> = simd::available_paths()
        .into_iter()
        .filter(|p| *p != Path::Neon || cfg!(target_arch = "aarch64"))
        .collect();
    for format in types {
        for op in [Op::Decode, Op::Prefill(128)] {
            let mut g = c.benchmark_group(format!("formats/{format}/{op}"));
            g.sample_size(10)
                .warm_up_time(Duration::from_millis(300))
                .measurement_time(Duration::from_secs(1));
            for path in &paths {
                if matches!(format, Format::AwqInt4 { .. }) && *path != paths[0] {
                    continue;
                }
                for shape in &shapes {
                    let mut p = Product::new(format, shape, op, 64 << 20)
                        .expect("E2B widths are whole blocks");
                    g.throughput(Throughput::Bytes(p.matrix_bytes() as u64));
                    let id = format!("{}/{}", formats::path_name(format, *path), shape.name);
                    g.bench_function(id, |b| b.iter(|| p.run(*path).expect("product runs")));
                }
            }
            g.finish();
        }
    }
}

criterion_group!(benches, formats_bench);
criterion_main!(benches);
