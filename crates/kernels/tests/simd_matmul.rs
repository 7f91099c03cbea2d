//! Quantized matvec/matmul against dequantize + f32 dot, and their independence from the
//! thread count. Each output is exactly one `vec_dot` on the chosen path, so the comparisons
//! with `vec_dot_with` and across pools are exact; the comparison with the f64 dot of the
//! dequantized weights and the (unquantized) activations allows for the activation quantization:
//! per value |x − deq(q8(x))| ≤ d/2 with d = amax/127 of its block, so the output may move by at
//! most Σ|w|·d/2 plus the float-summation bound of `simd_kernels.rs`.

use kernels::dot::{quantize_activation, vec_dot_type, vec_dot_with};
use kernels::matmul::{matmul_with, matvec_with};
use kernels::simd::{available_paths, dequantize_row_with, Path};
use kernels::{quantize_row, GgmlType};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

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

fn random_vec(rng: &mut ChaCha8Rng, n: usize) -> Vec<f32> {
    (0..n)
        .map(|_| {
            let v: f32 = rng.gen_range(-1.0..1.0);
            if rng.gen_range(0..100) == 0 {
                v * 30.0
            } else {
                v
            }
        })
        .collect()
}

fn quantize_matrix(ty: GgmlType, w: &[f32], rows: usize, cols: usize) -> Vec<u8> {
    let rb = ty.row_bytes(cols).unwrap();
    let mut out = vec![0u8; rows * rb];
    for (r, o) in out.chunks_exact_mut(rb).enumerate() {
        quantize_row(ty, &w[r * cols..(r + 1) * cols], None, o).unwrap();
    }
    out
}

/// Bound on |matmul − Σ deq(w)·x| for one output (see module docs): the activation
/// quantization error (Q8_0/Q8_1: |q·fp16(d) − x| ≤ d/2 + 127·d·2⁻¹¹ < 0.57·d; Q8_K: d/2; F16 and
/// BF16: one rounding of x), plus the float-summation bound over per-block magnitudes
/// max|w|·Σ|a| (×3 covers the separate min terms of Q4_1/Q5_1/K-quants), plus for Q8_1 the fp16
/// rounding of the block sum `s` that multiplies the block minimum.
fn tolerance(ty: GgmlType, wrow: &[f32], x: &[f32]) -> f64 {
    let at = vec_dot_type(ty);
    let bs = at.block_size().max(ty.block_size());
    let mut quant = 0f64;
    let mut mag = 0f64;
    for (wb, xb) in wrow.chunks(bs).zip(x.chunks(bs)) {
        let amax = xb.iter().fold(0f32, |m, v| m.max(v.abs())) as f64;
        let wmax = wb.iter().fold(0f32, |m, v| m.max(v.abs())) as f64;
        let mut asum = 0f64;
        for (w, v) in wb.iter().zip(xb) {
            let v = (*v as f64).abs();
            let err = match at {
                GgmlType::Q8_0 | GgmlType::Q8_1 => amax / 127.0 * 0.57,
                GgmlType::Q8K => amax / 127.0 * 0.5001,
                GgmlType::F16 => v * 2f64.powi(-11),
                GgmlType::BF16 => v * 2f64.powi(-8),
                _ => 0.0,
            };
            quant += (*w as f64).abs() * err;
            asum += v + err;
        }
        mag += wmax * asum;
    }
    let nb = (x.len() / ty.block_size()) as f64;
    let float = 2.0 * (nb + 8.0) * f32::EPSILON as f64 * 3.0 * mag;
    let s_term = if at == GgmlType::Q8_1 {
        mag * 2f64.powi(-10)
    } else {
        0.0
    };
    quant + float + s_term
}

