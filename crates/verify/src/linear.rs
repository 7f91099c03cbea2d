//! The GEMMs of the forward pass.
//!
//! `y = x @ W.T` with `x` `[T, in]` f32 and `W` `[out, in]` in any stored type, by the
//! reference GEMM of [`crate::gemm`]: rayon runs tasks of [`PANEL`] weight rows, each writing its
//! own columns of the output. Every output is one fixed chain of fused multiply-adds over `in`,
//! so results are bit-identical for any thread count, any cut and any instruction set. Dense
//! f32/bf16 weights are read in place (bf16 widened panel by panel inside the GEMM, so it stays
//! bf16 in memory); other sources widen one task's rows into a per-worker buffer first.
//!
//! [`gemm_f32`] (strided operands, `matrixmultiply`) serves the small products of attention and
//! of the AWQ search.

use std::ops::Range;

use rayon::prelude::*;

use crate::error::{Result, VerifyError};
use crate::gemm::{gemm_window, Isa, Panel};
use crate::weights::RowSource;

/// Weight rows per task (two packed panels of the GEMM). Results depend on no cut, but a fixed
/// one keeps the work per task independent of the thread count too.
pub const PANEL: usize = 64;

/// Weight rows per task when the source computes the product itself (quantized GGUF): each
/// call rounds all `T` activation rows again, so a task must hold many rows for that to stay
/// small (1024 rows x T dot products against T roundings of one row).
pub const SOURCE_PANEL: usize = 16 * PANEL;

/// `C[m, n] = A[m, k] · B[k, n]` in f32 with explicit element strides (row, column) for each
/// operand; single-threaded, deterministic. Panics if a stride pattern reaches outside a slice
/// (a programming error, never user input).
#[allow(clippy::too_many_arguments)]
pub fn gemm_f32(
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    (a_rs, a_cs): (usize, usize),
    b: &[f32],
    (b_rs, b_cs): (usize, usize),
    c: &mut [f32],
    (c_rs, c_cs): (usize, usize),
) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        for i in 0..m {
            for j in 0..n {
                c[i * c_rs + j * c_cs] = 0.0;
            }
        }
        return;
    }
    let last = |rows: usize, cols: usize, rs: usize, cs: usize| (rows - 1) * rs + (cols - 1) * cs;
    assert!(
        last(m, k, a_rs, a_cs) < a.len(),
        "gemm_f32: A out of bounds"
    );
    assert!(
        last(k, n, b_rs, b_cs) < b.len(),
        "gemm_f32: B out of bounds"
    );
    assert!(
        last(m, n, c_rs, c_cs) < c.len(),
        "gemm_f32: C out of bounds"
    );
    // SAFETY: the asserts above prove every element index the strides can form lies inside its
    // slice; `c` is borrowed mutably, so it aliases neither `a` nor `b`. With beta = 0, C is
    // written without being read.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            a_rs as isize,
            a_cs as isize,
            b.as_ptr(),
            b_rs as isize,
            b_cs as isize,
            0.0,
            c.as_mut_ptr(),
            c_rs as isize,
            c_cs as isize,
        );
    }
}

/// `y[T, rows.len()] = x[T, in] @ W[rows, :].T`, parallel over fixed weight panels.
pub fn linear_rows(x: &[f32], t: usize, w: &dyn RowSource, rows: Range<usize>) -> Result<Vec<f32>> {
    let mut y = vec![0f32; t * rows.len()];
    linear_rows_into(x, t, w, rows.clone(), &mut y, rows.len())?;
    Ok(y)
}

