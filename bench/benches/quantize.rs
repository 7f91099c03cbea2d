//! K-quant quantizer speed: ggml-literal reference vs the lane-parallel fast path (same bytes),
//! with and without an importance matrix, for Q2_K … Q6_K.
//!
//! Criterion measures each (type, imatrix, implementation) on 8 rows of 4096 values; a summary
//! table then prints nanoseconds and time-stamp-counter cycles per 32 values (the unit ggml's
//! cost is usually quoted in) and the fast/ref speed-up. TSC cycles tick at the nominal clock,
//! not the core clock, so they are comparable between runs on one machine, not across CPUs.
//! Single-threaded throughout: the figures are per core.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use kernels::blocks::{BlockQ2K, BlockQ3K, BlockQ4K, BlockQ5K, BlockQ6K};
use kernels::quants::kquants::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const N_PER_ROW: usize = 4096;
const ROWS: usize = 8;

type Quant<B> = fn(&[f32], &mut [B], Option<&[f32]>);

/// The rows and importance vector of the full golden set `s1` (`$G4Q_GOLDEN/s1` or
/// `../shared/golden/s1`; 16 rows of 4096 values of eight characters, see its README), the
/// same data a C build of ggml's reference can be timed on; `None` when absent (the bundled
/// compact set keeps 8 rows, which would time other work).
fn golden_inputs() -> Option<(Vec<f32>, Vec<f32>)> {
    let root = testkit::oracles::full_set("G4Q_GOLDEN", "golden")?;
    let read = |name: &str| -> Option<Vec<f32>> {
        let bytes = std::fs::read(root.join("s1").join(name)).ok()?;
        Some(
            bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        )
    };
    let (x, qw) = (read("input.f32")?, read("imatrix.f32")?);
    (qw.len() == N_PER_ROW && !x.is_empty() && x.len() % N_PER_ROW == 0).then_some((x, qw))
}

/// Gaussian rows with a few outliers (weights look like this) and a log-normal imatrix.
fn synthetic_inputs() -> (Vec<f32>, Vec<f32>) {
    let mut rng = ChaCha8Rng::seed_from_u64(0x6734);
    let mut gauss = move || {
        let (u, v): (f32, f32) = (rng.gen_range(1e-7..1.0), rng.gen());
        (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
    };
    let x = (0..ROWS * N_PER_ROW)
        .map(|i| {
            let g = gauss() * 0.02;
            if i % 97 == 0 {
                g * 20.0
            } else {
                g
            }
        })
        .collect();
    let qw = (0..N_PER_ROW).map(|_| (gauss() * 0.7).exp()).collect();
    (x, qw)
}

/// One quantizer over all rows, as the converter calls it (row by row).
fn run<B: bytemuck::Pod>(q: Quant<B>, x: &[f32], qw: Option<&[f32]>, y: &mut [B]) {
    let bpr = N_PER_ROW / 256;
    for (xr, yr) in x.chunks_exact(N_PER_ROW).zip(y.chunks_exact_mut(bpr)) {
        q(black_box(xr), yr, qw);
    }
    black_box(y);
}

#[cfg(target_arch = "x86_64")]
fn tsc() -> u64 {
    // SAFETY: RDTSC has no preconditions on x86-64.
    unsafe { core::arch::x86_64::_rdtsc() }
}
#[cfg(not(target_arch = "x86_64"))]
fn tsc() -> u64 {
    0
}

/// (ns, TSC cycles) per 32 values: the fastest of repeated passes over all rows within about
/// `budget` (the minimum filters out time stolen by other processes on a shared machine).
fn per32<B: bytemuck::Pod>(
    q: Quant<B>,
    x: &[f32],
    qw: Option<&[f32]>,
    budget: Duration,
) -> (f64, f64) {
    let mut y = vec![B::zeroed(); x.len() / 256];
    run(q, x, qw, &mut y); // warm-up
    let start = Instant::now();
    let (mut best_ns, mut best_cyc) = (f64::INFINITY, f64::INFINITY);
    let mut passes = 0;
    while start.elapsed() < budget || passes < 5 {
        let (t0, c0) = (Instant::now(), tsc());
        run(q, x, qw, &mut y);
        let (ns, cyc) = (
            t0.elapsed().as_nanos() as f64,
            tsc().wrapping_sub(c0) as f64,
        );
        if ns < best_ns {
            (best_ns, best_cyc) = (ns, cyc);
        }
        passes += 1;
    }
    let groups = (x.len() / 32) as f64;
    (best_ns / groups, best_cyc / groups)
}

struct Case {
    name: &'static str,
    bench: fn(&mut Criterion, &[f32], &[f32]),
    summary: fn(&[f32], &[f32]),
}

macro_rules! case {
    ($name:literal, $b:ty, $r:ident, $f:ident) => {
        Case {
            name: $name,
            bench: |c, x, qw| {
                let mut g = c.benchmark_group(concat!("quantize/", $name));
                g.throughput(Throughput::Elements(x.len() as u64));
                let mut y = vec![<$b as bytemuck::Zeroable>::zeroed(); x.len() / 256];
                for (label, w) in [("plain", None), ("imatrix", Some(qw))] {
                    g.bench_function(BenchmarkId::new("ref", label), |b| {
                        b.iter(|| run::<$b>($r, x, w, &mut y))
                    });
                    g.bench_function(BenchmarkId::new("fast", label), |b| {
                        b.iter(|| run::<$b>($f, x, w, &mut y))
                    });
                }
                g.finish();
            },
            summary: |x, qw| {
                for (label, w) in [("plain", None), ("imatrix", Some(qw))] {
                    let budget = Duration::from_millis(400);
                    let (rn, rc) = per32::<$b>($r, x, w, budget);
                    let (fns, fc) = per32::<$b>($f, x, w, budget);
                    println!(
                        "{:<5} {:<8} {:>10.1} {:>10.0} {:>10.1} {:>10.0} {:>8.1}x",
                        $name,
                        label,
                        rn,
                        rc,
                        fns,
                        fc,
                        rn / fns
                    );
                }
            },
        }
    };
}

fn main() {
    let (x, qw) = synthetic_inputs();
    let cases = [
        case!("q2_K", BlockQ2K, quantize_row_q2_k, quantize_row_q2_k_fast),
        case!("q3_K", BlockQ3K, quantize_row_q3_k, quantize_row_q3_k_fast),
        case!("q4_K", BlockQ4K, quantize_row_q4_k, quantize_row_q4_k_fast),
        case!("q5_K", BlockQ5K, quantize_row_q5_k, quantize_row_q5_k_fast),
        case!("q6_K", BlockQ6K, quantize_row_q6_k, quantize_row_q6_k_fast),
    ];
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .configure_from_args();
    for case in &cases {
        (case.bench)(&mut c, &x, &qw);
    }
    c.final_summary();

    let mut sets = vec![("synthetic gaussian", x, qw)];
    if let Some((gx, gqw)) = golden_inputs() {
        sets.push(("golden s1", gx, gqw));
    }
    for (label, x, qw) in &sets {
        println!(
            "\n{label}: per 32 values, single thread, best pass over {} rows x {N_PER_ROW}:",
            x.len() / N_PER_ROW
        );
        println!(
            "{:<5} {:<8} {:>10} {:>10} {:>10} {:>10} {:>9}",
            "type", "weights", "ref ns", "ref cyc", "fast ns", "fast cyc", "speed-up"
        );
        for case in &cases {
            let _ = case.name;
            (case.summary)(x, qw);
        }
    }
}
