//! The inverse of [`super::gemma4_metadata`]: a [`Gemma4Config`] rebuilt from a GGUF file's
//! `gemma4.*` keys and tensor list, so a GGUF release can run through the same forward pass as
//! the checkpoint it came from.
//!
//! The file is untrusted: a key of the wrong type is an error naming it, every size goes through
//! [`Gemma4Config::validate`]'s ranges, and every size is checked against the shapes of the
//! tensors it describes before anything sized by it (a RoPE table, a KV cache) is allocated.

use crate::config::keys::TypedKeys;
use crate::config::{defaults, Gemma4Config, LayerType, RopeParams, RopeType};
use crate::error::{cut, ConvertError, Result};
use crate::gguf::{Array, GgufFile, Value};

/// Reads the text config of a `gemma4` GGUF file.
pub fn config_from_gguf(f: &GgufFile) -> Result<Gemma4Config> {
    let k = Keys { f };
    let arch = k.str_opt("general.architecture")?.unwrap_or_default();
    if arch != "gemma4" {
        return Err(k.err(format!("architecture '{}' is not gemma4", cut(arch))));
    }
    let n_layer = k.size("gemma4.block_count")?;
    if n_layer == 0 || n_layer > defaults::MAX_LAYERS {
        return Err(k.err(format!(
            "gemma4.block_count {n_layer} is out of range (1 to {})",
            defaults::MAX_LAYERS
        )));
    }
    let layer_types = layer_types(&k, n_layer)?;
    let first_of = |kind: LayerType| layer_types.iter().position(|&t| t == kind);
    let kv_per_layer = k.per_layer("gemma4.attention.head_count_kv", n_layer)?;
    let (num_key_value_heads, num_global_key_value_heads) = match &kv_per_layer {
        // `n_layer >= 1`, so the list has a first entry.
        Some(v) => (
            first_of(LayerType::Sliding).map_or(v[0], |l| v[l]),
            first_of(LayerType::Full).map(|l| v[l]),
        ),
        None => (k.size("gemma4.attention.head_count_kv")?, None),
    };
    let ff_per_layer = k.per_layer("gemma4.feed_forward_length", n_layer)?;
    let (intermediate_size, use_double_wide_mlp) = match &ff_per_layer {
        Some(v) => (v[0], v.iter().any(|&x| x != v[0])),
        None => (k.size("gemma4.feed_forward_length")?, false),
    };
    let global_head_dim = k.size("gemma4.attention.key_length")?;
    let num_kv_shared_layers = k.size_or("gemma4.attention.shared_kv_layers", 0)?;
    let has = |name: &str| f.header().tensor(name).is_some();
    // K = V on full layers shows as full layers without attn_v (KV-shared layers may lack their
    // K/V tensors for another reason, so only layers that compute K/V count).
    let n_kv_layers = n_layer.saturating_sub(num_kv_shared_layers);
    let attention_k_eq_v = layer_types[..n_kv_layers]
        .iter()
        .enumerate()
        .any(|(l, &t)| {
            t == LayerType::Full
                && has(&format!("blk.{l}.attn_q.weight"))
                && !has(&format!("blk.{l}.attn_v.weight"))
        });
    let partial_rotary_factor = partial_rotary_factor(f, global_head_dim)?;
    let vocab_size = match f.metadata().get("tokenizer.ggml.tokens") {
        Some(Value::Array(a)) => a.len(),
        _ => f
            .header()
            .tensor("token_embd.weight")
            .and_then(|t| t.dims.get(1).copied())
            .and_then(|d| usize::try_from(d).ok())
            .ok_or_else(|| k.err("no tokenizer.ggml.tokens and no token_embd.weight"))?,
    };
    let ple = k.size_or("gemma4.embedding_length_per_layer_input", 0)?;
    let n_expert = k.size_or("gemma4.expert_count", 0)?;
    let cfg = Gemma4Config {
        architecture: defaults::ARCHITECTURE.into(),
        vocab_size,
        hidden_size: k.size("gemma4.embedding_length")?,
        num_hidden_layers: n_layer,
        intermediate_size,
        num_attention_heads: k.size("gemma4.attention.head_count")?,
        num_key_value_heads,
        num_global_key_value_heads,
        head_dim: k.size("gemma4.attention.key_length_swa")?,
        global_head_dim,
        attention_k_eq_v,
        sliding_window: k.size("gemma4.attention.sliding_window")?,
        layer_types,
        max_position_embeddings: k
            .size_or("gemma4.context_length", defaults::MAX_POSITION_EMBEDDINGS)?,
        rope_sliding: RopeParams {
            theta: k.float_or("gemma4.rope.freq_base_swa", defaults::ROPE_THETA_SLIDING)?,
            partial_rotary_factor: defaults::PARTIAL_ROTARY_FACTOR,
            rope_type: RopeType::Default,
        },
        rope_full: RopeParams {
            theta: k.float_or("gemma4.rope.freq_base", defaults::ROPE_THETA_FULL)?,
            partial_rotary_factor,
            rope_type: if partial_rotary_factor < 1.0 {
                RopeType::Proportional
            } else {
                RopeType::Default
            },
        },
        rms_norm_eps: k.float_or(
            "gemma4.attention.layer_norm_rms_epsilon",
            defaults::RMS_NORM_EPS,
        )?,
        final_logit_softcapping: k.float_opt("gemma4.final_logit_softcapping")?,
        tie_word_embeddings: !has("output.weight"),
        hidden_size_per_layer_input: ple,
        vocab_size_per_layer_input: if ple > 0 { vocab_size } else { 0 },
        num_kv_shared_layers,
        use_double_wide_mlp,
        enable_moe_block: n_expert > 0,
        num_experts: n_expert,
        top_k_experts: k.size_or("gemma4.expert_used_count", 0)?,
        moe_intermediate_size: k.size_or("gemma4.expert_feed_forward_length", 0)?,
        pad_token_id: k.token("padding_token_id", defaults::PAD_TOKEN_ID)?,
        bos_token_id: k.token("bos_token_id", defaults::BOS_TOKEN_ID)?,
        eos_token_ids: vec![k.token("eos_token_id", defaults::EOS_TOKEN_ID)?],
        unknown_keys: Vec::new(),
    };
    cfg.validate(&f.path().display().to_string())?;
    // Per-layer lists the config cannot represent (a KV-head count or width that differs
    // between layers of one kind) would be silently replaced by their first entry.
    let agrees = |key: &str, list: &Option<Vec<usize>>, of_layer: &dyn Fn(usize) -> usize| {
        let Some(v) = list else { return Ok(()) };
        match (0..n_layer).find(|&l| v[l] != of_layer(l)) {
            None => Ok(()),
            Some(l) => Err(k.err(format!(
                "{key}[{l}] is {}, but layers of its kind have {}",
                v[l],
                of_layer(l)
            ))),
        }
    };
    agrees("gemma4.attention.head_count_kv", &kv_per_layer, &|l| {
        cfg.num_kv_heads(l)
    })?;
    agrees("gemma4.feed_forward_length", &ff_per_layer, &|l| {
        cfg.intermediate_size_of(l)
    })?;
    check_shapes(f, &cfg)?;
    Ok(cfg)
}

