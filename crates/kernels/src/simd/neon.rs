//! placeholder during bring-up
use crate::GgmlType;
pub fn dequantize(ty: GgmlType, x: &[u8], out: &mut [f32]) { super::scalar::dequantize(ty, x, out) }
pub fn vec_dot(ty: GgmlType, x: &[u8], y: &[u8]) -> f32 { super::scalar::vec_dot(ty, x, y) }
