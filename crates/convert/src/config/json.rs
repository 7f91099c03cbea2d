//! Reading a [`Gemma4Config`] from the text of a `config.json`, in either form the hub and
//! transformers write:
//! - released: `Gemma4ForConditionalGeneration` with a nested `text_config` (flat
//!   `global_head_dim` / `num_global_key_value_heads`);
//! - transformers `save_pretrained` of `Gemma4ForCausalLM`: flat, with `per_layer_config`
//!   overriding `head_dim` / `num_key_value_heads` on full-attention layers.
//!
//! One function per part of the file: where the text config sits, the layer plan, the
//! attention shapes, RoPE, MoE, tokens and the features g4q refuses. A known key of the wrong
//! type is an error naming the key. A JSON `null` means "absent" everywhere (the released
//! 26B-A4B config carries `"expert_intermediate_size": null` beside `moe_intermediate_size`).

use serde_json::{Map, Value};

use super::defaults;
use super::keys::TypedKeys;
use super::{Gemma4Config, LayerType, RopeParams, RopeType};
use crate::error::{cut, ConvertError, Result};

/// Every text-config key g4q understands or knowingly ignores.
const KNOWN_KEYS: &[&str] = &[
    "architectures",
    "attention_bias",
    "attention_dropout",
    "attention_k_eq_v",
    "bos_token_id",
    "dtype",
    "torch_dtype",
    "enable_moe_block",
    "eos_token_id",
    "expert_intermediate_size",
    "final_logit_softcapping",
    "global_head_dim",
    "head_dim",
    "hidden_activation",
    "hidden_size",
    "hidden_size_per_layer_input",
    "initializer_range",
    "intermediate_size",
    "layer_types",
    "max_position_embeddings",
    "model_type",
    "moe_intermediate_size",
    "num_attention_heads",
    "num_experts",
    "num_global_key_value_heads",
    "num_hidden_layers",
    "num_key_value_heads",
    "num_kv_shared_layers",
    "pad_token_id",
    "per_layer_config",
    "rms_norm_eps",
    "rope_parameters",
    "sliding_window",
    "tie_word_embeddings",
    "top_k_experts",
    "transformers_version",
    "use_bidirectional_attention",
    "use_cache",
    "use_double_wide_mlp",
    "vocab_size",
    "vocab_size_per_layer_input",
    "attn_logit_softcapping",
    "output_attentions",
    "output_hidden_states",
    "return_dict",
    "_name_or_path",
];

/// Parses `text`; `origin` names the file in errors.
pub(super) fn parse(text: &str, origin: &str) -> Result<Gemma4Config> {
    let root: Value = serde_json::from_str(text)
        .map_err(|e| ConvertError::config(origin, format!("not valid JSON: {e}")))?;
    let root = root
        .as_object()
        .ok_or_else(|| ConvertError::config(origin, "the file is not a JSON object"))?;
    let top = Reader::new(root, origin, "");
    let architecture = architecture(&top)?;
    let text = text_section(&top)?;
    let r = Reader::new(text, origin, "");
    check_unsupported(&r)?;

    let layer_types = layer_types(&r)?;
    let attn = attention_dims(&r, &layer_types)?;
    let (rope_sliding, rope_full) = rope(&r)?;
    let moe = moe(&r)?;
    let tokens = tokens(&r)?;
    // The released form keeps `tie_word_embeddings` at the top level, beside `text_config`.
    let tie_word_embeddings = match top.bool_opt("tie_word_embeddings")? {
        Some(b) => b,
        None => r
            .bool_opt("tie_word_embeddings")?
            .unwrap_or(defaults::TIE_WORD_EMBEDDINGS),
    };

    let cfg = Gemma4Config {
        architecture,
        vocab_size: r.usize_req("vocab_size")?,
        hidden_size: r.usize_req("hidden_size")?,
        num_hidden_layers: layer_types.len(),
        intermediate_size: r.usize_req("intermediate_size")?,
        num_attention_heads: r.usize_req("num_attention_heads")?,
        num_key_value_heads: attn.num_key_value_heads,
        num_global_key_value_heads: attn.num_global_key_value_heads,
        head_dim: attn.head_dim,
        global_head_dim: attn.global_head_dim,
        attention_k_eq_v: r.bool_opt("attention_k_eq_v")?.unwrap_or(false),
        sliding_window: r.usize_req("sliding_window")?,
        layer_types,
        max_position_embeddings: r
            .usize_opt("max_position_embeddings")?
            .unwrap_or(defaults::MAX_POSITION_EMBEDDINGS),
        rope_sliding,
        rope_full,
        rms_norm_eps: r.f64_opt("rms_norm_eps")?.unwrap_or(defaults::RMS_NORM_EPS),
        final_logit_softcapping: r.f64_opt("final_logit_softcapping")?,
        tie_word_embeddings,
        hidden_size_per_layer_input: r.usize_opt("hidden_size_per_layer_input")?.unwrap_or(0),
        vocab_size_per_layer_input: r.usize_opt("vocab_size_per_layer_input")?.unwrap_or(0),
        num_kv_shared_layers: r.usize_opt("num_kv_shared_layers")?.unwrap_or(0),
        use_double_wide_mlp: r.bool_opt("use_double_wide_mlp")?.unwrap_or(false),
        enable_moe_block: moe.enabled,
        num_experts: moe.num_experts,
        top_k_experts: moe.top_k_experts,
        moe_intermediate_size: moe.intermediate_size,
        pad_token_id: tokens.pad,
        bos_token_id: tokens.bos,
        eos_token_ids: tokens.eos,
        unknown_keys: unknown_keys(text),
    };
    cfg.validate(origin)?;
    Ok(cfg)
}

