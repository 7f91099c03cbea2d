//! The tiles against the per-pair dots: bit for bit against `vec_dot` on the path that runs
//! them, within a float-reordering bound of the scalar reference, on every path this CPU has
//! (plus the portable ones, which keep the dot), for row, token and block counts that leave
//! every kind of tile tail (odd rows, odd tokens, pair counts not a multiple of the tile's, B32
//! rows whose block count leaves 1-3 blocks after the last whole four, and 301 rows: more than
//! one panel where a row packs to few bytes).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{covers, panel, Acts};
use crate::dot::{quantize_activation, vec_dot_type, vec_dot_with};
use crate::fp::f16_to_f32;
use crate::matmul::matmul_with;
use crate::simd::{available_paths, dequantize_row_with, Path};
use crate::{quantize_row, GgmlType};

const TYPES: [GgmlType; 8] = [
    GgmlType::Q6K,
    GgmlType::Q4K,
    GgmlType::Q8_0,
    GgmlType::Q5K,
    GgmlType::Q4_0,
    GgmlType::Q3K,
    GgmlType::Q5_0,
    GgmlType::IQ4NL,
];

fn random_vec(rng: &mut ChaCha8Rng, n: usize) -> Vec<f32> {
    (0..n)
        .map(|_| {
            let v: f32 = rng.gen_range(-1.0..1.0);
            if rng.gen_range(0..50) == 0 {
                v * 20.0
            } else {
                v
            }
        })
        .collect()
}

/// The activation row's values as the dot sees them (`d · q` of each 8-bit block).
fn act_values(ty: GgmlType, act: &[u8]) -> Vec<f64> {
    let (bs, ts, qs) = match vec_dot_type(ty) {
        GgmlType::Q8K => (256, 292, 4),
        _ => (32, 34, 2),
    };
    let mut out = Vec::new();
    for b in act.chunks_exact(ts) {
        let d = if bs == 256 {
            f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64
        } else {
            f16_to_f32(u16::from_le_bytes([b[0], b[1]])) as f64
        };
        out.extend(b[qs..qs + bs].iter().map(|q| d * (*q as i8) as f64));
    }
    out
}

#[test]
fn tiles_match_the_dots_on_every_path() {
    let mut rng = ChaCha8Rng::seed_from_u64(0x711e);
    let mut cases = 0usize;
    let mut tiled = 0usize;
    for ty in TYPES {
        let bs = ty.block_size();
        // K-quants: 1, 3, 6 super-blocks; legacy: 1, 3, 4, 5, 7, 13, 48 blocks (tails 1, 3, 0,
        // 1, 3, 1, 0 after the whole fours).
        let blocks: &[usize] = if bs == 256 {
            &[1, 3, 6]
        } else {
            &[1, 3, 4, 5, 7, 13, 48]
        };
        for &nb in blocks {
            for (rows, t) in [(1, 2), (3, 3), (37, 5), (67, 9), (5, 17), (2, 16), (301, 3)] {
                let cols = nb * bs;
                let rb = ty.row_bytes(cols).unwrap();
                let w = random_vec(&mut rng, rows * cols);
                let mut wq = vec![0u8; rows * rb];
                for (r, o) in wq.chunks_exact_mut(rb).enumerate() {
                    quantize_row(ty, &w[r * cols..(r + 1) * cols], None, o).unwrap();
                }
                let mut wdeq = vec![0f32; rows * cols];
                dequantize_row_with(Path::Scalar, ty, &wq, &mut wdeq).unwrap();
                let x = random_vec(&mut rng, t * cols);
                let mut acts = Vec::new();
                let mut buf = Vec::new();
                for xi in x.chunks_exact(cols) {
                    quantize_activation(ty, xi, &mut buf).unwrap();
                    acts.extend_from_slice(&buf);
                }
                let ab = acts.len() / t;
                for path in available_paths() {
                    let mut y = vec![f32::NAN; t * rows];
                    matmul_with(path, ty, &wq, rows, cols, &x, t, &mut y).unwrap();
                    if covers(path, ty) {
                        // The kernels themselves, on the whole matrix as one panel.
                        let packed = Acts::new(ty, &acts, ab, t, cols);
                        let mut direct = vec![f32::NAN; t * rows];
                        panel(path, ty, &packed, &wq, rb, &mut direct);
                        for (k, (a, b)) in direct.iter().zip(&y).enumerate() {
                            assert_eq!(a.to_bits(), b.to_bits(), "{ty} on {path}: output {k}");
                        }
                        tiled += 1;
                    }
                    for c in 0..t {
                        let a = &acts[c * ab..(c + 1) * ab];
                        let av = act_values(ty, a);
                        for r in 0..rows {
                            let wr = &wq[r * rb..(r + 1) * rb];
                            let got = y[c * rows + r];
                            let dot = vec_dot_with(path, ty, wr, a, cols).unwrap();
                            assert_eq!(
                                got.to_bits(),
                                dot.to_bits(),
                                "{ty} on {path}, {rows}x{cols}, token {c} row {r}: {got} vs {dot}"
                            );
                            let reference = vec_dot_with(Path::Scalar, ty, wr, a, cols).unwrap();
                            let wd = &wdeq[r * cols..(r + 1) * cols];
                            let mag: f64 =
                                wd.iter().zip(&av).map(|(w, v)| (*w as f64 * v).abs()).sum();
                            // Both sum the same exact block terms in f32, in different orders
                            // (plus the K-quants' separate min term): a few roundings per
                            // block of the magnitude.
                            let tol = 4.0 * (cols / 32 + 8) as f64 * f32::EPSILON as f64 * mag;
                            let diff = (got as f64 - reference as f64).abs();
                            assert!(
                                diff <= tol,
                                "{ty} on {path} ({c},{r}): {got} vs scalar {reference} (tol {tol:e})"
                            );
                            cases += 1;
                        }
                    }
                }
            }
        }
    }
    if available_paths().iter().any(|p| covers(*p, GgmlType::Q6K)) {
        assert!(tiled > 0, "no tile ran");
    } else {
        testkit::skip("this CPU has no path with tiled kernels (the dots were checked)");
    }
    println!("tiles vs dots: checked {cases} outputs ({tiled} direct tile runs)");
}
