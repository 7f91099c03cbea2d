//! `Gemma4Config`: the text-model hyperparameters of a Gemma 4 checkpoint, read from either form
//! of `config.json` the hub and transformers write:
//! - released: `Gemma4ForConditionalGeneration` with a nested `text_config` (flat
//!   `global_head_dim` / `num_global_key_value_heads`);
//! - transformers `save_pretrained` of `Gemma4ForCausalLM`: flat, with `per_layer_config`
//!   overriding `head_dim` / `num_key_value_heads` on full-attention layers.
//!
//! A JSON `null` means "absent" everywhere (the released 26B-A4B config carries
//! `"expert_intermediate_size": null` beside `moe_intermediate_size`).

use serde::Deserialize;
use serde_json::Value;

use crate::error::ConvertError;

/// The attention kind of one decoder layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LayerType {
    Sliding,
    Full,
}

impl LayerType {
    /// The key transformers uses in `layer_types` and `rope_parameters`.
    pub fn hf_name(self) -> &'static str {
        match self {
            LayerType::Sliding => "sliding_attention",
            LayerType::Full => "full_attention",
        }
    }
}

/// RoPE parameters of one layer type.
#[derive(Clone, Debug, PartialEq)]
pub struct RopeParams {
    pub theta: f64,
    /// Fraction of the head dimension that rotates ("proportional" RoPE on full layers); 1.0
    /// for the default RoPE.
    pub partial_rotary_factor: f64,
    /// `"default"` or `"proportional"`.
    pub rope_type: String,
}

/// The text-model configuration, with every field the forward pass and the converters need.
#[derive(Clone, Debug, PartialEq)]
pub struct Gemma4Config {
    /// `architectures[0]` of the file (`Gemma4ForConditionalGeneration` or `Gemma4ForCausalLM`).
    pub architecture: String,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub intermediate_size: usize,
    pub num_attention_heads: usize,
    /// KV heads of sliding layers.
    pub num_key_value_heads: usize,
    /// KV heads of full layers (`None`: same as sliding).
    pub num_global_key_value_heads: Option<usize>,
    /// Head dimension of sliding layers.
    pub head_dim: usize,
    /// Head dimension of full layers.
    pub global_head_dim: usize,
    /// Full layers have no `v_proj`: V is the raw K projection.
    pub attention_k_eq_v: bool,
    pub sliding_window: usize,
    pub layer_types: Vec<LayerType>,
    pub max_position_embeddings: usize,
    pub rope_sliding: RopeParams,
    pub rope_full: RopeParams,
    pub rms_norm_eps: f64,
    pub final_logit_softcapping: Option<f64>,
    pub hidden_activation: String,
    pub tie_word_embeddings: bool,
    /// Per-layer-input width (PLE); 0 when the variant has none.
    pub hidden_size_per_layer_input: usize,
    pub vocab_size_per_layer_input: usize,
    pub num_kv_shared_layers: usize,
    pub use_double_wide_mlp: bool,
    pub enable_moe_block: bool,
    pub num_experts: usize,
    pub top_k_experts: usize,
    pub moe_intermediate_size: usize,
    pub pad_token_id: u32,
    pub bos_token_id: u32,
    pub eos_token_ids: Vec<u32>,
    /// Text keys the file holds that g4q does not know (reported by `inspect`, never silently
    /// dropped).
    pub unknown_keys: Vec<String>,
}

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

#[derive(Deserialize)]
struct RawRope {
    rope_theta: Option<f64>,
    partial_rotary_factor: Option<f64>,
    rope_type: Option<String>,
}