/// `gemma4.attention.sliding_window_pattern`: one bool per layer, true for sliding attention.
fn layer_types(k: &Keys<'_>, n_layer: usize) -> Result<Vec<LayerType>> {
    const KEY: &str = "gemma4.attention.sliding_window_pattern";
    match k.get(KEY) {
        Some(Value::Array(Array::Bool(v))) if v.len() == n_layer => Ok(v
            .iter()
            .map(|&s| {
                if s {
                    LayerType::Sliding
                } else {
                    LayerType::Full
                }
            })
            .collect()),
        Some(Value::Array(Array::Bool(v))) => Err(k.err(format!(
            "{KEY} has {} entries, but gemma4.block_count is {n_layer}",
            v.len()
        ))),
        Some(v) => Err(k.wrong_type(KEY, "ARRAY[BOOL]", v)),
        None => Err(k.err(format!("{KEY} is missing"))),
    }
}

/// The rotated share of the full-attention head: `rope_freqs` holds 1 for rotated pairs (and
/// 1e30, no rotation, for the rest); 1 when the file has no `rope_freqs`.
fn partial_rotary_factor(f: &GgufFile, global_head_dim: usize) -> Result<f64> {
    const NAME: &str = "rope_freqs.weight";
    let Some(info) = f.header().tensor(NAME) else {
        return Ok(defaults::PARTIAL_ROTARY_FACTOR);
    };
    let half = (global_head_dim / 2) as u64;
    if info.ty != kernels::GgmlType::F32 || info.dims != [half] {
        return Err(ConvertError::tensor(
            f.path(),
            NAME,
            format!(
                "is {} {}, but gemma4.attention.key_length {global_head_dim} needs F32 [{half}]",
                info.ty,
                dims_text(&info.dims)
            ),
        ));
    }
    let rotated = f
        .tensor_data(NAME)?
        .chunks_exact(4)
        .filter(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) == 1.0)
        .count();
    Ok((2 * rotated) as f64 / global_head_dim as f64)
}

