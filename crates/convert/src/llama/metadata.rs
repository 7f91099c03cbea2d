//! The metadata llama.cpp's converter writes for `gemma4`, in its key order:
//! `general.*` first (sampling defaults from `generation_config.json`, the name from the folder,
//! the size label from the parameter count), then the `gemma4.*` hyperparameters interleaved as
//! `Gemma4Model.set_gguf_parameters` sets them.

use std::path::Path;

use serde_json::Value as Json;

use super::super::gguf::{Array, Metadata, TensorInfo, Value};
use crate::config::{Gemma4Config, LayerType};
use crate::error::{cut, ConvertError, Result};

/// `GGML_QNT_VERSION`.
pub const QUANTIZATION_VERSION: u32 = 2;

/// Everything the metadata needs besides the config.
pub struct MetadataInputs<'a> {
    pub config: &'a Gemma4Config,
    /// The checkpoint folder: its name gives `general.name`, and it holds
    /// `generation_config.json` and the tokenizer.
    pub dir: &'a Path,
    /// The tensors that will be written (for `general.size_label`).
    pub tensors: &'a [TensorInfo],
    /// `general.file_type` (llama_ftype).
    pub file_type: u32,
}

/// Builds the full metadata, tokenizer included.
pub fn gemma4_metadata(inp: &MetadataInputs<'_>) -> Result<Metadata> {
    let c = inp.config;
    let mut md = Metadata::new();
    add_general(&mut md, "gemma4", "model", inp.dir, inp.tensors)?;

    // Validated configs keep every size far below 2^32; a value that does not fit is still an
    // error here, never a truncated key.
    let u32v = |v: usize| {
        u32::try_from(v).map(Value::U32).map_err(|_| {
            ConvertError::format(inp.dir, format!("{v} does not fit a UINT32 GGUF key"))
        })
    };
    let n = c.num_hidden_layers;
    md.set("gemma4.block_count", u32v(n)?);
    md.set("gemma4.context_length", u32v(c.max_position_embeddings)?);
    md.set("gemma4.embedding_length", u32v(c.hidden_size)?);
    if c.use_double_wide_mlp {
        let ff = (0..n).map(|l| c.intermediate_size_of(l) as i32).collect();
        md.set("gemma4.feed_forward_length", Value::Array(Array::I32(ff)));
    } else {
        md.set("gemma4.feed_forward_length", u32v(c.intermediate_size)?);
    }
    md.set("gemma4.attention.head_count", u32v(c.num_attention_heads)?);
    if c.num_global_key_value_heads.is_some() {
        let kv = (0..n).map(|l| c.num_kv_heads(l) as i32).collect();
        md.set(
            "gemma4.attention.head_count_kv",
            Value::Array(Array::I32(kv)),
        );
    } else {
        md.set(
            "gemma4.attention.head_count_kv",
            u32v(c.num_key_value_heads)?,
        );
    }
    md.set(
        "gemma4.rope.freq_base",
        Value::F32(c.rope_full.theta as f32),
    );
    md.set(
        "gemma4.rope.freq_base_swa",
        Value::F32(c.rope_sliding.theta as f32),
    );
    md.set(
        "gemma4.attention.layer_norm_rms_epsilon",
        Value::F32(c.rms_norm_eps as f32),
    );
    if c.enable_moe_block {
        md.set("gemma4.expert_count", u32v(c.num_experts)?);
        md.set("gemma4.expert_used_count", u32v(c.top_k_experts)?);
    }
    md.set("gemma4.attention.key_length", u32v(c.global_head_dim)?);
    md.set("gemma4.attention.value_length", u32v(c.global_head_dim)?);
    md.set("general.file_type", Value::U32(inp.file_type));
    if let Some(cap) = c.final_logit_softcapping {
        md.set("gemma4.final_logit_softcapping", Value::F32(cap as f32));
    }
    md.set("gemma4.attention.sliding_window", u32v(c.sliding_window)?);
    md.set(
        "gemma4.attention.shared_kv_layers",
        u32v(c.num_kv_shared_layers)?,
    );
    md.set(
        "gemma4.embedding_length_per_layer_input",
        u32v(c.hidden_size_per_layer_input)?,
    );
    let pattern = c
        .layer_types
        .iter()
        .map(|t| *t == LayerType::Sliding)
        .collect();
    md.set(
        "gemma4.attention.sliding_window_pattern",
        Value::Array(Array::Bool(pattern)),
    );
    md.set("gemma4.attention.key_length_swa", u32v(c.head_dim)?);
    md.set("gemma4.attention.value_length_swa", u32v(c.head_dim)?);
    if c.enable_moe_block {
        md.set(
            "gemma4.expert_feed_forward_length",
            u32v(c.moe_intermediate_size)?,
        );
    }
    md.set("gemma4.rope.dimension_count", u32v(c.global_head_dim)?);
    let swa_rot = (c.head_dim as f64 * c.rope_sliding.partial_rotary_factor) as usize;
    md.set("gemma4.rope.dimension_count_swa", u32v(swa_rot)?);
    md.set(
        "general.quantization_version",
        Value::U32(QUANTIZATION_VERSION),
    );
    super::vocab::add_tokenizer(&mut md, inp.dir, c.vocab_size)?;
    Ok(md)
}

