//! Dequantize and vec_dot throughput per ggml type and per kernel path (`cargo bench -p bench
//! --bench kernels`). Two outputs:
//!
//! 1. A table in the style of llama.cpp's `test-quantize-perf`: for each type and path, the
//!    best-of-N time per row turned into cycles per 32 values and GB/s. Cycles are
//!    `ns × GHz`, where GHz is *measured* at start-up by timing a chain of dependent integer
//!    multiplies (3-cycle latency on current x86 cores) and printed beside the nominal
//!    clock from /proc/cpuinfo, so turbo or a throttled VM shows up instead of skewing the
//!    cycle counts silently.
//! 2. Criterion groups (`dequantize/<type>/<path>`, `vec_dot/<type>/<path>`) with short
//!    measurement times, for regression tracking.
//!
//! `G4Q_BENCH_TYPES=q4_K,q8_0` limits the types; rows are 16384 values (the weights of a row
//! stay in L2, as in a matvec over a large matrix the activation row does).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use kernels::dot::{quantize_activation, vec_dot_with};
use kernels::simd::{available_paths, dequantize_row_with, Path};
use kernels::{quantize_row, GgmlType};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const N: usize = 16384;

const TYPES: [GgmlType; 15] = [
    GgmlType::Q4K,
    GgmlType::Q5K,
    GgmlType::Q6K,
    GgmlType::Q8_0,
    GgmlType::IQ4XS,
    GgmlType::Q4_0,
    GgmlType::Q2K,
    GgmlType::Q3K,
    GgmlType::Q5_0,
    GgmlType::Q4_1,
    GgmlType::Q5_1,
    GgmlType::IQ4NL,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::F32,
];

/// One weight row and one activation row of a type, quantized from gaussian-ish data.
struct Rows {
    ty: GgmlType,
    weights: Vec<u8>,
    acts: Vec<u8>,
}

fn rows(ty: GgmlType) -> Rows {
    let mut rng = ChaCha8Rng::seed_from_u64(ty.id() as u64);
    let x: Vec<f32> = (0..N)
        .map(|_| rng.gen_range(-1.0f32..1.0) * rng.gen_range(0.0f32..1.0))
        .collect();
    let mut weights = vec![0u8; ty.row_bytes(N).expect("N is a multiple of 256")];
    quantize_row(ty, &x, None, &mut weights).expect("quantize");
    let mut acts = Vec::new();
    quantize_activation(ty, &x, &mut acts).expect("activation");
    Rows { ty, weights, acts }
}

fn selected_types() -> Vec<GgmlType> {
    match std::env::var("G4Q_BENCH_TYPES") {
        Ok(list) => list
            .split(',')
            .map(|t| {
                t.trim()
                    .parse()
                    .unwrap_or_else(|e| panic!("G4Q_BENCH_TYPES: {e}"))
            })
            .collect(),
        Err(_) => TYPES.to_vec(),
    }
}

/// Clock rate measured with a dependent chain of multiplies: 4 `imul` per iteration, each
/// waiting for the previous one. (A chain of `add reg, imm` does not work: recent Intel cores
/// fold immediate adds at rename and run such a chain at several per cycle.)
#[cfg(target_arch = "x86_64")]
fn measured_ghz() -> f64 {
    let iters: u64 = 10_000_000;
    let mut best = f64::MAX;
    // Many short runs: on a shared machine the best one is the one nobody interrupted.
    for _ in 0..40 {
        let t = Instant::now();
        let mut acc: u64 = 3;
        let mut n = iters;
        // SAFETY: pure register arithmetic on the two operands declared here.
        unsafe {
            std::arch::asm!(
                "2:",
                "imul {a}, {a}",
                "imul {a}, {a}",
                "imul {a}, {a}",
                "imul {a}, {a}",
                "dec {n}",
                "jnz 2b",
                a = inout(reg) acc,
                n = inout(reg) n,
            );
        }
        black_box((acc, n));
        best = best.min(t.elapsed().as_nanos() as f64);
    }
    // imul r64 has a 3-cycle latency on every Intel core since Sandy Bridge and AMD since Zen.
    12.0 * iters as f64 / best
}

