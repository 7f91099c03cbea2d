//! Every kernel path against the scalar reference: dequantization must be bit-identical (on
//! ggml's golden blocks and on random blocks), dot products equal within a float-summation bound.
//!
//! The dot-product bound. All paths compute the same exact integer sums per block (or
//! sub-block); they differ only in how the f32 block terms `d·isum` (and `dmin·Σ bsum·m`) are
//! rounded and added: the scalar reference adds them one after another (or into 8 lanes), SIMD
//! paths into 8 or 16 lanes and a final tree. For k float additions the rounding error is at
//! most (k-1)·ε·Σ|terms| (ε = 2⁻²³ relative unit roundoff bound f32::EPSILON covers), and each
//! term carries a few roundings of its own (the f32 product of the two scales, the i32→f32
//! conversion of sums above 2²⁴, the multiply). With nb blocks per row both results are within
//! (nb + 8)·ε·M of the exact value, M = Σ_i |a_i|·(|w_i − m_i| + |m_i|) where w is the dequantized
//! weight, m its "min" part (what the block dequantizes to with all quants zero) and a the
//! dequantized activation; so |Δ| ≤ 2·(nb + 8)·ε·M. A layout or scale bug moves the result by
//! about M/n per wrong value, far above that at the row lengths tested (and the 256-value rows
//! make even one wrong value visible: 2·9·ε·M ≪ M/256).

use kernels::dot::{quantize_activation, vec_dot_type, vec_dot_with};
use kernels::simd::{available_paths, dequantize_row_with, Path};
use kernels::{dequantize_row_ref, quantize_row, GgmlType};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use testkit::golden_dir;

