//! `G4Q_SIMD` naming an available path makes every path-less entry point use it (own test
//! binary: the setting is read once per process). The NEON code is forced here because it runs
//! everywhere (natively on AArch64, emulated elsewhere) and differs from the default path.

use kernels::dot::{quantize_activation, vec_dot, vec_dot_with};
use kernels::simd::{active_path, dequantize_row, dequantize_row_with, Path};
use kernels::{quantize_row, GgmlType};

#[test]
fn forced_path_is_used() {
    let name = Path::Neon.name();
    // SAFETY: this test binary has a single test, so no other thread reads the environment.
    unsafe { std::env::set_var("G4Q_SIMD", name) };
    assert_eq!(active_path().unwrap(), Path::Neon);

    let ty = GgmlType::Q4K;
    let n = 512;
    let x: Vec<f32> = (0..n)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
        .collect();
    let mut w = vec![0u8; ty.row_bytes(n).unwrap()];
    quantize_row(ty, &x, None, &mut w).unwrap();
    let mut a = Vec::new();
    quantize_activation(ty, &x, &mut a).unwrap();
    let got = vec_dot(ty, &w, &a, n).unwrap();
    let want = vec_dot_with(Path::Neon, ty, &w, &a, n).unwrap();
    assert_eq!(got.to_bits(), want.to_bits());

    let mut d1 = vec![0f32; n];
    let mut d2 = vec![0f32; n];
    dequantize_row(ty, &w, &mut d1).unwrap();
    dequantize_row_with(Path::Neon, ty, &w, &mut d2).unwrap();
    assert_eq!(d1, d2);
    println!("simd env forced to {name}: checked 3 entry points");
}