/// The `general.*` keys gguf-py writes first for any file: architecture, type (`model`,
/// `mmproj`), the sampling defaults, then the authorship keys (name, basename, license, tags...)
/// from the model card, `config.json` and the folder name, and the size label.
pub(crate) fn add_general(
    md: &mut Metadata,
    architecture: &str,
    kind: &str,
    dir: &Path,
    tensors: &[TensorInfo],
) -> Result<()> {
    md.set("general.architecture", Value::String(architecture.into()));
    md.set("general.type", Value::String(kind.into()));
    add_sampling(md, dir)?;
    let folder = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let folder_name = folder.file_name().and_then(|n| n.to_str());
    let total_params = tensors
        .iter()
        .map(|t| t.checked_numel().unwrap_or(0))
        .fold(0u64, u64::saturating_add);
    super::authorship::add_authorship(md, dir, folder_name, total_params, size_label(tensors))
}

/// `general.sampling.*` from `generation_config.json`, when present.
fn add_sampling(md: &mut Metadata, dir: &Path) -> Result<()> {
    let path = dir.join("generation_config.json");
    if !path.exists() {
        return Ok(());
    }
    let text = std::fs::read_to_string(&path).map_err(|e| ConvertError::io(&path, e))?;
    let gen: Json = serde_json::from_str(&text)
        .map_err(|e| ConvertError::format(&path, format!("not valid JSON: {e}")))?;
    let bad = |key: &str, v: &Json, expected: &str| {
        ConvertError::format(
            &path,
            format!("{key} must be {expected}, got {}", cut(&v.to_string())),
        )
    };
    let present = |key: &str| Some(&gen[key]).filter(|v| !v.is_null());
    if let Some(v) = present("top_k") {
        let k = v
            .as_i64()
            .and_then(|k| i32::try_from(k).ok())
            .ok_or_else(|| bad("top_k", v, "an integer that fits INT32"))?;
        md.set("general.sampling.top_k", Value::I32(k));
    }
    for (key, gguf_key) in [
        ("top_p", "general.sampling.top_p"),
        ("temperature", "general.sampling.temp"),
    ] {
        if let Some(v) = present(key) {
            let x = v
                .as_f64()
                .filter(|x| (*x as f32).is_finite())
                .ok_or_else(|| bad(key, v, "a finite number"))?;
            md.set(gguf_key, Value::F32(x as f32));
        }
    }
    Ok(())
}

/// gguf-py's size label: `8x619K` for expert models (shared + one expert's parameters),
/// `1.1M` otherwise, counted over the tensors written.
pub fn size_label(tensors: &[TensorInfo]) -> String {
    let (mut total, mut shared, mut expert, mut expert_sum, mut n_expert_tensors) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    for t in tensors {
        let size = t.checked_numel().unwrap_or(0);
        if t.name.contains("_exps.") && t.dims.len() >= 3 {
            // ggml order: the expert count is the outermost of the 3 dims.
            let n_expert = t.dims[2].max(1);
            expert += size / n_expert;
            expert_sum += n_expert;
            n_expert_tensors += 1;
        } else {
            shared += size;
        }
        total += size;
    }
    match expert_sum.checked_div(n_expert_tensors) {
        Some(count) => format!("{count}x{}", rounded_notation(shared + expert)),
        None => rounded_notation(total),
    }
}

/// gguf-py's `model_weight_count_rounded_notation(n, min_digits=2)`.
fn rounded_notation(n: u64) -> String {
    let x = n as f64;
    let (scaled, suffix) = if x > 1e12 {
        (x * 1e-12, "T")
    } else if x > 1e9 {
        (x * 1e-9, "B")
    } else if x > 1e6 {
        (x * 1e-6, "M")
    } else {
        (x * 1e-3, "K")
    };
    let rounded = format!("{}", scaled.round_ties_even() as i64);
    let digits = rounded.trim_start_matches('0').len();
    let fix = 2usize.saturating_sub(digits);
    format!("{scaled:.fix$}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounded_like_gguf_py() {
        assert_eq!(rounded_notation(1_130_000), "1.1M");
        assert_eq!(rounded_notation(619_000), "619K");
        assert_eq!(rounded_notation(9_100_000), "9.1M");
        assert_eq!(rounded_notation(4_650_000_000), "4.7B");
    }
}