/// Weight types with a dot product, as the tests exercise them.
const WEIGHT_TYPES: [GgmlType; 15] = [
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

const ROW_LENGTHS: [usize; 5] = [256, 768, 2048, 4096, 16384];

/// Gaussian values with 1% outliers ×40 and an occasional exact zero.
fn random_row(rng: &mut ChaCha8Rng, n: usize, sigma: f32) -> Vec<f32> {
    (0..n)
        .map(|_| {
            let u1: f32 = rng.gen_range(1e-7f32..1.0);
            let u2: f32 = rng.gen();
            let g = (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos() * sigma;
            match rng.gen_range(0..100) {
                0 => g * 40.0,
                1 => 0.0,
                _ => g,
            }
        })
        .collect()
}

fn assert_bits_equal(ty: GgmlType, what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(
            g.to_bits(),
            w.to_bits(),
            "{ty} {what}: value {i} differs: {g} vs {w}"
        );
    }
}

#[test]
fn dequantize_matches_ggml_golden_on_every_path() {
    let root = golden_dir();
    let mut cases = 0;
    let mut dirs: Vec<_> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("golden folder {}: {e}", root.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("manifest.json").is_file())
        .collect();
    dirs.sort();
    for dir in dirs {
        let manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
        let n = manifest["n_per_row"].as_u64().unwrap() as usize;
        for case in manifest["cases"].as_array().expect("cases") {
            let name = case["type"].as_str().unwrap();
            let ty: GgmlType = name.parse().unwrap();
            let blocks = std::fs::read(dir.join(case["blocks"].as_str().unwrap())).unwrap();
            let deq = std::fs::read(dir.join(case["dequant"].as_str().unwrap())).unwrap();
            let want: Vec<f32> = deq
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            assert_eq!(want.len() % n, 0);
            for path in available_paths() {
                let mut got = vec![0f32; want.len()];
                dequantize_row_with(path, ty, &blocks, &mut got).unwrap();
                assert_bits_equal(
                    ty,
                    &format!("golden {} on {path}", dir.display()),
                    &got,
                    &want,
                );
                cases += 1;
            }
        }
    }
    println!("simd dequantize vs golden: checked {cases} cases");
    assert!(cases > 0, "no golden cases found under {}", root.display());
}

/// Random bytes for `nb` blocks of `ty`, with every fp16 scale field replaced by a finite value
/// (random scale bytes would be NaN/Inf now and then, whose payloads are not what is tested).
fn random_blocks(rng: &mut ChaCha8Rng, ty: GgmlType, nb: usize) -> Vec<u8> {
    let ts = ty.type_size();
    let mut bytes: Vec<u8> = (0..nb * ts).map(|_| rng.gen()).collect();
    let half_fields: &[usize] = match ty {
        GgmlType::Q4_0 | GgmlType::Q5_0 | GgmlType::Q8_0 | GgmlType::IQ4NL => &[0],
        GgmlType::Q4_1 | GgmlType::Q5_1 | GgmlType::Q8_1 => &[0, 2],
        GgmlType::Q4K | GgmlType::Q5K => &[0, 2],
        GgmlType::IQ4XS => &[0],
        GgmlType::Q2K => &[80, 82],
        GgmlType::Q3K => &[108],
        GgmlType::Q6K => &[208],
        GgmlType::F16 => &[0],
        _ => &[],
    };
    for b in bytes.chunks_exact_mut(ts) {
        for &off in half_fields {
            let v = kernels::fp::f32_to_f16(rng.gen_range(-2.0f32..2.0));
            b[off..off + 2].copy_from_slice(&v.to_le_bytes());
        }
        match ty {
            GgmlType::F32 => b.copy_from_slice(&rng.gen_range(-1e3f32..1e3).to_le_bytes()),
            GgmlType::BF16 => {
                let v = kernels::fp::f32_to_bf16(rng.gen_range(-1e3f32..1e3));
                b.copy_from_slice(&v.to_le_bytes());
            }
            GgmlType::Q8K => b[..4].copy_from_slice(&rng.gen_range(-1f32..1.0).to_le_bytes()),
            _ => {}
        }
    }
    bytes
}

#[test]
fn dequantize_random_blocks_identical_on_every_path() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut cases = 0;
    for ty in GgmlType::ALL {
        for n in [256usize, 4096] {
            let nb = n / ty.block_size();
            let bytes = random_blocks(&mut rng, ty, nb);
            let mut want = vec![0f32; n];
            dequantize_row_ref(ty, &bytes, &mut want).unwrap();
            for path in available_paths() {
                let mut got = vec![0f32; n];
                dequantize_row_with(path, ty, &bytes, &mut got).unwrap();
                assert_bits_equal(ty, &format!("random n={n} on {path}"), &got, &want);
                cases += 1;
            }
        }
    }
    println!("simd dequantize vs reference: checked {cases} cases");
}

#[test]
fn dequantize_rejects_bad_lengths() {
    for path in available_paths() {
        let mut out = vec![0f32; 32];
        assert!(dequantize_row_with(path, GgmlType::Q4_0, &[0u8; 17], &mut out).is_err());
        assert!(dequantize_row_with(path, GgmlType::Q4_0, &[0u8; 36], &mut out).is_err());
        assert!(dequantize_row_with(path, GgmlType::Q4_0, &[0u8; 18], &mut out).is_ok());
    }
}

/// M of the module docs: Σ |a|·(|w − m| + |m|).
fn magnitude(ty: GgmlType, w_bytes: &[u8], a_bytes: &[u8], n: usize) -> f64 {
    let mut w = vec![0f32; n];
    dequantize_row_ref(ty, w_bytes, &mut w).unwrap();
    let mut a = vec![0f32; n];
    dequantize_row_ref(vec_dot_type(ty), a_bytes, &mut a).unwrap();
    let m = min_part(ty, w_bytes, n);
    (0..n)
        .map(|i| (a[i] as f64).abs() * (((w[i] - m[i]) as f64).abs() + (m[i] as f64).abs()))
        .sum()
}