/// `architectures[0]`, or the default for a bare text config.
fn architecture(top: &Reader<'_>) -> Result<String> {
    match top.get("architectures") {
        None => Ok(defaults::ARCHITECTURE.to_string()),
        Some(Value::Array(items)) => match items.first() {
            None => Ok(defaults::ARCHITECTURE.to_string()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(v) => Err(top.wrong_type("architectures", "a list of strings", v)),
        },
        Some(v) => Err(top.wrong_type("architectures", "a list of strings", v)),
    }
}

/// The object holding the text model's keys: `text_config` in the released (multimodal) form,
/// the file itself in transformers' causal-LM form. It must describe Gemma 4.
fn text_section<'a>(top: &Reader<'a>) -> Result<&'a Map<String, Value>> {
    let text = match top.get("text_config") {
        None => top.obj,
        Some(Value::Object(t)) => t,
        Some(v) => return Err(top.wrong_type("text_config", "an object", v)),
    };
    let model_type = top.str_opt("model_type")?.unwrap_or("");
    let text_type = Reader::new(text, top.origin, "text_config.")
        .str_opt("model_type")?
        .unwrap_or(model_type);
    if !matches!(text_type, "gemma4_text" | "gemma4") {
        return Err(top.err(format!(
            "model_type '{}' is not Gemma 4 (expected gemma4 / gemma4_text)",
            cut(text_type)
        )));
    }
    Ok(text)
}

/// Features of other models that g4q must refuse rather than silently compute without.
fn check_unsupported(r: &Reader<'_>) -> Result<()> {
    let activation = r
        .str_opt("hidden_activation")?
        .unwrap_or("gelu_pytorch_tanh");
    if activation != "gelu_pytorch_tanh" {
        return Err(r.err(format!(
            "hidden_activation '{}' is not supported (gelu_pytorch_tanh)",
            cut(activation)
        )));
    }
    if r.get("attn_logit_softcapping").is_some() {
        return Err(r.err("attn_logit_softcapping is not a Gemma 4 feature"));
    }
    Ok(())
}

/// `layer_types`, which must have `num_hidden_layers` entries.
fn layer_types(r: &Reader<'_>) -> Result<Vec<LayerType>> {
    let num_hidden_layers = r.usize_req("num_hidden_layers")?;
    let items = match r.get("layer_types") {
        Some(Value::Array(items)) => items,
        Some(v) => return Err(r.wrong_type("layer_types", "a list", v)),
        None => return Err(r.err("layer_types is missing")),
    };
    if items.len() != num_hidden_layers {
        return Err(r.err(format!(
            "layer_types has {} entries but num_hidden_layers is {num_hidden_layers}",
            items.len()
        )));
    }
    items
        .iter()
        .map(|v| match v.as_str() {
            Some("sliding_attention") => Ok(LayerType::Sliding),
            Some("full_attention") => Ok(LayerType::Full),
            _ => Err(r.err(format!(
                "unknown layer type {} in layer_types",
                cut(&v.to_string())
            ))),
        })
        .collect()
}

