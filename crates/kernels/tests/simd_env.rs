//! `G4Q_SIMD` naming a path that does not exist is an error from every entry point, never a
//! silent fallback (own test binary: the setting is read once per process).

use kernels::dot::vec_dot;
use kernels::matmul::matvec;
use kernels::simd::{active_path, dequantize_row};
use kernels::{GgmlType, KernelError};

#[test]
fn unknown_path_is_reported_everywhere() {
    // SAFETY: this test binary has a single test, so no other thread reads the environment.
    unsafe { std::env::set_var("G4Q_SIMD", "sse9") };
    let is_path_error = |e: KernelError| matches!(e, KernelError::SimdPath { ref requested, .. } if requested == "sse9");
    assert!(is_path_error(active_path().unwrap_err()));
    let mut out = vec![0f32; 32];
    assert!(is_path_error(
        dequantize_row(GgmlType::Q8_0, &[0u8; 34], &mut out).unwrap_err()
    ));
    assert!(is_path_error(
        vec_dot(GgmlType::Q8_0, &[0u8; 34], &[0u8; 34], 32).unwrap_err()
    ));
    let mut y = vec![0f32; 1];
    let err = matvec(GgmlType::Q8_0, &[0u8; 34], 1, 32, &out, &mut y).unwrap_err();
    assert!(is_path_error(err));
    println!("simd env: checked 4 entry points");
}