/// Every tensor whose shape the config sizes must have that shape, so nothing later allocates
/// by a size the weights do not back (a `key_length` of 2^31 in a 1 MB file is an error here,
/// not a 16 GB RoPE table). Shapes are in ggml order: `[in, out]` for a weight.
fn check_shapes(f: &GgufFile, cfg: &Gemma4Config) -> Result<()> {
    let b = cfg.hidden_size as u64;
    let expect = |name: &str, dims: &[u64], required: bool| -> Result<()> {
        match f.header().tensor(name) {
            Some(t) if t.dims == dims => Ok(()),
            Some(t) => Err(ConvertError::tensor(
                f.path(),
                name,
                format!(
                    "shape {} disagrees with the metadata, which gives {}",
                    dims_text(&t.dims),
                    dims_text(dims)
                ),
            )),
            None if required => Err(ConvertError::tensor(f.path(), name, "is missing")),
            None => Ok(()),
        }
    };
    expect("token_embd.weight", &[b, cfg.vocab_size as u64], true)?;
    if cfg.has_per_layer_inputs() {
        let lp = (cfg.num_hidden_layers * cfg.hidden_size_per_layer_input) as u64;
        expect(
            "per_layer_token_embd.weight",
            &[lp, cfg.vocab_size_per_layer_input as u64],
            false,
        )?;
    }
    for l in 0..cfg.num_hidden_layers {
        let blk = |t: &str| format!("blk.{l}.{t}.weight");
        let hd = cfg.head_dim_of(l) as u64;
        let q = cfg.num_attention_heads as u64 * hd;
        let kv = cfg.num_kv_heads(l) as u64 * hd;
        let ff = cfg.intermediate_size_of(l) as u64;
        expect(&blk("attn_q"), &[b, q], true)?;
        expect(&blk("attn_k"), &[b, kv], false)?;
        expect(&blk("attn_v"), &[b, kv], false)?;
        expect(&blk("attn_output"), &[q, b], false)?;
        expect(&blk("attn_q_norm"), &[hd], false)?;
        expect(&blk("attn_k_norm"), &[hd], false)?;
        expect(&blk("ffn_gate"), &[b, ff], false)?;
        expect(&blk("ffn_up"), &[b, ff], false)?;
        expect(&blk("ffn_down"), &[ff, b], false)?;
        if cfg.enable_moe_block {
            let (e, mff) = (cfg.num_experts as u64, cfg.moe_intermediate_size as u64);
            expect(&blk("ffn_gate_inp"), &[b, e], false)?;
            expect(&blk("ffn_gate_up_exps"), &[b, 2 * mff, e], false)?;
            expect(&blk("ffn_down_exps"), &[mff, b, e], false)?;
        }
    }
    Ok(())
}

