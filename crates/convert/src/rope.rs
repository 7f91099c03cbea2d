//! RoPE frequencies of Gemma 4, shared by the reference forward pass (`verify`)
//! and the ONNX graph, so both rotate by the same f32 values.

use crate::config::{RopeParams, RopeType};

/// Inverse RoPE frequencies of a layer with head dim `hd`: `1 / theta^(2i / hd)`
/// for the rotated pairs, 0 (cos 1, sin 0: a bit-exact pass-through) for the rest. Proportional
/// RoPE rotates the first `partial_rotary_factor * hd / 2` pairs and keeps the full head dim in
/// the exponent. The exponent is an f32 division and the power is rounded to f32, as torch
/// computes it.
pub fn rope_inv_freq(params: &RopeParams, hd: usize) -> std::result::Result<Vec<f32>, String> {
    if !hd.is_multiple_of(2) {
        return Err(format!("head dim {hd} is odd"));
    }
    let half = hd / 2;
    let rotated = match params.rope_type {
        RopeType::Proportional => (params.partial_rotary_factor * hd as f64 / 2.0).floor() as usize,
        RopeType::Default if params.partial_rotary_factor == 1.0 => half,
        RopeType::Default => {
            return Err(format!(
                "default RoPE with partial factor {} is not supported",
                params.partial_rotary_factor
            ))
        }
    }
    .min(half);
    Ok((0..half)
        .map(|i| {
            if i < rotated {
                let e = (2 * i) as f32 / hd as f32;
                1.0f32 / (params.theta.powf(e as f64) as f32)
            } else {
                0.0
            }
        })
        .collect())
}