/// What each weight dequantizes to with its quants zeroed (the constant part of the block).
fn min_part(ty: GgmlType, w_bytes: &[u8], n: usize) -> Vec<f32> {
    let ts = ty.type_size();
    let quant_ranges: &[(usize, usize)] = match ty {
        GgmlType::Q4_0 | GgmlType::IQ4NL => &[(2, 18)],
        GgmlType::Q4_1 => &[(4, 20)],
        GgmlType::Q5_0 => &[(2, 22)],
        GgmlType::Q5_1 => &[(4, 24)],
        GgmlType::Q2K => &[(16, 80)],
        GgmlType::Q4K => &[(16, 144)],
        GgmlType::Q5K => &[(16, 176)],
        _ => return vec![0.0; n],
    };
    let mut z = w_bytes.to_vec();
    for b in z.chunks_exact_mut(ts) {
        for &(s, e) in quant_ranges {
            b[s..e].fill(0);
        }
    }
    let mut m = vec![0f32; n];
    dequantize_row_ref(ty, &z, &mut m).unwrap();
    m
}

/// The dot of the dequantized rows in f64. For Q4_1/Q5_1 the min term pairs the block's `m`
/// with the activation block's stored sum `s = fp16(d·Σq)`, as the format defines the product
/// (Σ of the dequantized activations differs from `s` by the fp16 rounding of `s`).
fn f64_dot(ty: GgmlType, w_bytes: &[u8], a_bytes: &[u8], n: usize) -> f64 {
    let mut w = vec![0f32; n];
    if vec_dot_type(ty) == GgmlType::Q8_1 {
        let mut scaled = w_bytes.to_vec();
        let mut mins = 0f64;
        for (b, ab) in scaled
            .chunks_exact_mut(ty.type_size())
            .zip(a_bytes.chunks_exact(36))
        {
            let m = kernels::fp::f16_to_f32(u16::from_le_bytes([b[2], b[3]]));
            let s = kernels::fp::f16_to_f32(u16::from_le_bytes([ab[2], ab[3]]));
            mins += m as f64 * s as f64;
            b[2..4].fill(0);
        }
        dequantize_row_ref(ty, &scaled, &mut w).unwrap();
        let mut a = vec![0f32; n];
        dequantize_row_ref(GgmlType::Q8_1, a_bytes, &mut a).unwrap();
        return mins
            + w.iter()
                .zip(&a)
                .map(|(x, y)| *x as f64 * *y as f64)
                .sum::<f64>();
    }
    dequantize_row_ref(ty, w_bytes, &mut w).unwrap();
    let mut a = vec![0f32; n];
    dequantize_row_ref(vec_dot_type(ty), a_bytes, &mut a).unwrap();
    w.iter().zip(&a).map(|(x, y)| *x as f64 * *y as f64).sum()
}

#[test]
fn vec_dot_agrees_with_scalar_on_every_path() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let paths = available_paths();
    let mut cases = 0;
    let mut worst = 0f64;
    for ty in WEIGHT_TYPES {
        for &n in &ROW_LENGTHS {
            for trial in 0..3 {
                let sigma = [1.0f32, 1e-3, 30.0][trial];
                let wx = random_row(&mut rng, n, sigma);
                let mut w = vec![0u8; ty.row_bytes(n).unwrap()];
                quantize_row(ty, &wx, None, &mut w).unwrap();
                let ax = random_row(&mut rng, n, 1.0);
                let mut a = Vec::new();
                quantize_activation(ty, &ax, &mut a).unwrap();

                let nb = n / ty.block_size();
                let m = magnitude(ty, &w, &a, n);
                let bound = 2.0 * (nb as f64 + 8.0) * f32::EPSILON as f64 * m + 1e-30;
                let reference = vec_dot_with(Path::Scalar, ty, &w, &a, n).unwrap();
                let exact = f64_dot(ty, &w, &a, n);
                assert!(
                    (reference as f64 - exact).abs() <= bound,
                    "{ty} n={n}: scalar {reference} vs f64 {exact} (bound {bound})"
                );
                for &path in &paths {
                    let got = vec_dot_with(path, ty, &w, &a, n).unwrap();
                    let diff = (got as f64 - reference as f64).abs();
                    assert!(
                        diff <= bound,
                        "{ty} n={n} trial {trial} on {path}: {got} vs scalar {reference} \
                         (|Δ| {diff:e} > bound {bound:e})"
                    );
                    if m > 0.0 {
                        worst = worst.max(diff / (f32::EPSILON as f64 * m));
                    }
                    cases += 1;
                }
            }
        }
    }
    println!("simd vec_dot vs scalar: checked {cases} cases (worst |Δ| = {worst:.2}·ε·M)");
}