#[cfg(not(target_arch = "x86_64"))]
fn measured_ghz() -> f64 {
    nominal_ghz().unwrap_or(1.0)
}

/// The clock /proc/cpuinfo reports ("cpu MHz"), if any.
fn nominal_ghz() -> Option<f64> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("cpu MHz"))?;
    let mhz: f64 = line.split(':').nth(1)?.trim().parse().ok()?;
    Some(mhz / 1000.0)
}

/// Best-of-`samples` nanoseconds per call of `f`, each sample long enough (~2 ms) to dwarf timer
/// overhead.
fn best_ns(mut f: impl FnMut()) -> f64 {
    let t = Instant::now();
    f();
    let once = t.elapsed().as_nanos().max(1) as f64;
    let reps = ((2e6 / once) as usize).clamp(1, 100_000);
    let mut best = f64::MAX;
    for _ in 0..15 {
        let t = Instant::now();
        for _ in 0..reps {
            f();
        }
        best = best.min(t.elapsed().as_nanos() as f64 / reps as f64);
    }
    best
}

fn print_table(types: &[GgmlType], paths: &[Path]) {
    let ghz = measured_ghz();
    println!(
        "\nclock: measured {ghz:.2} GHz (dependent imul chain), nominal {} GHz; row = {N} values",
        nominal_ghz().map_or("?".to_string(), |g| format!("{g:.2}"))
    );
    println!(
        "\n| type | path | dequantize cycles/32 | dequantize GB/s (f32 out) | vec_dot cycles/32 | \
         vec_dot GB/s (weights in) | vec_dot × scalar |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|");
    // The f32 output starts on a 64-byte boundary, as in `test-quantize-perf` (whose buffers
    // are 64-byte aligned): a plain `Vec<f32>` of 64 KiB is only 16-byte aligned, so half of
    // the 256-bit stores would split a cache line and the comparison would not be like for like.
    let mut buf = vec![0f32; N + 16];
    let off = buf.as_ptr().align_offset(64);
    let out = &mut buf[off..off + N];
    for &ty in types {
        let r = rows(ty);
        let mut scalar_dot = 0.0;
        for &path in paths {
            let deq = best_ns(|| {
                dequantize_row_with(path, ty, black_box(&r.weights), out).expect("dequantize");
                black_box(&out);
            });
            let dot = best_ns(|| {
                let v = vec_dot_with(path, ty, black_box(&r.weights), black_box(&r.acts), N);
                black_box(v.expect("vec_dot"));
            });
            if path == Path::Scalar {
                scalar_dot = dot;
            }
            let per32 = |ns: f64| ns * ghz / (N as f64 / 32.0);
            println!(
                "| {} | {} | {:.1} | {:.2} | {:.1} | {:.2} | {:.1} |",
                r.ty,
                path,
                per32(deq),
                (4 * N) as f64 / deq,
                per32(dot),
                r.weights.len() as f64 / dot,
                scalar_dot / dot
            );
        }
    }
}

fn criterion_groups(c: &mut Criterion, types: &[GgmlType], paths: &[Path]) {
    for &ty in types {
        let r = rows(ty);
        let mut g = c.benchmark_group(format!("kernels/{ty}"));
        g.warm_up_time(Duration::from_millis(100))
            .measurement_time(Duration::from_millis(300))
            .sample_size(20);
        g.throughput(Throughput::Bytes(r.weights.len() as u64));
        let mut out = vec![0f32; N];
        for &path in paths {
            g.bench_function(format!("dequantize/{path}"), |b| {
                b.iter(|| dequantize_row_with(path, ty, black_box(&r.weights), &mut out))
            });
            g.bench_function(format!("vec_dot/{path}"), |b| {
                b.iter(|| vec_dot_with(path, ty, black_box(&r.weights), black_box(&r.acts), N))
            });
        }
        g.finish();
    }
}

fn main() {
    let types = selected_types();
    let paths = available_paths();
    print_table(&types, &paths);
    let mut c = Criterion::default().configure_from_args();
    criterion_groups(&mut c, &types, &paths);
    c.final_summary();
}
