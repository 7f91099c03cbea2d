//! Property tests of the byte-level API on random and hostile input, for every type:
//! - decoding arbitrary bytes never panics, and succeeds exactly when the lengths fit;
//! - quantizing any finite floats (subnormal to f32::MAX) never panics and decodes again;
//! - on ordinary data the round trip is as accurate as the format allows;
//! - a NaN/Inf anywhere is rejected with an error naming its row and column, before anything
//!   is written; a bad importance matrix likewise;
//! - every wrong length is an error, not a panic;
//! - the bytes do not depend on the thread count and equal the row-by-row result.

use kernels::{dequantize_row_ref, quantize_row, quantize_rows, GgmlType, KernelError};
use proptest::prelude::*;

fn any_type() -> impl Strategy<Value = GgmlType> {
    prop::sample::select(GgmlType::ALL.to_vec())
}

/// Any finite f32, weighted towards the awkward ones (zero, subnormal, huge).
fn any_finite() -> BoxedStrategy<f32> {
    prop_oneof![
        4 => -10.0f32..10.0,
        1 => Just(0.0f32),
        1 => prop::num::f32::SUBNORMAL | prop::num::f32::POSITIVE | prop::num::f32::NEGATIVE,
        1 => prop::num::f32::NORMAL | prop::num::f32::POSITIVE | prop::num::f32::NEGATIVE,
        1 => prop::sample::select(vec![f32::MAX, -f32::MAX, f32::MIN_POSITIVE, 65504.0, 1e-30]),
    ]
    .boxed()
}

/// A row shape for `ty`: (rows, values per row), kept small.
fn shape(ty: GgmlType) -> impl Strategy<Value = (usize, usize)> {
    (1usize..4, 1usize..4).prop_map(move |(r, b)| (r, b * ty.block_size().max(32)))
}

/// `(type, rows, n_per_row, values, optional imatrix)` with values from `value`.
fn case(
    value: BoxedStrategy<f32>,
) -> impl Strategy<Value = (GgmlType, usize, usize, Vec<f32>, Option<Vec<f32>>)> {
    any_type().prop_flat_map(move |ty| {
        let value = value.clone();
        shape(ty).prop_flat_map(move |(rows, n)| {
            (
                Just(ty),
                Just(rows),
                Just(n),
                prop::collection::vec(value.clone(), rows * n),
                prop::option::of(prop::collection::vec(0.0f32..50.0, n)),
            )
        })
    })
}