impl Gemma4Config {
    /// Parses the text of a `config.json`. `origin` names the file in errors.
    pub fn from_json_str(text: &str, origin: &str) -> Result<Self, ConvertError> {
        let root: Value = serde_json::from_str(text)
            .map_err(|e| ConvertError::config(origin, format!("not valid JSON: {e}")))?;
        let architecture = root
            .get("architectures")
            .and_then(|a| a.get(0))
            .and_then(Value::as_str)
            .unwrap_or("Gemma4ForCausalLM")
            .to_string();
        let model_type = root.get("model_type").and_then(Value::as_str).unwrap_or("");
        let text = match root.get("text_config") {
            Some(t) if !t.is_null() => t,
            _ => &root,
        };
        let text_type = text
            .get("model_type")
            .and_then(Value::as_str)
            .unwrap_or(model_type);
        if !matches!(text_type, "gemma4_text" | "gemma4") {
            return Err(ConvertError::config(
                origin,
                format!("model_type '{text_type}' is not Gemma 4 (expected gemma4 / gemma4_text)"),
            ));
        }
        let obj = text
            .as_object()
            .ok_or_else(|| ConvertError::config(origin, "text_config is not an object"))?;
        let r = Reader { obj, origin };

        let num_hidden_layers = r.usize_req("num_hidden_layers")?;
        let layer_types = match obj.get("layer_types") {
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| match v.as_str() {
                    Some("sliding_attention") => Ok(LayerType::Sliding),
                    Some("full_attention") => Ok(LayerType::Full),
                    other => Err(ConvertError::config(
                        origin,
                        format!("unknown layer type {other:?} in layer_types"),
                    )),
                })
                .collect::<Result<Vec<_>, _>>()?,
            _ => return Err(ConvertError::config(origin, "layer_types is missing")),
        };
        if layer_types.len() != num_hidden_layers {
            return Err(ConvertError::config(
                origin,
                format!(
                    "layer_types has {} entries but num_hidden_layers is {num_hidden_layers}",
                    layer_types.len()
                ),
            ));
        }

        let head_dim = r.usize_req("head_dim")?;
        let num_key_value_heads = r.usize_req("num_key_value_heads")?;
        let mut global_head_dim = r.usize_opt("global_head_dim")?;
        let mut num_global_key_value_heads = r.usize_opt("num_global_key_value_heads")?;
        // transformers' save form: per-layer overrides keyed by (possibly zero-padded) layer index.
        if let Some(Value::Object(per_layer)) = obj.get("per_layer_config") {
            for (key, entry) in per_layer {
                let layer: usize = key.parse().map_err(|_| {
                    ConvertError::config(
                        origin,
                        format!("per_layer_config key '{key}' is not a layer index"),
                    )
                })?;
                if layer >= num_hidden_layers {
                    return Err(ConvertError::config(
                        origin,
                        format!("per_layer_config names layer {layer}, past num_hidden_layers"),
                    ));
                }
                let hd = entry
                    .get("head_dim")
                    .and_then(Value::as_u64)
                    .map(|v| v as usize);
                let kv = entry
                    .get("num_key_value_heads")
                    .and_then(Value::as_u64)
                    .map(|v| v as usize);
                if layer_types[layer] == LayerType::Full {
                    if let Some(hd) = hd {
                        global_head_dim = Some(hd);
                    }
                    if let Some(kv) = kv {
                        num_global_key_value_heads = Some(kv);
                    }
                }
            }
        }

        let rope = obj
            .get("rope_parameters")
            .filter(|v| !v.is_null())
            .ok_or_else(|| ConvertError::config(origin, "rope_parameters is missing"))?;
        let rope_of = |kind: LayerType, default_theta: f64| -> Result<RopeParams, ConvertError> {
            let raw = match rope.get(kind.hf_name()) {
                Some(v) if !v.is_null() => {
                    serde_json::from_value::<RawRope>(v.clone()).map_err(|e| {
                        ConvertError::config(
                            origin,
                            format!("rope_parameters.{}: {e}", kind.hf_name()),
                        )
                    })?
                }
                _ => RawRope {
                    rope_theta: None,
                    partial_rotary_factor: None,
                    rope_type: None,
                },
            };
            Ok(RopeParams {
                theta: raw.rope_theta.unwrap_or(default_theta),
                partial_rotary_factor: raw.partial_rotary_factor.unwrap_or(1.0),
                rope_type: raw.rope_type.unwrap_or_else(|| "default".into()),
            })
        };
        let rope_sliding = rope_of(LayerType::Sliding, 10_000.0)?;
        let rope_full = rope_of(LayerType::Full, 1_000_000.0)?;
        for (kind, p) in [
            ("sliding_attention", &rope_sliding),
            ("full_attention", &rope_full),
        ] {
            if !matches!(p.rope_type.as_str(), "default" | "proportional") {
                return Err(ConvertError::config(
                    origin,
                    format!(
                        "rope type '{}' on {kind} layers is not supported",
                        p.rope_type
                    ),
                ));
            }
        }