/// Head dimensions and KV heads of the two layer kinds.
struct AttentionDims {
    head_dim: usize,
    global_head_dim: usize,
    num_key_value_heads: usize,
    num_global_key_value_heads: Option<usize>,
}

/// The released form gives the full layers' shapes as `global_head_dim` /
/// `num_global_key_value_heads`; transformers' save form as `per_layer_config` overrides keyed
/// by (possibly zero-padded) layer index.
fn attention_dims(r: &Reader<'_>, layer_types: &[LayerType]) -> Result<AttentionDims> {
    let head_dim = r.usize_req("head_dim")?;
    let mut global_head_dim = r.usize_opt("global_head_dim")?;
    let mut num_global_key_value_heads = r.usize_opt("num_global_key_value_heads")?;
    match r.get("per_layer_config") {
        None => {}
        Some(Value::Object(per_layer)) => {
            for (key, entry) in per_layer {
                let layer: usize = key.parse().map_err(|_| {
                    r.err(format!(
                        "per_layer_config key '{}' is not a layer index",
                        cut(key)
                    ))
                })?;
                let Some(&kind) = layer_types.get(layer) else {
                    return Err(r.err(format!(
                        "per_layer_config names layer {layer}, past num_hidden_layers"
                    )));
                };
                let prefix = format!("per_layer_config.{key}.");
                let Value::Object(entry) = entry else {
                    return Err(r.wrong_type(&prefix[..prefix.len() - 1], "an object", entry));
                };
                let e = Reader::new(entry, r.origin, &prefix);
                let hd = e.usize_opt("head_dim")?;
                let kv = e.usize_opt("num_key_value_heads")?;
                if kind == LayerType::Full {
                    global_head_dim = hd.or(global_head_dim);
                    num_global_key_value_heads = kv.or(num_global_key_value_heads);
                }
            }
        }
        Some(v) => return Err(r.wrong_type("per_layer_config", "an object", v)),
    }
    Ok(AttentionDims {
        head_dim,
        global_head_dim: global_head_dim.unwrap_or(head_dim),
        num_key_value_heads: r.usize_req("num_key_value_heads")?,
        num_global_key_value_heads,
    })
}

/// `rope_parameters` of the sliding and the full layers.
fn rope(r: &Reader<'_>) -> Result<(RopeParams, RopeParams)> {
    let params = match r.get("rope_parameters") {
        Some(Value::Object(p)) => p,
        Some(v) => return Err(r.wrong_type("rope_parameters", "an object", v)),
        None => return Err(r.err("rope_parameters is missing")),
    };
    let of = |kind: LayerType, default_theta: f64| -> Result<RopeParams> {
        let prefix = format!("rope_parameters.{}.", kind.hf_name());
        let empty = Map::new();
        let p = match params.get(kind.hf_name()) {
            None | Some(Value::Null) => &empty,
            Some(Value::Object(p)) => p,
            Some(v) => return Err(r.wrong_type(&prefix[..prefix.len() - 1], "an object", v)),
        };
        let p = Reader::new(p, r.origin, &prefix);
        let rope_type = match p.str_opt("rope_type")? {
            None => RopeType::Default,
            Some(name) => RopeType::from_hf_name(name).ok_or_else(|| {
                r.err(format!(
                    "rope type '{}' on {} layers is not supported",
                    cut(name),
                    kind.hf_name()
                ))
            })?,
        };
        Ok(RopeParams {
            theta: p.f64_opt("rope_theta")?.unwrap_or(default_theta),
            partial_rotary_factor: p
                .f64_opt("partial_rotary_factor")?
                .unwrap_or(defaults::PARTIAL_ROTARY_FACTOR),
            rope_type,
        })
    };
    Ok((
        of(LayerType::Sliding, defaults::ROPE_THETA_SLIDING)?,
        of(LayerType::Full, defaults::ROPE_THETA_FULL)?,
    ))
}

/// The mixture-of-experts block; all zero when the model has none.
struct Moe {
    enabled: bool,
    num_experts: usize,
    top_k_experts: usize,
    intermediate_size: usize,
}