#[test]
fn vec_dot_on_random_blocks_agrees() {
    // Random bytes reach every quant, scale and min value, including the extremes that
    // quantizers rarely produce (6-bit scales of 63, Q8 weights of -128).
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut cases = 0;
    for ty in WEIGHT_TYPES {
        let n = 1024;
        let w = random_blocks(&mut rng, ty, n / ty.block_size());
        let ax = random_row(&mut rng, n, 2.0);
        let mut a = Vec::new();
        quantize_activation(ty, &ax, &mut a).unwrap();
        let nb = n / ty.block_size();
        let bound = 2.0 * (nb as f64 + 8.0) * f32::EPSILON as f64 * magnitude(ty, &w, &a, n);
        let reference = vec_dot_with(Path::Scalar, ty, &w, &a, n).unwrap();
        for path in available_paths() {
            let got = vec_dot_with(path, ty, &w, &a, n).unwrap();
            assert!(
                (got as f64 - reference as f64).abs() <= bound,
                "{ty} random blocks on {path}: {got} vs {reference} (bound {bound:e})"
            );
            cases += 1;
        }
    }
    println!("simd vec_dot on random blocks: checked {cases} cases");
}

#[test]
fn vec_dot_rejects_mismatched_rows() {
    let w = vec![0u8; GgmlType::Q4K.row_bytes(256).unwrap()];
    let a = vec![0u8; GgmlType::Q8K.row_bytes(256).unwrap()];
    for path in available_paths() {
        assert!(vec_dot_with(path, GgmlType::Q4K, &w, &a, 256).is_ok());
        assert!(vec_dot_with(path, GgmlType::Q4K, &w, &a, 512).is_err());
        assert!(vec_dot_with(path, GgmlType::Q4K, &w[1..], &a, 256).is_err());
        assert!(vec_dot_with(path, GgmlType::Q4K, &w, &a[..100], 256).is_err());
        assert!(vec_dot_with(path, GgmlType::Q4K, &w, &a, 100).is_err());
    }
}

#[test]
fn activation_types_pair_with_themselves() {
    // Q8_1 and Q8_K never appear as weights in ggml; g4q defines their dot as the sum of the
    // dequantized products so the API is total. Check that definition on every path.
    let mut rng = ChaCha8Rng::seed_from_u64(13);
    let mut cases = 0;
    for ty in [GgmlType::Q8_1, GgmlType::Q8K] {
        let n = 1024;
        let mut w = Vec::new();
        let mut a = Vec::new();
        quantize_activation(ty, &random_row(&mut rng, n, 1.0), &mut w).unwrap();
        quantize_activation(ty, &random_row(&mut rng, n, 1.0), &mut a).unwrap();
        let mut wd = vec![0f32; n];
        let mut ad = vec![0f32; n];
        dequantize_row_ref(ty, &w, &mut wd).unwrap();
        dequantize_row_ref(ty, &a, &mut ad).unwrap();
        let exact: f64 = wd.iter().zip(&ad).map(|(p, q)| *p as f64 * *q as f64).sum();
        let mag: f64 = wd
            .iter()
            .zip(&ad)
            .map(|(p, q)| (*p as f64 * *q as f64).abs())
            .sum();
        for path in available_paths() {
            let got = vec_dot_with(path, ty, &w, &a, n).unwrap();
            assert!(
                (got as f64 - exact).abs() <= 2.0 * n as f64 * f32::EPSILON as f64 * mag,
                "{ty} on {path}: {got} vs {exact}"
            );
            cases += 1;
        }
    }
    println!("simd activation-type dots: checked {cases} cases");
}