#[test]
fn matmul_agrees_with_dequantized_dot_and_vec_dot() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let (rows, cols, t) = (24, 512, 3);
    let mut cases = 0;
    for ty in TYPES {
        let w = random_vec(&mut rng, rows * cols);
        let wq = quantize_matrix(ty, &w, rows, cols);
        let x = random_vec(&mut rng, t * cols);
        let mut wdeq = vec![0f32; rows * cols];
        dequantize_row_with(Path::Scalar, ty, &wq, &mut wdeq).unwrap();
        for path in available_paths() {
            let mut y = vec![0f32; t * rows];
            matmul_with(path, ty, &wq, rows, cols, &x, t, &mut y).unwrap();
            let rb = ty.row_bytes(cols).unwrap();
            for i in 0..t {
                let xi = &x[i * cols..(i + 1) * cols];
                let mut act = Vec::new();
                quantize_activation(ty, xi, &mut act).unwrap();
                for r in 0..rows {
                    let wrow = &wdeq[r * cols..(r + 1) * cols];
                    let got = y[i * rows + r];
                    let single =
                        vec_dot_with(path, ty, &wq[r * rb..(r + 1) * rb], &act, cols).unwrap();
                    assert_eq!(got.to_bits(), single.to_bits(), "{ty} on {path}: ({i},{r})");
                    let exact: f64 = wrow
                        .iter()
                        .zip(xi)
                        .map(|(a, b)| *a as f64 * *b as f64)
                        .sum();
                    let tol = tolerance(ty, wrow, xi);
                    assert!(
                        (got as f64 - exact).abs() <= tol,
                        "{ty} on {path} ({i},{r}): {got} vs {exact} (tol {tol:e})"
                    );
                    cases += 1;
                }
            }
            // matvec is matmul with one activation row.
            let mut yv = vec![0f32; rows];
            matvec_with(path, ty, &wq, rows, cols, &x[..cols], &mut yv).unwrap();
            for r in 0..rows {
                assert_eq!(yv[r].to_bits(), y[r].to_bits(), "{ty} matvec on {path}");
            }
        }
    }
    println!("matmul vs dequantized dot: checked {cases} cases");
}

#[test]
fn matmul_identical_across_thread_counts() {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let (rows, cols, t) = (67, 1024, 2);
    let mut cases = 0;
    for ty in TYPES {
        let w = random_vec(&mut rng, rows * cols);
        let wq = quantize_matrix(ty, &w, rows, cols);
        let x = random_vec(&mut rng, t * cols);
        for path in available_paths() {
            let run = |threads: usize| {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                let mut y = vec![0f32; t * rows];
                pool.install(|| matmul_with(path, ty, &wq, rows, cols, &x, t, &mut y))
                    .unwrap();
                y
            };
            let one = run(1);
            let two = run(2);
            let four = run(4);
            for k in 0..one.len() {
                assert_eq!(
                    one[k].to_bits(),
                    two[k].to_bits(),
                    "{ty} on {path}, output {k}"
                );
                assert_eq!(
                    one[k].to_bits(),
                    four[k].to_bits(),
                    "{ty} on {path}, output {k}"
                );
            }
            cases += 1;
        }
    }
    println!("matmul across 1/2/4 threads: checked {cases} cases");
}

#[test]
fn matmul_rejects_bad_shapes() {
    let ty = GgmlType::Q8_0;
    let w = vec![0u8; 2 * ty.row_bytes(64).unwrap()];
    let x = vec![0f32; 64];
    let mut y = vec![0f32; 2];
    let p = Path::Scalar;
    assert!(matvec_with(p, ty, &w, 2, 64, &x, &mut y).is_ok());
    assert!(matvec_with(p, ty, &w, 3, 64, &x, &mut y).is_err());
    assert!(matvec_with(p, ty, &w, 2, 48, &x, &mut y).is_err());
    assert!(matvec_with(p, ty, &w[1..], 2, 64, &x, &mut y).is_err());
    assert!(matvec_with(p, ty, &w, 2, 64, &x[1..], &mut y).is_err());
    assert!(matvec_with(p, ty, &w, 2, 64, &x, &mut y[1..]).is_err());
    assert!(matmul_with(p, ty, &w, 2, 64, &x, 2, &mut y).is_err());
    assert!(matvec_with(p, ty, &w, usize::MAX, 64, &x, &mut y).is_err());
}