        let enable_moe_block = r.bool_or("enable_moe_block", false)?;
        let moe_intermediate_size = match r.usize_opt("moe_intermediate_size")? {
            Some(v) => Some(v),
            None => r.usize_opt("expert_intermediate_size")?,
        };
        let eos_token_ids = match obj.get("eos_token_id") {
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(Value::as_u64)
                .map(|v| v as u32)
                .collect(),
            Some(Value::Number(n)) => n.as_u64().map(|v| vec![v as u32]).unwrap_or_default(),
            _ => vec![1],
        };
        let hidden_activation = obj
            .get("hidden_activation")
            .and_then(Value::as_str)
            .unwrap_or("gelu_pytorch_tanh")
            .to_string();
        if hidden_activation != "gelu_pytorch_tanh" {
            return Err(ConvertError::config(
                origin,
                format!(
                    "hidden_activation '{hidden_activation}' is not supported (gelu_pytorch_tanh)"
                ),
            ));
        }
        if let Some(v) = obj.get("attn_logit_softcapping") {
            if !v.is_null() {
                return Err(ConvertError::config(
                    origin,
                    "attn_logit_softcapping is not a Gemma 4 feature",
                ));
            }
        }

        let mut unknown_keys: Vec<String> = obj
            .keys()
            .filter(|k| !KNOWN_KEYS.contains(&k.as_str()))
            .cloned()
            .collect();
        unknown_keys.sort();

