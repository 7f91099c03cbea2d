//! The fast K-quant quantizers must give the reference quantizers' bytes on any input: random
//! rows mixing ordinary, tiny, huge, zero and repeated values, constant and all-zero rows,
//! rows with one outlier, with and without an importance matrix (including zero weights).

use bytemuck::Pod;
use kernels::blocks::{BlockQ2K, BlockQ3K, BlockQ4K, BlockQ5K, BlockQ6K};
use kernels::quants::kquants::*;
use proptest::prelude::*;

type Quant<B> = fn(&[f32], &mut [B], Option<&[f32]>);

const N: usize = 512;

fn same<B: Pod>(name: &str, r: Quant<B>, f: Quant<B>, x: &[f32], qw: Option<&[f32]>) {
    let mut a = vec![B::zeroed(); x.len() / 256];
    let mut b = vec![B::zeroed(); x.len() / 256];
    r(x, &mut a, qw);
    f(x, &mut b, qw);
    let (a, b): (&[u8], &[u8]) = (bytemuck::cast_slice(&a), bytemuck::cast_slice(&b));
    if a != b {
        let i = (0..a.len()).find(|&i| a[i] != b[i]).unwrap_or(0);
        panic!(
            "{name} (imatrix: {}): fast differs from ref at byte {i} of {}\nx = {x:?}\nqw = {qw:?}",
            qw.is_some(),
            a.len()
        );
    }
}

fn all_types(x: &[f32], qw: Option<&[f32]>) {
    same::<BlockQ2K>("q2_K", quantize_row_q2_k, quantize_row_q2_k_fast, x, qw);
    same::<BlockQ3K>("q3_K", quantize_row_q3_k, quantize_row_q3_k_fast, x, qw);
    same::<BlockQ4K>("q4_K", quantize_row_q4_k, quantize_row_q4_k_fast, x, qw);
    same::<BlockQ5K>("q5_K", quantize_row_q5_k, quantize_row_q5_k_fast, x, qw);
    same::<BlockQ6K>("q6_K", quantize_row_q6_k, quantize_row_q6_k_fast, x, qw);
}

/// One value: mostly ordinary, sometimes tiny, huge, zero or from a small set (ties).
fn value() -> impl Strategy<Value = f32> {
    prop_oneof![
        6 => -1.0f32..1.0,
        1 => -1e-6f32..1e-6,
        1 => -2.0e4f32..2.0e4,
        1 => Just(0.0f32),
        1 => prop::sample::select(vec![-0.5f32, 0.25, 0.5, 1.0, -1.0]),
    ]
}

/// A row shape: free values, a constant row, one outlier in zeros, or positive-only values.
fn row() -> impl Strategy<Value = Vec<f32>> {
    prop_oneof![
        4 => prop::collection::vec(value(), N),
        1 => (-3.0f32..3.0).prop_map(|c| vec![c; N]),
        1 => (0..N, -100.0f32..100.0).prop_map(|(i, v)| {
            let mut x = vec![0.0; N];
            x[i] = v;
            x
        }),
        1 => prop::collection::vec(0.0f32..5.0, N),
        1 => prop::collection::vec(-5.0f32..0.0, N),
    ]
}

fn imatrix() -> impl Strategy<Value = Vec<f32>> {
    prop::collection::vec(prop_oneof![8 => 0.01f32..100.0, 1 => Just(0.0f32)], N)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn fast_equals_ref(x in row(), qw in imatrix()) {
        all_types(&x, None);
        all_types(&x, Some(&qw));
    }
}

#[test]
fn fast_equals_ref_on_edge_rows() {
    let mut rows: Vec<Vec<f32>> = vec![
        vec![0.0; N],
        vec![1e-30; N],
        vec![-7.5; N],
        (0..N).map(|i| (i % 4) as f32).collect(),
        (0..N)
            .map(|i| if i % 2 == 0 { 1e-20 } else { -1e4 })
            .collect(),
        (0..N).map(|i| (i as f32 * 0.37).sin() * 1e5).collect(),
    ];
    rows.push(
        (0..N)
            .map(|i| if i < 256 { 0.0 } else { i as f32 })
            .collect(),
    );
    let qw_zero = vec![0.0f32; N];
    let qw_ones = vec![1.0f32; N];
    for x in &rows {
        all_types(x, None);
        all_types(x, Some(&qw_zero));
        all_types(x, Some(&qw_ones));
    }
    // An odd number of super-blocks, and several rows sharing one importance vector.
    let x: Vec<f32> = (0..3 * 256)
        .map(|i| ((i * 7919) % 613) as f32 / 613.0 - 0.4)
        .collect();
    all_types(&x, None);
    all_types(
        &x,
        Some(&x.iter().map(|v| v.abs() + 0.5).collect::<Vec<_>>()),
    );
    all_types(&x, Some(&vec![2.0f32; 256]));
}
