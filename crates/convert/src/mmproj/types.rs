//! The type llama.cpp's converter gives each projector tensor for `--outtype`: its forced F32
//! (and F16) tensors, and Q8_0's fallback to F16 for rows that are not whole blocks of 32.

use kernels::GgmlType;

/// The projector file types llama.cpp's converter writes (`--outtype f32|f16|bf16|q8_0`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutType {
    F32,
    F16,
    BF16,
    Q8_0,
}

impl OutType {
    /// The tensor type of a tensor that follows the file type.
    pub fn ggml(self) -> GgmlType {
        match self {
            OutType::F32 => GgmlType::F32,
            OutType::F16 => GgmlType::F16,
            OutType::BF16 => GgmlType::BF16,
            OutType::Q8_0 => GgmlType::Q8_0,
        }
    }

    /// `general.file_type` (llama_ftype).
    pub fn file_type(self) -> u32 {
        match self {
            OutType::F32 => 0,
            OutType::F16 => 1,
            OutType::BF16 => 32,
            OutType::Q8_0 => 7,
        }
    }

    /// The name llama.cpp's `--outtype` takes.
    pub fn name(self) -> &'static str {
        match self {
            OutType::F32 => "f32",
            OutType::F16 => "f16",
            OutType::BF16 => "bf16",
            OutType::Q8_0 => "q8_0",
        }
    }
}

/// The type of tower tensor `hf` (checkpoint name) written as `gguf` with `n_dims` dimensions
/// and rows of `row_len`, following `prepare_tensors` and the Gemma 4 / mmproj
/// `tensor_force_quant` overrides:
/// - audio convolutions (`.conv`, or `_conv` in a `.weight` name) and the position embedding
///   table are F32; the patch embedding is F16 in an F16 file, F32 otherwise;
/// - 1-D tensors and `*_norm.weight` are F32, whatever was forced;
/// - anything not named `*.weight` (biases, clip bounds, `std_*`) and the position embedding
///   are F32;
/// - the rest takes the file's type, and a Q8_0 row that is not whole blocks falls back to F16.
pub fn tensor_type(hf: &str, gguf: &str, n_dims: usize, row_len: usize, out: OutType) -> GgmlType {
    let audio = super::names::is_audio(hf);
    let mut forced = if audio
        && (hf.contains(".conv") || (hf.contains("_conv") && hf.contains(".weight")))
        || hf.contains("position_embedding_table")
    {
        Some(GgmlType::F32)
    } else if gguf.contains(".patch_embd.weight") || gguf.contains(".patch_merger.weight") {
        Some(if out == OutType::F16 {
            GgmlType::F16
        } else {
            GgmlType::F32
        })
    } else {
        None
    };
    if n_dims <= 1 || gguf.ends_with("_norm.weight") {
        forced = Some(GgmlType::F32);
    }
    if forced.is_none() && (!gguf.ends_with(".weight") || gguf == "v.position_embd.weight") {
        forced = Some(GgmlType::F32);
    }
    let ty = forced.unwrap_or(out.ggml());
    if ty == GgmlType::Q8_0 && !row_len.is_multiple_of(32) {
        // gguf-py cannot quantize the row ("falling back to F16").
        GgmlType::F16
    } else {
        ty
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forced_types_like_llama_cpp() {
        let t = |hf, g, n, row, out| tensor_type(hf, g, n, row, out);
        let conv = "model.audio_tower.subsample_conv_projection.input_proj_linear.weight";
        assert_eq!(
            t(conv, "a.input_projection.weight", 2, 32, OutType::Q8_0),
            GgmlType::F32
        );
        let pw = "model.audio_tower.layers.0.lconv1d.linear_start.linear.weight";
        assert_eq!(
            t(pw, "a.blk.0.conv_pw1.weight", 2, 32, OutType::Q8_0),
            GgmlType::Q8_0
        );
        let mm = "model.embed_audio.embedding_projection.weight";
        assert_eq!(
            t(mm, "mm.a.input_projection.weight", 2, 48, OutType::Q8_0),
            GgmlType::F16
        );
        assert_eq!(
            t(mm, "mm.a.input_projection.weight", 2, 48, OutType::BF16),
            GgmlType::BF16
        );
        let patch = "model.vision_tower.patch_embedder.input_proj.weight";
        assert_eq!(
            t(patch, "v.patch_embd.weight", 4, 16, OutType::F16),
            GgmlType::F16
        );
        assert_eq!(
            t(patch, "v.patch_embd.weight", 4, 16, OutType::BF16),
            GgmlType::F32
        );
        let pos = "model.vision_tower.patch_embedder.position_embedding_table";
        assert_eq!(
            t(pos, "v.position_embd.weight", 3, 32, OutType::F16),
            GgmlType::F32
        );
        let bias = "model.audio_tower.output_proj.bias";
        assert_eq!(
            t(bias, "a.pre_encode.out.bias", 1, 48, OutType::F16),
            GgmlType::F32
        );
    }
}
