//! The machine's physical limits, measured: streaming read and triad bandwidth over a buffer
//! far larger than the last-level cache, on one thread and on all, and the peak f32 FMA rate
//! of one core. Every product `g4q bench` times is reported as a share of these.
//!
//! Bandwidth counts bytes the program asks for (STREAM's convention: triad moves 3 × 4 bytes per
//! element, the write-allocate read is not counted). Each figure is the best of several passes,
//! as memory benchmarks report, so a neighbour's burst on a shared machine lowers it less.

use std::time::Instant;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// The measured limits.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    /// Streaming read bandwidth, all threads, GB/s (10^9 bytes).
    pub read_bandwidth_gbs: f64,
    /// Streaming read bandwidth, one thread.
    pub read_bandwidth_1t_gbs: f64,
    /// Triad `a = b + s·c`, all threads.
    pub triad_bandwidth_gbs: f64,
    /// Triad, one thread.
    pub triad_bandwidth_1t_gbs: f64,
    /// Peak f32 FMA throughput of one core, GFLOP/s (an FMA counts 2).
    pub fma_gflops_per_core: f64,
    /// Threads of the all-thread figures.
    pub threads: usize,
    /// Bytes of the buffer the bandwidth was measured over.
    pub buffer_bytes: u64,
}

/// Buffer size for the bandwidth probes: four times the last-level cache and at least
/// `min_bytes`, but at most an eighth of the memory (when known).
pub fn buffer_bytes(llc: Option<u64>, memory: u64, min_bytes: u64) -> u64 {
    let want = llc.unwrap_or(0).saturating_mul(4).max(min_bytes);
    if memory > 0 {
        want.min(memory / 8).max(min_bytes.min(memory / 4))
    } else {
        want
    }
}

/// Sums a slice as u64 words with eight independent lanes (the compiler vectorizes it).
#[inline(always)]
fn read_sum(words: &[u64]) -> u64 {
    let mut acc = [0u64; 8];
    let mut chunks = words.chunks_exact(8);
    for c in &mut chunks {
        for (a, w) in acc.iter_mut().zip(c) {
            *a = a.wrapping_add(*w);
        }
    }
    let tail: u64 = chunks.remainder().iter().fold(0, |s, w| s.wrapping_add(*w));
    acc.iter().fold(tail, |s, a| s.wrapping_add(*a))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn read_sum_avx2(words: &[u64]) -> u64 {
    read_sum(words)
}

/// [`read_sum`] with the widest integer vectors this CPU has.
fn read_words(words: &[u64]) -> u64 {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports avx2, checked just above.
        return unsafe { read_sum_avx2(words) };
    }
    read_sum(words)
}