        let cfg = Gemma4Config {
            architecture,
            vocab_size: r.usize_req("vocab_size")?,
            hidden_size: r.usize_req("hidden_size")?,
            num_hidden_layers,
            intermediate_size: r.usize_req("intermediate_size")?,
            num_attention_heads: r.usize_req("num_attention_heads")?,
            num_key_value_heads,
            num_global_key_value_heads,
            head_dim,
            global_head_dim: global_head_dim.unwrap_or(head_dim),
            attention_k_eq_v: r.bool_or("attention_k_eq_v", false)?,
            sliding_window: r.usize_req("sliding_window")?,
            layer_types,
            max_position_embeddings: r.usize_opt("max_position_embeddings")?.unwrap_or(131_072),
            rope_sliding,
            rope_full,
            rms_norm_eps: r.f64_opt("rms_norm_eps")?.unwrap_or(1e-6),
            final_logit_softcapping: r.f64_opt("final_logit_softcapping")?,
            hidden_activation,
            tie_word_embeddings: match root.get("tie_word_embeddings").and_then(Value::as_bool) {
                Some(b) => b,
                None => r.bool_or("tie_word_embeddings", true)?,
            },
            hidden_size_per_layer_input: r.usize_opt("hidden_size_per_layer_input")?.unwrap_or(0),
            vocab_size_per_layer_input: r.usize_opt("vocab_size_per_layer_input")?.unwrap_or(0),
            num_kv_shared_layers: r.usize_opt("num_kv_shared_layers")?.unwrap_or(0),
            use_double_wide_mlp: r.bool_or("use_double_wide_mlp", false)?,
            enable_moe_block,
            num_experts: if enable_moe_block {
                r.usize_req("num_experts")?
            } else {
                0
            },
            top_k_experts: if enable_moe_block {
                r.usize_req("top_k_experts")?
            } else {
                0
            },
            moe_intermediate_size: if enable_moe_block {
                moe_intermediate_size.ok_or_else(|| {
                    ConvertError::config(origin, "MoE model without moe_intermediate_size")
                })?
            } else {
                0
            },
            pad_token_id: r.usize_opt("pad_token_id")?.unwrap_or(0) as u32,
            bos_token_id: r.usize_opt("bos_token_id")?.unwrap_or(2) as u32,
            eos_token_ids,
            unknown_keys,
        };
        cfg.validate(origin)?;
        Ok(cfg)
    }

    /// Cross-field checks: anything that would make shapes or the layer plan inconsistent.
    pub(crate) fn validate(&self, origin: &str) -> Result<(), ConvertError> {
        let bad = |m: String| Err(ConvertError::config(origin, m));
        if self.num_hidden_layers == 0 {
            return bad("num_hidden_layers must be at least 1".into());
        }
        if self.use_double_wide_mlp && self.intermediate_size.checked_mul(2).is_none() {
            return bad(format!(
                "intermediate_size {} is too large",
                self.intermediate_size
            ));
        }
        if self.hidden_size == 0 || self.num_attention_heads == 0 || self.head_dim == 0 {
            return bad("hidden_size, num_attention_heads and head_dim must be positive".into());
        }
        for l in 0..self.num_hidden_layers {
            let kv = self.num_kv_heads(l);
            if self.num_attention_heads.checked_rem(kv) != Some(0) {
                return bad(format!(
                    "layer {l}: {} query heads are not a multiple of {kv} KV heads",
                    self.num_attention_heads
                ));
            }
        }
        if self.num_kv_shared_layers >= self.num_hidden_layers && self.num_kv_shared_layers > 0 {
            return bad("num_kv_shared_layers must be smaller than num_hidden_layers".into());
        }
        if self.num_kv_shared_layers > 0 {
            for l in self.first_kv_shared_layer()..self.num_hidden_layers {
                if self.kv_source_layer(l).is_none() {
                    return bad(format!(
                        "KV-shared layer {l} has no earlier layer of its type to share"
                    ));
                }
            }
        }
        if self.has_per_layer_inputs() && self.vocab_size_per_layer_input == 0 {
            return bad(
                "hidden_size_per_layer_input is set but vocab_size_per_layer_input is 0".into(),
            );
        }
        if self.enable_moe_block
            && (self.top_k_experts == 0 || self.top_k_experts > self.num_experts)
        {
            return bad(format!(
                "top_k_experts {} must be between 1 and num_experts {}",
                self.top_k_experts, self.num_experts
            ));
        }
        Ok(())
    }

    /// Attention kind of layer `l`.
    pub fn layer_type(&self, l: usize) -> LayerType {
        self.layer_types[l]
    }

    /// Head dimension of layer `l`.
    pub fn head_dim_of(&self, l: usize) -> usize {
        match self.layer_types[l] {
            LayerType::Sliding => self.head_dim,
            LayerType::Full => self.global_head_dim,
        }
    }

    /// KV heads of layer `l`.
    pub fn num_kv_heads(&self, l: usize) -> usize {
        match self.layer_types[l] {
            LayerType::Sliding => self.num_key_value_heads,
            LayerType::Full => self
                .num_global_key_value_heads
                .unwrap_or(self.num_key_value_heads),
        }
    }

    /// Whether layer `l` computes V as the raw K projection (no `v_proj`).
    pub fn v_is_k(&self, l: usize) -> bool {
        self.attention_k_eq_v && self.layer_types[l] == LayerType::Full
    }

    /// First layer that reuses an earlier layer's K/V (== `num_hidden_layers` when none does).
    pub fn first_kv_shared_layer(&self) -> usize {
        self.num_hidden_layers - self.num_kv_shared_layers
    }

    /// Whether layer `l` reuses another layer's K/V instead of computing its own.
    pub fn is_kv_shared(&self, l: usize) -> bool {
        self.num_kv_shared_layers > 0 && l >= self.first_kv_shared_layer()
    }

    /// For a KV-shared layer, the layer whose K/V it reads: the last non-shared layer of the same
    /// type. `None` for layers that compute their own K/V.
    pub fn kv_source_layer(&self, l: usize) -> Option<usize> {
        if !self.is_kv_shared(l) {
            return None;
        }
        let kind = self.layer_types[l];
        (0..self.first_kv_shared_layer())
            .rev()
            .find(|&s| self.layer_types[s] == kind)
    }

    /// Whether layer `l` computes K/V that a later KV-shared layer reads (the "store" layers).
    pub fn is_kv_store(&self, l: usize) -> bool {
        (self.first_kv_shared_layer()..self.num_hidden_layers)
            .any(|s| self.kv_source_layer(s) == Some(l))
    }

    /// Width of the dense MLP of layer `l` (doubled on KV-shared layers with `use_double_wide_mlp`).
    pub fn intermediate_size_of(&self, l: usize) -> usize {
        if self.use_double_wide_mlp && self.is_kv_shared(l) {
            self.intermediate_size * 2
        } else {
            self.intermediate_size
        }
    }

    /// RoPE parameters of layer `l`.
    pub fn rope_of(&self, l: usize) -> &RopeParams {
        match self.layer_types[l] {
            LayerType::Sliding => &self.rope_sliding,
            LayerType::Full => &self.rope_full,
        }
    }

    /// Whether the model has per-layer embeddings (E2B / E4B).
    pub fn has_per_layer_inputs(&self) -> bool {
        self.hidden_size_per_layer_input > 0
    }

    /// Which released variant this config is shaped like, by its features.
    pub fn variant(&self) -> Variant {
        if self.enable_moe_block {
            Variant::A26B
        } else if self.has_per_layer_inputs() {
            // E2B repeats 4 sliding + 1 full, E4B 5 + 1. A model too shallow to show the
            // period (a synthetic one whose only full layer is the forced last one) is told
            // apart by width: E2B is 1536 wide, E4B 2560.
            let first_full = self
                .layer_types
                .iter()
                .position(|t| *t == LayerType::Full)
                .filter(|&f| f + 1 < self.num_hidden_layers);
            match first_full {
                Some(4) => Variant::E2B,
                Some(5) => Variant::E4B,
                _ if self.hidden_size < 2048 => Variant::E2B,
                _ => Variant::E4B,
            }
        } else {
            Variant::B31
        }
    }
}

