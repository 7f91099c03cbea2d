//! `kernels`: ggml's block formats in Rust. Each format has its exact byte layout, a scalar
//! reference quantizer that reproduces ggml byte for byte (with and without an importance
//! matrix), a scalar dequantizer, and SIMD dequantize / dot-product kernels (AVX2, AVX-512,
//! NEON) checked against the scalar twin. Knows nothing of files, models or the CLI.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod blocks;
pub mod dot;
pub mod error;
pub mod fp;
pub mod matmul;
pub mod quants;
pub mod simd;
// The tiles run only on x86-64; elsewhere the prefill keeps the per-pair dots.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
mod tile;
pub mod types;

pub use error::KernelError;
pub use quants::{dequantize_row_ref, quantize_row, quantize_rows};
pub use types::GgmlType;