/// Best seconds of `passes` runs of `f`.
fn best_of(passes: usize, mut f: impl FnMut()) -> f64 {
    (0..passes.max(1))
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

/// Splits `n` items into `parts` nearly equal contiguous lengths.
fn chunk_len(n: usize, parts: usize) -> usize {
    n.div_ceil(parts.max(1)).max(1)
}

/// Streaming read bandwidth (GB/s) over `words`, on `threads` threads (1 = the calling thread).
pub fn read_bandwidth(words: &[u64], threads: usize, passes: usize) -> f64 {
    let mut sink = 0u64;
    let secs = best_of(passes, || {
        sink ^= if threads <= 1 {
            read_words(words)
        } else {
            words
                .par_chunks(chunk_len(words.len(), threads))
                .map(read_words)
                .reduce(|| 0, u64::wrapping_add)
        };
    });
    std::hint::black_box(sink);
    (words.len() * 8) as f64 / secs / 1e9
}

/// Triad bandwidth (GB/s): `a[i] = b[i] + s·c[i]` over three arrays of equal length.
pub fn triad_bandwidth(a: &mut [f32], b: &[f32], c: &[f32], threads: usize, passes: usize) -> f64 {
    let s = 3.0f32;
    let n = a.len().min(b.len()).min(c.len());
    let secs = best_of(passes, || {
        let kernel = |(a, (b, c)): (&mut [f32], (&[f32], &[f32]))| {
            for ((a, b), c) in a.iter_mut().zip(b).zip(c) {
                *a = b + s * c;
            }
        };
        if threads <= 1 {
            kernel((&mut a[..n], (&b[..n], &c[..n])));
        } else {
            let len = chunk_len(n, threads);
            a[..n]
                .par_chunks_mut(len)
                .zip(b[..n].par_chunks(len).zip(c[..n].par_chunks(len)))
                .for_each(kernel);
        }
    });
    std::hint::black_box(&a[..]);
    (n * 12) as f64 / secs / 1e9
}

/// Independent f32 accumulators of the FMA probe: enough vectors of the widest unit to cover
/// the FMA latency times the number of FMA ports on current cores (4 cycles × 2 ports × 16
/// lanes = 128; 256 leaves headroom).
const FMA_LANES: usize = 256;

/// `iters` rounds of one FMA into each accumulator; returns a value that depends on all of them.
#[inline(always)]
fn fma_rounds(iters: usize) -> f32 {
    let mut acc = [0f32; FMA_LANES];
    for (i, a) in acc.iter_mut().enumerate() {
        *a = i as f32 * 1e-3;
    }
    let (m, c) = (
        std::hint::black_box(0.999_999f32),
        std::hint::black_box(1e-7f32),
    );
    for _ in 0..iters {
        for a in acc.iter_mut() {
            *a = a.mul_add(m, c);
        }
    }
    acc.iter().sum()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
fn fma_rounds_avx512(iters: usize) -> f32 {
    fma_rounds(iters)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn fma_rounds_avx2(iters: usize) -> f32 {
    fma_rounds(iters)
}

/// Runs the FMA probe on the widest FMA unit this CPU has.
fn fma_probe(iters: usize) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports avx512f and fma, checked just above.
            return unsafe { fma_rounds_avx512(iters) };
        }
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports avx2 and fma, checked just above.
            return unsafe { fma_rounds_avx2(iters) };
        }
    }
    // AArch64 always has NEON FMA; mul_add compiles to it.
    fma_rounds(iters)
}

/// Peak f32 FMA throughput of one core in GFLOP/s (best of `passes` runs of `iters` rounds).
pub fn fma_gflops(iters: usize, passes: usize) -> f64 {
    let mut sink = 0f32;
    let secs = best_of(passes, || sink += fma_probe(iters));
    std::hint::black_box(sink);
    (2 * FMA_LANES * iters) as f64 / secs / 1e9
}

/// Measures every limit over a buffer of `buffer_bytes`, with `threads` threads for the
/// all-thread figures (run inside a rayon pool of that size).
pub fn measure(buffer_bytes: u64, threads: usize, passes: usize) -> Limits {
    let words = (buffer_bytes / 8).max(1024) as usize;
    let buf: Vec<u64> = (0..words as u64).collect();
    let read_1t = read_bandwidth(&buf, 1, passes);
    let read_all = read_bandwidth(&buf, threads, passes);
    drop(buf);
    let n = (buffer_bytes / 12).max(1024) as usize;
    let b = vec![1f32; n];
    let c = vec![2f32; n];
    let mut a = vec![0f32; n];
    let triad_1t = triad_bandwidth(&mut a, &b, &c, 1, passes);
    let triad_all = triad_bandwidth(&mut a, &b, &c, threads, passes);
    Limits {
        read_bandwidth_gbs: read_all,
        read_bandwidth_1t_gbs: read_1t,
        triad_bandwidth_gbs: triad_all,
        triad_bandwidth_1t_gbs: triad_1t,
        fma_gflops_per_core: fma_gflops(200_000, passes.max(3)),
        threads,
        buffer_bytes: (words * 8) as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffer_size_rules() {
        assert_eq!(buffer_bytes(Some(32 << 20), 64 << 30, 256 << 20), 256 << 20);
        assert_eq!(
            buffer_bytes(Some(480 << 20), 64 << 30, 256 << 20),
            1920 << 20
        );
        // At most an eighth of memory, but never under the minimum while a quarter allows it.
        assert_eq!(buffer_bytes(Some(480 << 20), 8 << 30, 256 << 20), 1 << 30);
        assert_eq!(buffer_bytes(None, 0, 256 << 20), 256 << 20);
    }

    #[test]
    fn read_sum_counts_every_word() {
        let v: Vec<u64> = (0..1003).collect();
        assert_eq!(read_sum(&v), 1002 * 1003 / 2);
    }
}