/// The four released Gemma 4 text variants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Variant {
    E2B,
    E4B,
    A26B,
    B31,
}

impl Variant {
    /// The name users type (`e2b`, `e4b`, `26b-a4b`, `31b`).
    pub fn cli_name(self) -> &'static str {
        match self {
            Variant::E2B => "e2b",
            Variant::E4B => "e4b",
            Variant::A26B => "26b-a4b",
            Variant::B31 => "31b",
        }
    }
}

/// Typed access to a JSON object with `null` meaning absent and errors naming the key.
struct Reader<'a> {
    obj: &'a serde_json::Map<String, Value>,
    origin: &'a str,
}

impl Reader<'_> {
    fn get(&self, key: &str) -> Option<&Value> {
        self.obj.get(key).filter(|v| !v.is_null())
    }

    fn usize_opt(&self, key: &str) -> Result<Option<usize>, ConvertError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| {
                    ConvertError::config(
                        self.origin,
                        format!("{key} must be a non-negative integer, got {v}"),
                    )
                }),
        }
    }

    fn usize_req(&self, key: &str) -> Result<usize, ConvertError> {
        self.usize_opt(key)?
            .ok_or_else(|| ConvertError::config(self.origin, format!("{key} is missing")))
    }

    fn f64_opt(&self, key: &str) -> Result<Option<f64>, ConvertError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_f64().map(Some).ok_or_else(|| {
                ConvertError::config(self.origin, format!("{key} must be a number, got {v}"))
            }),
        }
    }

    fn bool_or(&self, key: &str, default: bool) -> Result<bool, ConvertError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.as_bool().ok_or_else(|| {
                ConvertError::config(self.origin, format!("{key} must be true or false, got {v}"))
            }),
        }
    }
}