/// The MoE keys, read only when `enable_moe_block` is set (dense configs may carry stale ones).
/// The released 26B-A4B config names the expert width `moe_intermediate_size` and carries
/// `"expert_intermediate_size": null` beside it.
fn moe(r: &Reader<'_>) -> Result<Moe> {
    if !r.bool_opt("enable_moe_block")?.unwrap_or(false) {
        return Ok(Moe {
            enabled: false,
            num_experts: 0,
            top_k_experts: 0,
            intermediate_size: 0,
        });
    }
    let intermediate_size = match r.usize_opt("moe_intermediate_size")? {
        Some(v) => v,
        None => r
            .usize_opt("expert_intermediate_size")?
            .ok_or_else(|| r.err("MoE model without moe_intermediate_size"))?,
    };
    Ok(Moe {
        enabled: true,
        num_experts: r.usize_req("num_experts")?,
        top_k_experts: r.usize_req("top_k_experts")?,
        intermediate_size,
    })
}

/// The special token ids.
struct Tokens {
    pad: u32,
    bos: u32,
    eos: Vec<u32>,
}

/// `eos_token_id` may be one id or a list of them.
fn tokens(r: &Reader<'_>) -> Result<Tokens> {
    let eos = match r.get("eos_token_id") {
        None => vec![defaults::EOS_TOKEN_ID],
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| r.u32_of("eos_token_id", v))
            .collect::<Result<_>>()?,
        Some(v) => vec![r.u32_of("eos_token_id", v)?],
    };
    Ok(Tokens {
        pad: r.u32_opt("pad_token_id")?.unwrap_or(defaults::PAD_TOKEN_ID),
        bos: r.u32_opt("bos_token_id")?.unwrap_or(defaults::BOS_TOKEN_ID),
        eos,
    })
}

/// Text keys g4q neither understands nor knowingly ignores, sorted (reported by `inspect`).
fn unknown_keys(text: &Map<String, Value>) -> Vec<String> {
    let mut keys: Vec<String> = text
        .keys()
        .filter(|k| !KNOWN_KEYS.contains(&k.as_str()))
        .map(|k| cut(k).into_owned())
        .collect();
    keys.sort();
    keys
}

/// Typed access to a JSON object, `null` meaning absent; errors name the file and the key
/// (with `prefix`, the path of a nested object: `rope_parameters.full_attention.`).
struct Reader<'a> {
    obj: &'a Map<String, Value>,
    origin: &'a str,
    prefix: &'a str,
}

impl<'a> TypedKeys<'a> for Reader<'a> {
    type Value = Value;

    fn get(&self, key: &str) -> Option<&'a Value> {
        self.obj.get(key).filter(|v| !v.is_null())
    }

    fn wrong_type(&self, key: &str, expected: &str, got: &Value) -> ConvertError {
        self.err(format!(
            "{}{key} must be {expected}, got {}",
            self.prefix,
            cut(&got.to_string())
        ))
    }
}

impl<'a> Reader<'a> {
    fn new(obj: &'a Map<String, Value>, origin: &'a str, prefix: &'a str) -> Self {
        Reader {
            obj,
            origin,
            prefix,
        }
    }

    fn err(&self, message: impl Into<String>) -> ConvertError {
        ConvertError::config(self.origin, message)
    }

    fn usize_req(&self, key: &str) -> Result<usize> {
        self.usize_opt(key)?
            .ok_or_else(|| self.err(format!("{}{key} is missing", self.prefix)))
    }

    fn u32_of(&self, key: &str, v: &Value) -> Result<u32> {
        v.as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| self.wrong_type(key, "an integer from 0 to 2^32-1", v))
    }

    fn u32_opt(&self, key: &str) -> Result<Option<u32>> {
        self.get(key).map(|v| self.u32_of(key, v)).transpose()
    }

    fn f64_opt(&self, key: &str) -> Result<Option<f64>> {
        self.get(key)
            .map(|v| {
                v.as_f64()
                    .ok_or_else(|| self.wrong_type(key, "a number", v))
            })
            .transpose()
    }

    fn bool_opt(&self, key: &str) -> Result<Option<bool>> {
        self.get(key)
            .map(|v| {
                v.as_bool()
                    .ok_or_else(|| self.wrong_type(key, "true or false", v))
            })
            .transpose()
    }
}