/// The product runs panels of rows through one kernel call (`vec_dot_rows`), not one call per
/// output: every output must still equal the one-row `vec_dot_with` of its row bit for bit, on
/// every path, for row counts that leave ragged panels (odd, prime, below and above a panel),
/// odd token counts, and block counts that leave the four-block loops a tail.
#[test]
fn panels_equal_one_dot_per_row() {
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    let mut cases = 0;
    for ty in TYPES {
        let bs = ty.block_size();
        // 3 / 7 / 13 blocks (K-quants: 768, 1792, 3328 columns; legacy: 96, 224, 416).
        for (rows, blocks, t) in [(1, 3, 1), (37, 7, 1), (101, 13, 1), (67, 3, 5), (5, 7, 3)] {
            let cols = blocks * bs;
            let w = random_vec(&mut rng, rows * cols);
            let wq = quantize_matrix(ty, &w, rows, cols);
            let x = random_vec(&mut rng, t * cols);
            let rb = ty.row_bytes(cols).unwrap();
            for path in available_paths() {
                let mut y = vec![f32::NAN; t * rows];
                matmul_with(path, ty, &wq, rows, cols, &x, t, &mut y).unwrap();
                for i in 0..t {
                    let mut act = Vec::new();
                    quantize_activation(ty, &x[i * cols..(i + 1) * cols], &mut act).unwrap();
                    for r in 0..rows {
                        let one =
                            vec_dot_with(path, ty, &wq[r * rb..(r + 1) * rb], &act, cols).unwrap();
                        let got = y[i * rows + r];
                        assert_eq!(
                            got.to_bits(),
                            one.to_bits(),
                            "{ty} on {path}, {rows}x{cols}, token {i} row {r}: {got} vs {one}"
                        );
                        cases += 1;
                    }
                }
            }
        }
    }
    println!("panels vs one dot per row: checked {cases} outputs");
}

/// The float formats' decode kernels run several weight rows per pass over the activation
/// (and F16/BF16 widen the activation once per panel): every output must still equal the
/// one-row `vec_dot_with` bit for bit and agree with the exact dot, for column counts with and
/// without a tail after the 64-value steps and row counts that leave every size of last group.
#[test]
fn float_row_passes_equal_one_dot_per_row() {
    let mut rng = ChaCha8Rng::seed_from_u64(33);
    let mut cases = 0;
    for ty in [GgmlType::F32, GgmlType::F16, GgmlType::BF16] {
        for (rows, cols) in [(1, 64), (2, 200), (3, 1553), (5, 128), (9, 1536), (37, 263)] {
            let w = random_vec(&mut rng, rows * cols);
            let wq = quantize_matrix(ty, &w, rows, cols);
            let mut wdeq = vec![0f32; rows * cols];
            dequantize_row_with(Path::Scalar, ty, &wq, &mut wdeq).unwrap();
            let x = random_vec(&mut rng, cols);
            let mut act = Vec::new();
            quantize_activation(ty, &x, &mut act).unwrap();
            let rb = ty.row_bytes(cols).unwrap();
            for path in available_paths() {
                let mut y = vec![f32::NAN; rows];
                matvec_with(path, ty, &wq, rows, cols, &x, &mut y).unwrap();
                for r in 0..rows {
                    let one =
                        vec_dot_with(path, ty, &wq[r * rb..(r + 1) * rb], &act, cols).unwrap();
                    assert_eq!(
                        y[r].to_bits(),
                        one.to_bits(),
                        "{ty} on {path}, {rows}x{cols}, row {r}: {} vs {one}",
                        y[r]
                    );
                    let wrow = &wdeq[r * cols..(r + 1) * cols];
                    let exact: f64 = wrow
                        .iter()
                        .zip(&x)
                        .map(|(a, b)| *a as f64 * *b as f64)
                        .sum();
                    let tol = tolerance(ty, wrow, &x);
                    assert!(
                        (y[r] as f64 - exact).abs() <= tol,
                        "{ty} on {path}, {rows}x{cols}, row {r}: {} vs {exact} (tol {tol:e})",
                        y[r]
                    );
                    cases += 1;
                }
            }
        }
    }
    println!("float row passes vs one dot per row: checked {cases} outputs");
}
