//! The value and shape changes llama.cpp's `Gemma4VisionAudioModel.modify_tensors` makes
//! before writing a tower tensor.

use crate::error::{ConvertError, Result};

/// What happens to a tensor's values on the way into the projector file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transform {
    /// Copied as they are (possibly under a new shape: a 0-d scalar becomes `[1]`, the
    /// depthwise convolution `[C, 1, K]` becomes `[C, K]`).
    None,
    /// `softplus` (PyTorch's: `x` above 20, else `log1p(exp(x))`), for the audio attention's
    /// `per_dim_scale`, which llama.cpp stores already applied.
    Softplus,
    /// The patch embedder's `[n_embd, p·p·3]` weight, whose columns are (row, column, channel),
    /// reordered to `[n_embd, 3, p, p]` (channel, row, column) as ggml's im2col reads patches.
    PatchToChw { patch: usize },
}

/// The transform and the written shape (PyTorch order) of a tower tensor with checkpoint name
/// `hf` and checkpoint shape `shape`.
pub fn plan(hf: &str, shape: &[usize], file: &std::path::Path) -> Result<(Transform, Vec<usize>)> {
    // 0-d scalars (the clipped linears' bounds) become 1-D tensors of one value.
    let one = [1];
    let shape = if shape.is_empty() { &one[..] } else { shape };
    if super::names::is_audio(hf) {
        if hf.ends_with("per_dim_key_scale") || hf.ends_with("per_dim_scale") {
            return Ok((Transform::Softplus, shape.to_vec()));
        }
        if hf.contains("lconv1d.depthwise_conv1d") && hf.ends_with(".weight") {
            return match shape {
                [c, 1, k] => Ok((Transform::None, vec![*c, *k])),
                _ => Err(ConvertError::tensor(
                    file,
                    hf,
                    format!("shape {shape:?}: a depthwise convolution is [channels, 1, kernel]"),
                )),
            };
        }
        return Ok((Transform::None, shape.to_vec()));
    }
    if hf.ends_with("patch_embedder.input_proj.weight") {
        let bad = || {
            ConvertError::tensor(
                file,
                hf,
                format!("shape {shape:?}: the patch embedder is [width, patch·patch·3]"),
            )
        };
        let [n_embd, k] = shape else {
            return Err(bad());
        };
        // llama.cpp: patch_size = int((k // 3) ** 0.5), then a reshape that must fit exactly.
        let patch = ((k / 3) as f64).sqrt() as usize;
        if patch == 0 || patch * patch * 3 != *k {
            return Err(bad());
        }
        return Ok((
            Transform::PatchToChw { patch },
            vec![*n_embd, 3, patch, patch],
        ));
    }
    Ok((Transform::None, shape.to_vec()))
}

/// Applies `t` to the tensor's values (f32, the checkpoint's order).
pub fn apply(t: Transform, values: Vec<f32>) -> Vec<f32> {
    match t {
        Transform::None => values,
        Transform::Softplus => {
            let mut values = values;
            super::softplus::softplus_tensor(&mut values);
            values
        }
        Transform::PatchToChw { patch: p } => {
            let k = 3 * p * p;
            let mut out = vec![0f32; values.len()];
            for (src, dst) in values.chunks_exact(k).zip(out.chunks_exact_mut(k)) {
                for c in 0..3 {
                    for h in 0..p {
                        for w in 0..p {
                            dst[(c * p + h) * p + w] = src[(h * p + w) * 3 + c];
                        }
                    }
                }
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_columns_move_to_channel_major() {
        // p = 2: columns (h, w, c) → (c, h, w).
        let src: Vec<f32> = (0..12).map(|i| i as f32).collect();
        let out = apply(Transform::PatchToChw { patch: 2 }, src);
        // channel 0 at (h, w) = (0,0),(0,1),(1,0),(1,1) were columns 0, 3, 6, 9.
        assert_eq!(&out[..4], &[0.0, 3.0, 6.0, 9.0]);
        assert_eq!(&out[8..], &[2.0, 5.0, 8.0, 11.0]);
    }

    #[test]
    fn shapes_like_llama_cpp() {
        let f = std::path::Path::new("m");
        let (t, s) = plan(
            "model.audio_tower.layers.0.lconv1d.depthwise_conv1d.weight",
            &[32, 1, 5],
            f,
        )
        .unwrap();
        assert_eq!((t, s), (Transform::None, vec![32, 5]));
        let (t, s) = plan(
            "model.vision_tower.patch_embedder.input_proj.weight",
            &[32, 768],
            f,
        )
        .unwrap();
        assert_eq!(
            (t, s),
            (Transform::PatchToChw { patch: 16 }, vec![32, 3, 16, 16])
        );
        assert!(plan(
            "model.vision_tower.patch_embedder.input_proj.weight",
            &[32, 770],
            f
        )
        .is_err());
        assert_eq!(
            plan(
                "model.audio_tower.layers.0.self_attn.q_proj.input_max",
                &[],
                f
            )
            .unwrap()
            .1,
            vec![1]
        );
    }
}
