//! Forward-pass benches:
//! - `gemm_backend`: the single-threaded panel GEMM the forward pass runs (64 weight rows x K
//!   times K x T activations), `verify::gemm` (f32 and bf16 weights) against `gemm` 0.18 and
//!   `matrixmultiply` 0.3, in GFLOP/s (Criterion's "elements" are floating-point operations);
//! - `linear`: `verify::linear::linear` end to end (bf16 GEMM + rayon over panels) on E2B's
//!   MLP shape, 1 and 2 threads, GFLOP/s;
//! - `forward/fixture`: the whole forward pass on the largest fixture (tokens/s, 1 and 2 threads);
//! - `forward/synth-e2b-2l`: the same on a synthetic E2B 2-layer checkpoint made with
//!   `g4q synth --variant e2b --layers 2 --out target/bench-synth/e2b-2l` (or the folder in
//!   `G4Q_SYNTH_E2B`); skipped with a message when absent.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use verify::gemm::{Isa, Panel};
use verify::linear::{gemm_f32, linear};
use verify::weights::{DenseMatrix, ElemType};
use verify::{ForwardOptions, Model, NoObserver};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.gen_range(-1.0f32..1.0)).collect()
}

fn pool(n: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build()
        .unwrap()
}

fn quick<'a>(
    c: &'a mut Criterion,
    name: &str,
) -> criterion::BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut g = c.benchmark_group(name);
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    g
}

fn gemm_backend(c: &mut Criterion) {
    let mut g = quick(c, "gemm_backend");
    let m = verify::linear::PANEL;
    for &(k, t) in &[(1536usize, 64usize), (1536, 256), (6144, 256)] {
        let a = random(m * k, 1);
        let b = random(k * t, 2);
        let mut out = vec![0f32; m * t];
        g.throughput(Throughput::Elements((2 * m * k * t) as u64));
        let id = format!("{m}x{k}x{t}");
        g.bench_function(BenchmarkId::new("gemm", &id), |bch| {
            bch.iter(|| {
                // SAFETY: a is [m, k] row-major, b is read as the [k, t] transpose of a [t, k]
                // buffer, out is [m, t] row-major; every stride stays inside its buffer.
                unsafe {
                    gemm::gemm(
                        m,
                        t,
                        k,
                        out.as_mut_ptr(),
                        1,
                        t as isize,
                        false,
                        a.as_ptr(),
                        1,
                        k as isize,
                        b.as_ptr(),
                        k as isize,
                        1,
                        0.0,
                        1.0,
                        false,
                        false,
                        false,
                        gemm::Parallelism::None,
                    )
                }
            })
        });
        // What verify::linear ran before `verify::gemm` (matrixmultiply::sgemm, one thread).
        g.bench_function(BenchmarkId::new("matrixmultiply", &id), |bch| {
            bch.iter(|| gemm_f32(m, t, k, &a, (k, 1), &b, (1, k), &mut out, (t, 1)))
        });
        // What verify::linear runs: verify::gemm on f32 and on bf16 weights ([t, m] output).
        let isa = Isa::active();
        g.bench_function(BenchmarkId::new("verify-gemm-f32", &id), |bch| {
            bch.iter(|| verify::gemm::gemm(isa, &b, t, k, Panel::F32(&a), m, &mut out, m))
        });
        let a16: Vec<u8> = a
            .iter()
            .flat_map(|v| ((v.to_bits() >> 16) as u16).to_le_bytes())
            .collect();
        g.bench_function(BenchmarkId::new("verify-gemm-bf16", &id), |bch| {
            bch.iter(|| verify::gemm::gemm(isa, &b, t, k, Panel::Bf16(&a16), m, &mut out, m))
        });
    }
    g.finish();
}

fn linear_bench(c: &mut Criterion) {
    let mut g = quick(c, "linear");
    let (out, k, t) = (6144usize, 1536usize, 128usize);
    let w: Vec<u8> = random(out * k, 3)
        .iter()
        .flat_map(|v| ((v.to_bits() >> 16) as u16).to_le_bytes())
        .collect();
    let m = DenseMatrix::new(
        "mlp.gate_proj.weight",
        ElemType::BF16,
        out,
        k,
        Cow::Owned(w),
    )
    .unwrap();
    let x = random(t * k, 4);
    g.throughput(Throughput::Elements((2 * out * k * t) as u64));
    for threads in [1, 2] {
        let p = pool(threads);
        g.bench_function(
            BenchmarkId::new(format!("bf16-{out}x{k}-T{t}"), threads),
            |b| b.iter(|| p.install(|| linear(&x, t, &m).unwrap())),
        );
    }
    g.finish();
}

/// The fixture folder of the full set (`G4Q_FIXTURES`, else `../shared/fixtures`) whose
/// released-bf16 weights are biggest.
fn largest_fixture() -> Option<PathBuf> {
    let dir = testkit::oracles::full_set("G4Q_FIXTURES", "fixtures")?;
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("released-bf16")))
        .filter_map(|p| {
            let size = std::fs::metadata(p.join("model.safetensors")).ok()?.len();
            Some((size, p))
        })
        .max()
        .map(|(_, p)| p)
}

fn bench_model(c: &mut Criterion, label: &str, dir: &Path, t: usize) {
    let ckpt = convert::Checkpoint::open(dir).expect("checkpoint opens");
    let vocab = ckpt.config().vocab_size as u32;
    let model = Model::load(&ckpt).expect("model loads");
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut ids: Vec<u32> = (0..t).map(|_| rng.gen_range(3..vocab)).collect();
    ids[0] = 2;
    let mut g = quick(c, "forward");
    g.throughput(Throughput::Elements(t as u64));
    for threads in [1, 2] {
        let p = pool(threads);
        g.bench_function(BenchmarkId::new(format!("{label}-T{t}"), threads), |b| {
            b.iter(|| {
                p.install(|| {
                    model
                        .forward(
                            &ids,
                            ForwardOptions::default(),
                            &mut NoObserver,
                            &mut |_, _| {},
                        )
                        .unwrap()
                })
            })
        });
    }
    g.finish();
}

fn forward_bench(c: &mut Criterion) {
    match largest_fixture() {
        Some(dir) => {
            let name = dir
                .parent()
                .unwrap()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .to_string();
            bench_model(c, &format!("fixture-{name}"), &dir, 256);
        }
        None => println!("forward/fixture: no fixtures found, skipped"),
    }
    let synth = std::env::var_os("G4Q_SYNTH_E2B")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/bench-synth/e2b-2l"));
    if synth.join("config.json").is_file() {
        bench_model(c, "synth-e2b-2l", &synth, 128);
    } else {
        println!(
            "forward/synth-e2b-2l: {} absent, skipped (make it with `g4q synth --variant e2b \
             --layers 2 --out target/bench-synth/e2b-2l`)",
            synth.display()
        );
    }
}

fn main_benches(c: &mut Criterion) {
    gemm_backend(c);
    linear_bench(c);
    forward_bench(c);
}

criterion_group!(benches, main_benches);
criterion_main!(benches);