/// [`linear_rows`] written into the first `rows.len()` values of each of the `t` rows of `out`,
/// which are `stride` values apart (`out` may end right after the last row's values): e.g.
/// columns `r0..r1` of the `[T, vocab]` logits straight from the tied head, without a copy.
///
/// Work is split by weight rows only, in fixed panels, into tasks run by rayon: [`PANEL`] rows
/// per task for the f32 GEMM, written straight into `out`; [`SOURCE_PANEL`] for a source's own
/// (quantized) product, whose blocks are then scattered into `out` in parallel over tokens.
pub fn linear_rows_into(
    x: &[f32],
    t: usize,
    w: &dyn RowSource,
    rows: Range<usize>,
    out: &mut [f32],
    stride: usize,
) -> Result<()> {
    let k = w.cols();
    if x.len() != t * k {
        return Err(VerifyError::shape(
            w.name(),
            format!("input has {} values, expected {t} x {k}", x.len()),
        ));
    }
    if rows.end > w.rows() || rows.start > rows.end {
        return Err(VerifyError::shape(
            w.name(),
            format!("rows {rows:?} outside {} rows", w.rows()),
        ));
    }
    let n_out = rows.len();
    if t == 0 || n_out == 0 {
        return Ok(());
    }
    let fits = stride >= n_out
        && (t - 1)
            .checked_mul(stride)
            .and_then(|v| v.checked_add(n_out))
            .is_some_and(|end| end <= out.len());
    if !fits {
        return Err(VerifyError::shape(
            w.name(),
            format!(
                "output of {} values cannot hold {t} rows of {n_out} every {stride}",
                out.len()
            ),
        ));
    }
    if let Some(done) = source_product(x, t, w, rows.clone(), out, stride) {
        return done;
    }
    let isa = Isa::active();
    let base = OutPtr(out.as_mut_ptr());
    (0..n_out.div_ceil(PANEL))
        .into_par_iter()
        .try_for_each_init(
            || (Vec::new(), Vec::new()),
            |(buf, pack): &mut (Vec<f32>, Vec<f32>), p| -> Result<()> {
                let r0 = p * PANEL;
                let n = PANEL.min(n_out - r0);
                let row0 = rows.start + r0;
                let panel = match w.dense() {
                    Some(d) => d.rows(k, row0, n),
                    None => {
                        buf.resize(n * k, 0.0);
                        w.rows_to_f32(row0, n, buf)?;
                        Panel::F32(buf)
                    }
                };
                let base = &base;
                // SAFETY: `fits` above proves that `out[i * stride + j]` exists for i < t and
                // j < n_out, so this task's columns r0 .. r0 + n of every token row do too; tasks
                // own disjoint column ranges, and `out` stays mutably borrowed until they all end.
                let finite =
                    unsafe { gemm_window(isa, x, t, k, panel, n, base.0.add(r0), stride, pack) };
                if finite {
                    return Ok(());
                }
                // The source's own widening names the first bad element.
                buf.resize(n * k, 0.0);
                w.rows_to_f32(row0, n, buf)?;
                Err(VerifyError::non_finite(w.name(), row0 * k))
            },
        )
}

/// The output of a product, shared by the tasks that each write their own columns of it.
struct OutPtr(*mut f32);

// SAFETY: tasks write disjoint elements through the pointer (see its one use).
unsafe impl Sync for OutPtr {}

/// The source's own product ([`RowSource::linear_rows`]) over blocks of [`SOURCE_PANEL`] rows in
/// parallel, or `None` when the source leaves the product to the f32 GEMM. Every output value is
/// one dot product whatever the block, so the cut changes no bit; what it buys is that each
/// block's own serial steps (rounding the activations, laying out its result) run on all
/// threads at once.
fn source_product(
    x: &[f32],
    t: usize,
    w: &dyn RowSource,
    rows: Range<usize>,
    out: &mut [f32],
    stride: usize,
) -> Option<Result<()>> {
    let n_out = rows.len();
    let blocks: Vec<Option<Result<Vec<f32>>>> = (0..n_out.div_ceil(SOURCE_PANEL))
        .into_par_iter()
        .map(|b| {
            let r0 = rows.start + b * SOURCE_PANEL;
            w.linear_rows(x, t, r0..(r0 + SOURCE_PANEL).min(rows.end))
        })
        .collect();
    // A source either computes every product of a matrix or none.
    let blocks: Vec<Vec<f32>> = match blocks.into_iter().collect::<Option<Result<_>>>()? {
        Ok(b) => b,
        Err(e) => return Some(Err(e)),
    };
    out.par_chunks_mut(stride)
        .take(t)
        .enumerate()
        .for_each(|(i, dst)| {
            for (b, y) in blocks.iter().enumerate() {
                let n = y.len() / t;
                let c0 = b * SOURCE_PANEL;
                dst[c0..c0 + n].copy_from_slice(&y[i * n..(i + 1) * n]);
            }
        });
    Some(Ok(()))
}