/// Relative RMS error a format must reach on uniform data (generous: the golden test checks
/// exactness, this catches gross breakage such as a wrong nibble order or scale).
fn tolerance(ty: GgmlType) -> f64 {
    use GgmlType::*;
    match ty {
        F32 => 0.0,
        F16 => 1e-3,
        BF16 => 1e-2,
        Q8_0 | Q8_1 | Q8K => 0.02,
        Q6K => 0.05,
        Q5_0 | Q5_1 | Q5K => 0.08,
        Q4_0 | Q4_1 | Q4K | IQ4NL | IQ4XS => 0.16,
        Q3K => 0.3,
        Q2K => 0.6,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn decoding_random_bytes_never_panics(
        ty in any_type(),
        bytes in prop::collection::vec(any::<u8>(), 0..1200),
        extra in 0usize..3,
        offset in 0usize..4,
    ) {
        let bytes = &bytes[offset.min(bytes.len())..];
        let fits = bytes.len() % ty.type_size() == 0;
        let n = bytes.len() / ty.type_size() * ty.block_size();
        // `extra == 0` asks for the right output size, anything else for a wrong one.
        let mut out = vec![0.0f32; n + extra];
        let r = dequantize_row_ref(ty, bytes, &mut out);
        prop_assert_eq!(r.is_ok(), fits && extra == 0, "{}: {:?}", ty, r);
    }

    #[test]
    fn quantizing_any_finite_values_never_panics(
        (ty, rows, n, x, qw) in case(any_finite()),
    ) {
        let mut out = vec![0u8; rows * ty.row_bytes(n).unwrap()];
        quantize_rows(ty, &x, n, qw.as_deref(), &mut out).unwrap();
        let mut back = vec![0.0f32; x.len()];
        dequantize_row_ref(ty, &out, &mut back).unwrap();
    }

    #[test]
    fn round_trip_is_accurate_on_ordinary_data(
        (ty, rows, n, x, qw) in case((-1.0f32..1.0).boxed()),
        scale in prop::sample::select(vec![1e-3f32, 1.0, 300.0]),
    ) {
        let x: Vec<f32> = x.iter().map(|v| v * scale).collect();
        let mut out = vec![0u8; rows * ty.row_bytes(n).unwrap()];
        quantize_rows(ty, &x, n, qw.as_deref(), &mut out).unwrap();
        let mut back = vec![0.0f32; x.len()];
        dequantize_row_ref(ty, &out, &mut back).unwrap();
        let err: f64 = x.iter().zip(&back).map(|(a, b)| (*a as f64 - *b as f64).powi(2)).sum();
        let norm: f64 = x.iter().map(|a| (*a as f64).powi(2)).sum();
        let rel = if norm > 0.0 { (err / norm).sqrt() } else { err.sqrt() };
        prop_assert!(rel <= tolerance(ty), "{}: relative RMS error {}", ty, rel);
    }

    #[test]
    fn non_finite_input_is_rejected_naming_the_row(
        (ty, rows, n, x, qw) in case((-5.0f32..5.0).boxed()),
        pick in any::<prop::sample::Index>(),
        bad in prop::sample::select(vec![f32::NAN, f32::INFINITY, f32::NEG_INFINITY]),
    ) {
        let mut x = x;
        let at = pick.index(x.len());
        x[at] = bad;
        let mut out = vec![0xa5u8; rows * ty.row_bytes(n).unwrap()];
        let err = quantize_rows(ty, &x, n, qw.as_deref(), &mut out).unwrap_err();
        match &err {
            KernelError::NotFinite { row, col, .. } => {
                prop_assert_eq!((*row, *col), (at / n, at % n));
            }
            other => prop_assert!(false, "wrong error {:?}", other),
        }
        let row_text = format!("row {}", at / n);
        prop_assert!(err.to_string().contains(&row_text), "{}", err);
        prop_assert!(out.iter().all(|&b| b == 0xa5), "output written despite the error");
    }

    #[test]
    fn bad_importance_matrix_is_rejected(
        (ty, rows, n, x, _qw) in case((-5.0f32..5.0).boxed()),
        delta in prop::sample::select(vec![-1isize, 1, 32]),
        poison in any::<bool>(),
    ) {
        let mut out = vec![0u8; rows * ty.row_bytes(n).unwrap()];
        if poison {
            let mut qw = vec![1.0f32; n];
            qw[n / 2] = f32::NAN;
            let r = quantize_rows(ty, &x, n, Some(&qw), &mut out);
            let col = n / 2;
            prop_assert!(
                matches!(r, Err(KernelError::ImatrixNotFinite { col: c, .. }) if c == col),
                "{:?}",
                r
            );
        } else {
            let qw = vec![1.0f32; (n as isize + delta) as usize];
            let r = quantize_rows(ty, &x, n, Some(&qw), &mut out);
            prop_assert!(matches!(r, Err(KernelError::ImatrixLength { .. })), "{:?}", r);
        }
    }

    #[test]
    fn wrong_lengths_are_errors(
        ty in any_type(),
        n in 0usize..600,
        len in 0usize..1300,
        out_len in 0usize..1300,
    ) {
        let x = vec![0.5f32; len];
        let mut out = vec![0u8; out_len];
        let r = quantize_rows(ty, &x, n, None, &mut out);
        let valid = n > 0
            && n % ty.block_size() == 0
            && len % n == 0
            && Some(out_len) == ty.row_bytes(n).map(|b| b * (len / n));
        prop_assert_eq!(r.is_ok(), valid, "{} n={} len={} out={}: {:?}", ty, n, len, out_len, r);
        if !valid {
            let ok_kind = matches!(
                r,
                Err(KernelError::RowLength { .. })
                    | Err(KernelError::InputLength { .. })
                    | Err(KernelError::OutputLength { .. })
            );
            prop_assert!(ok_kind, "{:?}", r);
        }
        // The single-row entry point treats the whole slice as one row.
        let r1 = quantize_row(ty, &x, None, &mut out);
        let valid1 = len > 0 && len % ty.block_size() == 0 && ty.row_bytes(len) == Some(out_len);
        prop_assert_eq!(r1.is_ok(), valid1);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn bytes_do_not_depend_on_thread_count(
        ty in any_type(),
        rows in 1usize..24,
        seed in any::<u64>(),
        with_imatrix in any::<bool>(),
    ) {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let n = 512;
        let x: Vec<f32> = (0..rows * n).map(|_| rng.gen_range(-2.0f32..2.0)).collect();
        let qw: Vec<f32> = (0..n).map(|_| rng.gen_range(0.01f32..10.0)).collect();
        let qw = with_imatrix.then_some(qw.as_slice());
        let row_bytes = ty.row_bytes(n).unwrap();
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let mut out = vec![0u8; rows * row_bytes];
            pool.install(|| quantize_rows(ty, &x, n, qw, &mut out)).unwrap();
            out
        };
        let one = run(1);
        prop_assert_eq!(&one, &run(3));
        let mut by_row = vec![0u8; rows * row_bytes];
        for (xr, o) in x.chunks_exact(n).zip(by_row.chunks_exact_mut(row_bytes)) {
            quantize_row(ty, xr, qw, o).unwrap();
        }
        prop_assert_eq!(&one, &by_row);
    }
}
