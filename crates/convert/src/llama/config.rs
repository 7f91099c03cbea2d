//! The inverse of [`super::gemma4_metadata`]: a [`Gemma4Config`] rebuilt from a GGUF file's
//! `gemma4.*` keys and tensor list, so a GGUF release can run through the same forward pass as
//! the checkpoint it came from.

use crate::config::{Gemma4Config, LayerType, RopeParams};
use crate::error::{ConvertError, Result};
use crate::gguf::{Array, GgufFile, Value};

/// Reads the text config of a `gemma4` GGUF file.
pub fn config_from_gguf(f: &GgufFile) -> Result<Gemma4Config> {
    let md = f.metadata();
    let path = f.path();
    let bad = |m: String| ConvertError::format(path, m);
    let arch = md
        .get("general.architecture")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if arch != "gemma4" {
        return Err(bad(format!("architecture '{arch}' is not gemma4")));
    }
    let get = |k: &str| md.get(&format!("gemma4.{k}"));
    let uint = |k: &str| -> Result<usize> {
        get(k)
            .and_then(Value::as_u64)
            .map(|v| v as usize)
            .ok_or_else(|| bad(format!("gemma4.{k} is missing")))
    };
    let uint_or = |k: &str, d: usize| get(k).and_then(Value::as_u64).map_or(d, |v| v as usize);
    let float = |k: &str| get(k).and_then(Value::as_f64);
    let n_layer = uint("block_count")?;
    let per_layer = |k: &str| -> Result<Option<Vec<usize>>> {
        match get(k) {
            Some(Value::Array(Array::I32(v))) if v.len() == n_layer => {
                Ok(Some(v.iter().map(|&x| x.max(0) as usize).collect()))
            }
            Some(Value::Array(Array::U32(v))) if v.len() == n_layer => {
                Ok(Some(v.iter().map(|&x| x as usize).collect()))
            }
            Some(Value::Array(_)) => {
                Err(bad(format!("gemma4.{k} does not have {n_layer} entries")))
            }
            _ => Ok(None),
        }
    };
    let layer_types: Vec<LayerType> = match get("attention.sliding_window_pattern") {
        Some(Value::Array(Array::Bool(v))) if v.len() == n_layer => v
            .iter()
            .map(|&s| {
                if s {
                    LayerType::Sliding
                } else {
                    LayerType::Full
                }
            })
            .collect(),
        _ => {
            return Err(bad(
                "gemma4.attention.sliding_window_pattern is missing or has the wrong length".into(),
            ))
        }
    };
    let first_of = |kind: LayerType| layer_types.iter().position(|&t| t == kind);
    let (num_key_value_heads, num_global_key_value_heads) =
        match per_layer("attention.head_count_kv")? {
            Some(v) => {
                let sliding = first_of(LayerType::Sliding).map_or(v[0], |l| v[l]);
                (sliding, first_of(LayerType::Full).map(|l| v[l]))
            }
            None => (uint("attention.head_count_kv")?, None),
        };
    let (intermediate_size, use_double_wide_mlp) = match per_layer("feed_forward_length")? {
        Some(v) => (v[0], v.iter().any(|&x| x != v[0])),
        None => (uint("feed_forward_length")?, false),
    };
    let global_head_dim = uint("attention.key_length")?;
    let has = |name: &str| f.header().tensor(name).is_some();
    // K = V on full layers shows as full layers without attn_v (KV-shared layers may lack their
    // K/V tensors for another reason, so only layers that compute K/V count).
    let n_kv_layers = n_layer.saturating_sub(uint_or("attention.shared_kv_layers", 0));
    let attention_k_eq_v = layer_types[..n_kv_layers]
        .iter()
        .enumerate()
        .any(|(l, &t)| {
            t == LayerType::Full
                && has(&format!("blk.{l}.attn_q.weight"))
                && !has(&format!("blk.{l}.attn_v.weight"))
        });
    // The rotated share of the full-attention head: rope_freqs holds 1 for rotated pairs.
    let partial_rotary_factor = match f.tensor_data("rope_freqs.weight") {
        Ok(bytes) => {
            let rotated = bytes
                .chunks_exact(4)
                .filter(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) == 1.0)
                .count();
            (2 * rotated) as f64 / global_head_dim as f64
        }
        Err(_) => 1.0,
    };
    let vocab_size = match md.get("tokenizer.ggml.tokens") {
        Some(Value::Array(a)) => a.len(),
        _ => f
            .header()
            .tensor("token_embd.weight")
            .and_then(|t| t.dims.get(1).copied())
            .ok_or_else(|| bad("no tokenizer.ggml.tokens and no token_embd.weight".into()))?
            as usize,
    };
    let ple = uint_or("embedding_length_per_layer_input", 0);
    let n_expert = uint_or("expert_count", 0);
    let token = |k: &str, d: u32| {
        md.get(&format!("tokenizer.ggml.{k}"))
            .and_then(Value::as_u64)
            .map_or(d, |v| v as u32)
    };
    let cfg = Gemma4Config {
        architecture: "Gemma4ForCausalLM".into(),
        vocab_size,
        hidden_size: uint("embedding_length")?,
        num_hidden_layers: n_layer,
        intermediate_size,
        num_attention_heads: uint("attention.head_count")?,
        num_key_value_heads,
        num_global_key_value_heads,
        head_dim: uint("attention.key_length_swa")?,
        global_head_dim,
        attention_k_eq_v,
        sliding_window: uint("attention.sliding_window")?,
        layer_types,
        max_position_embeddings: uint_or("context_length", 131_072),
        rope_sliding: RopeParams {
            theta: float("rope.freq_base_swa").unwrap_or(10_000.0),
            partial_rotary_factor: 1.0,
            rope_type: "default".into(),
        },
        rope_full: RopeParams {
            theta: float("rope.freq_base").unwrap_or(1_000_000.0),
            partial_rotary_factor,
            rope_type: if partial_rotary_factor < 1.0 {
                "proportional"
            } else {
                "default"
            }
            .into(),
        },
        rms_norm_eps: float("attention.layer_norm_rms_epsilon").unwrap_or(1e-6),
        final_logit_softcapping: float("final_logit_softcapping"),
        hidden_activation: "gelu_pytorch_tanh".into(),
        tie_word_embeddings: !has("output.weight"),
        hidden_size_per_layer_input: ple,
        vocab_size_per_layer_input: if ple > 0 { vocab_size } else { 0 },
        num_kv_shared_layers: uint_or("attention.shared_kv_layers", 0),
        use_double_wide_mlp,
        enable_moe_block: n_expert > 0,
        num_experts: n_expert,
        top_k_experts: uint_or("expert_used_count", 0),
        moe_intermediate_size: uint_or("expert_feed_forward_length", 0),
        pad_token_id: token("padding_token_id", 0),
        bos_token_id: token("bos_token_id", 2),
        eos_token_ids: vec![token("eos_token_id", 1)],
        unknown_keys: Vec::new(),
    };
    cfg.validate(&path.display().to_string())?;
    Ok(cfg)
}