/// `y[T, out] = x[T, in] @ W.T` over all rows of W.
pub fn linear(x: &[f32], t: usize, w: &dyn RowSource) -> Result<Vec<f32>> {
    linear_rows(x, t, w, 0..w.rows())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::weights::{DenseMatrix, ElemType};
    use std::borrow::Cow;

    fn naive(x: &[f32], t: usize, w: &[f32], out: usize, k: usize) -> Vec<f64> {
        let mut y = vec![0f64; t * out];
        for i in 0..t {
            for j in 0..out {
                y[i * out + j] = (0..k)
                    .map(|c| x[i * k + c] as f64 * w[j * k + c] as f64)
                    .sum();
            }
        }
        y
    }

    fn pseudo(n: usize, seed: u32) -> Vec<f32> {
        testkit::XorShift32::new(seed.wrapping_mul(2654435761).wrapping_add(1))
            .take(n)
            .map(|s| (s as f32 / u32::MAX as f32) - 0.5)
            .collect()
    }

    #[test]
    fn linear_matches_f64_reference_across_panel_edges() {
        for &(t, out, k) in &[(1, 1, 1), (3, 65, 7), (17, 130, 33), (5, 64, 128)] {
            let x = pseudo(t * k, 1);
            let w = pseudo(out * k, 2);
            let m = DenseMatrix::from_f32("w", out, k, &w).unwrap();
            let y = linear(&x, t, &m).unwrap();
            let r = naive(&x, t, &w, out, k);
            for (a, b) in y.iter().zip(&r) {
                assert!((*a as f64 - b).abs() < 1e-5, "{t}x{out}x{k}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn bf16_rows_widen_exactly_and_row_ranges_select() {
        let vals = [1.0f32, -2.5, 0.15625, 3.0, 0.5, -1.0];
        let bytes: Vec<u8> = vals
            .iter()
            .flat_map(|v| ((v.to_bits() >> 16) as u16).to_le_bytes())
            .collect();
        let m = DenseMatrix::new("w", ElemType::BF16, 3, 2, Cow::Owned(bytes)).unwrap();
        let y = linear_rows(&[1.0, 10.0], 1, &m, 1..3).unwrap();
        assert_eq!(y, vec![0.15625 + 30.0, 0.5 - 10.0]);
    }

    #[test]
    fn thread_count_does_not_change_bits() {
        let mut cases = 0;
        for (t, out, k) in [(9, 300, 77), (13, 1000, 600), (64, 200, 1536)] {
            let x = pseudo(t * k, 3);
            let w = pseudo(out * k, 4);
            let bf: Vec<u8> = w
                .iter()
                .flat_map(|v| ((v.to_bits() >> 16) as u16).to_le_bytes())
                .collect();
            let f32m = DenseMatrix::from_f32("w", out, k, &w).unwrap();
            let bf16m = DenseMatrix::new("w", ElemType::BF16, out, k, Cow::Owned(bf)).unwrap();
            for m in [&f32m, &bf16m] {
                let run = |n| {
                    rayon::ThreadPoolBuilder::new()
                        .num_threads(n)
                        .build()
                        .unwrap()
                        .install(|| linear(&x, t, m).unwrap())
                };
                let one = run(1);
                for n in [2, 3, 8] {
                    let other = run(n);
                    assert!(one
                        .iter()
                        .zip(&other)
                        .all(|(p, q)| p.to_bits() == q.to_bits()));
                    cases += 1;
                }
            }
        }
        println!("linear: {cases} (shape, type, threads) products bit-equal to 1 thread");
    }

    #[test]
    fn into_a_strided_output_fills_only_its_columns() {
        let (t, out, k) = (5, 70, 9);
        let x = pseudo(t * k, 5);
        let w = pseudo(out * k, 6);
        let m = DenseMatrix::from_f32("w", out, k, &w).unwrap();
        let want = linear_rows(&x, t, &m, 3..70).unwrap();
        let stride = 100;
        // Columns 10..77 of a [t, 100] buffer that ends right after the last row's values.
        let mut buf = vec![-7f32; 10 + (t - 1) * stride + 67];
        linear_rows_into(&x, t, &m, 3..70, &mut buf[10..], stride).unwrap();
        for i in 0..t {
            let row = &buf[i * stride..];
            assert!(row[..10].iter().all(|&v| v == -7.0));
            assert_eq!(&row[10..77], &want[i * 67..(i + 1) * 67]);
            if i + 1 < t {
                assert!(row[77..stride].iter().all(|&v| v == -7.0));
            }
        }
        let short = &mut buf[11..];
        assert!(linear_rows_into(&x, t, &m, 3..70, short, stride).is_err());
    }

    /// A source that multiplies by itself (as a quantized GGUF does), one plain f32 dot per
    /// output, and counts its calls.
    struct OwnProduct {
        w: Vec<f32>,
        rows: usize,
        cols: usize,
        calls: std::sync::atomic::AtomicUsize,
    }

    impl RowSource for OwnProduct {
        fn dims(&self) -> crate::weights::Dims<'_> {
            crate::weights::Dims::new("own", self.rows, self.cols)
        }
        fn read_rows(&self, _: usize, _: usize, _: &mut [f32]) -> Result<()> {
            panic!("a source with its own product is never widened")
        }
        fn linear_rows(&self, x: &[f32], t: usize, rows: Range<usize>) -> Option<Result<Vec<f32>>> {
            self.calls
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let k = self.cols;
            let mut y = vec![0f32; t * rows.len()];
            for i in 0..t {
                for (j, r) in rows.clone().enumerate() {
                    y[i * rows.len() + j] = (0..k).map(|c| x[i * k + c] * self.w[r * k + c]).sum();
                }
            }
            Some(Ok(y))
        }
    }

    #[test]
    fn own_products_run_in_row_blocks_with_the_same_bits() {
        let (t, rows, k) = (3, 2 * SOURCE_PANEL + 5, 8);
        let src = OwnProduct {
            w: pseudo(rows * k, 7),
            rows,
            cols: k,
            calls: Default::default(),
        };
        let x = pseudo(t * k, 8);
        let whole = src.linear_rows(&x, t, 0..rows).unwrap().unwrap();
        for threads in [1, 2] {
            let got = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| linear(&x, t, &src).unwrap());
            assert!(got
                .iter()
                .zip(&whole)
                .all(|(a, b)| a.to_bits() == b.to_bits()));
        }
        // One whole call above, then three blocks per run.
        assert_eq!(
            src.calls.load(std::sync::atomic::Ordering::Relaxed),
            1 + 2 * 3
        );
    }

    #[test]
    fn non_finite_weight_is_named() {
        let m = DenseMatrix::from_f32("layers.0.w", 1, 2, &[1.0, f32::NAN]).unwrap();
        let err = linear(&[1.0, 1.0], 1, &m).unwrap_err().to_string();
        assert!(err.contains("layers.0.w"), "{err}");
    }
}