/// A shape for a message, cut if a hostile file made it long.
fn dims_text(dims: &[u64]) -> String {
    cut(&format!("{dims:?}")).into_owned()
}

/// Typed access to the metadata of `f`; errors name the file and the key.
struct Keys<'a> {
    f: &'a GgufFile,
}

impl<'a> TypedKeys<'a> for Keys<'a> {
    type Value = Value;

    fn get(&self, key: &str) -> Option<&'a Value> {
        self.f.metadata().get(key)
    }

    fn wrong_type(&self, key: &str, expected: &str, got: &Value) -> ConvertError {
        self.err(format!(
            "{key} must be {expected}, got {} {}",
            got.type_name(),
            cut(&got.to_string())
        ))
    }
}

impl<'a> Keys<'a> {
    fn err(&self, message: impl Into<String>) -> ConvertError {
        ConvertError::format(self.f.path(), message)
    }

    fn size(&self, key: &str) -> Result<usize> {
        self.usize_opt(key)?
            .ok_or_else(|| self.err(format!("{key} is missing")))
    }

    fn size_or(&self, key: &str, default: usize) -> Result<usize> {
        Ok(self.usize_opt(key)?.unwrap_or(default))
    }

    fn float_opt(&self, key: &str) -> Result<Option<f64>> {
        self.get(key)
            .map(|v| v.as_f64().ok_or_else(|| self.wrong_type(key, "a float", v)))
            .transpose()
    }

    fn float_or(&self, key: &str, default: f64) -> Result<f64> {
        Ok(self.float_opt(key)?.unwrap_or(default))
    }

    /// `tokenizer.ggml.<name>`, a token id.
    fn token(&self, name: &str, default: u32) -> Result<u32> {
        let key = format!("tokenizer.ggml.{name}");
        match self.get(&key) {
            None => Ok(default),
            Some(v) => v
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| self.wrong_type(&key, "a token id", v)),
        }
    }

    /// A key llama.cpp writes either as one integer or as one integer per layer: the list
    /// when it is one (`n_layer` non-negative entries), `None` when it is a single value.
    fn per_layer(&self, key: &str, n_layer: usize) -> Result<Option<Vec<usize>>> {
        let Some(Value::Array(a)) = self.get(key) else {
            return Ok(None);
        };
        let values: Option<Vec<u64>> = match a {
            Array::U8(v) => Some(v.iter().map(|&x| x.into()).collect()),
            Array::U16(v) => Some(v.iter().map(|&x| x.into()).collect()),
            Array::U32(v) => Some(v.iter().map(|&x| x.into()).collect()),
            Array::U64(v) => Some(v.clone()),
            Array::I8(v) => v.iter().map(|&x| u64::try_from(x).ok()).collect(),
            Array::I16(v) => v.iter().map(|&x| u64::try_from(x).ok()).collect(),
            Array::I32(v) => v.iter().map(|&x| u64::try_from(x).ok()).collect(),
            Array::I64(v) => v.iter().map(|&x| u64::try_from(x).ok()).collect(),
            _ => {
                return Err(self.err(format!(
                    "{key} must be an integer or a list of integers, got ARRAY[{}]",
                    a.elem_type().name()
                )))
            }
        };
        let values = values.ok_or_else(|| self.err(format!("{key} holds a negative entry")))?;
        if values.len() != n_layer {
            return Err(self.err(format!(
                "{key} has {} entries, but gemma4.block_count is {n_layer}",
                values.len()
            )));
        }
        values
            .into_iter()
            .map(|x| {
                usize::try_from(x)
                    .ok()
                    .filter(|&x| x <= defaults::MAX_SIZE)
                    .ok_or_else(|| {
                        self.err(format!(
                            "{key} entry {x} is out of range (0 to {})",
                            defaults::MAX_SIZE
                        ))
                    })
            })
            .collect::<Result<_>>()
            .map(Some)
    }
}
