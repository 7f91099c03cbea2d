//! `Gemma4Config`: the text-model hyperparameters of a Gemma 4 checkpoint, the per-layer
//! questions the forward pass and the converters ask of them (shapes, KV sharing, RoPE), and the
//! range checks every config passes whatever it was read from. `json.rs` reads it from
//! `config.json`, [`crate::llama::config_from_gguf`] from a GGUF file's metadata, and
//! [`defaults`] holds the values of absent keys and the bounds both readers share.

pub mod defaults;
mod json;
pub(crate) mod keys;

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

/// The RoPE variants Gemma 4 uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RopeType {
    /// Every frequency pair of the head rotates.
    Default,
    /// Only the leading `partial_rotary_factor` share of the pairs rotates, with exponents
    /// over the whole head dimension; the rest pass through.
    Proportional,
}

impl RopeType {
    /// The name transformers uses in `rope_parameters.*.rope_type`.
    pub fn hf_name(self) -> &'static str {
        match self {
            RopeType::Default => "default",
            RopeType::Proportional => "proportional",
        }
    }

    /// The type named `name` in a config, if g4q supports it.
    pub fn from_hf_name(name: &str) -> Option<Self> {
        match name {
            "default" => Some(RopeType::Default),
            "proportional" => Some(RopeType::Proportional),
            _ => None,
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
    pub rope_type: RopeType,
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

impl Gemma4Config {
    /// Parses the text of a `config.json`. `origin` names the file in errors.
    pub fn from_json_str(text: &str, origin: &str) -> Result<Self, ConvertError> {
        json::parse(text, origin)
    }

    /// Range and cross-field checks, whatever the config was read from: every size positive
    /// and below [`defaults::MAX_SIZE`] (so no size sizes an absurd allocation or is cut when
    /// written into a UINT32 GGUF key), every float finite and in its range, and nothing that
    /// would make shapes or the layer plan inconsistent.
    pub(crate) fn validate(&self, origin: &str) -> Result<(), ConvertError> {
        let bad = |m: String| Err(ConvertError::config(origin, m));
        self.validate_sizes(origin)?;
        self.validate_floats(origin)?;
        if self.use_double_wide_mlp && self.intermediate_size.checked_mul(2).is_none() {
            return bad(format!(
                "intermediate_size {} is too large",
                self.intermediate_size
            ));
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
        for (key, id) in [
            ("pad_token_id", self.pad_token_id),
            ("bos_token_id", self.bos_token_id),
        ]
        .into_iter()
        .chain(self.eos_token_ids.iter().map(|&id| ("eos_token_id", id)))
        {
            if id as usize >= self.vocab_size {
                return bad(format!(
                    "{key} {id} is outside the vocabulary of {}",
                    self.vocab_size
                ));
            }
        }
        Ok(())
    }

    /// Every size in range: layers in `1..=MAX_LAYERS`, contexts in `1..=MAX_CONTEXT`, widths
    /// in `1..=MAX_SIZE` (or 0 where 0 means "absent"), head dims even (RoPE pairs them).
    fn validate_sizes(&self, origin: &str) -> Result<(), ConvertError> {
        use defaults::{MAX_CONTEXT, MAX_LAYERS, MAX_SIZE};
        let in_range = |key: &str, v: usize, min: usize, max: usize| {
            if v < min || v > max {
                Err(ConvertError::config(
                    origin,
                    format!("{key} {v} is out of range ({min} to {max})"),
                ))
            } else {
                Ok(())
            }
        };
        in_range("num_hidden_layers", self.num_hidden_layers, 1, MAX_LAYERS)?;
        in_range(
            "max_position_embeddings",
            self.max_position_embeddings,
            1,
            MAX_CONTEXT,
        )?;
        in_range("sliding_window", self.sliding_window, 1, MAX_CONTEXT)?;
        for (key, v) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_attention_heads", self.num_attention_heads),
            ("num_key_value_heads", self.num_key_value_heads),
            ("head_dim", self.head_dim),
            ("global_head_dim", self.global_head_dim),
        ] {
            in_range(key, v, 1, MAX_SIZE)?;
        }
        if let Some(kv) = self.num_global_key_value_heads {
            in_range("num_global_key_value_heads", kv, 1, MAX_SIZE)?;
        }
        for (key, v) in [
            (
                "hidden_size_per_layer_input",
                self.hidden_size_per_layer_input,
            ),
            (
                "vocab_size_per_layer_input",
                self.vocab_size_per_layer_input,
            ),
            ("num_kv_shared_layers", self.num_kv_shared_layers),
        ] {
            in_range(key, v, 0, MAX_SIZE)?;
        }
        if self.enable_moe_block {
            in_range("num_experts", self.num_experts, 1, MAX_SIZE)?;
            in_range(
                "moe_intermediate_size",
                self.moe_intermediate_size,
                1,
                MAX_SIZE,
            )?;
        }
        for (key, v) in [
            ("head_dim", self.head_dim),
            ("global_head_dim", self.global_head_dim),
        ] {
            if v % 2 != 0 {
                return Err(ConvertError::config(
                    origin,
                    format!("{key} {v} is odd (RoPE rotates pairs)"),
                ));
            }
        }
        Ok(())
    }

    /// Every float finite and in its range, also once rounded to the f32 a GGUF key holds:
    /// a zero or negative RoPE base or norm epsilon gives NaN logits, not an error, downstream.
    fn validate_floats(&self, origin: &str) -> Result<(), ConvertError> {
        let positive = |key: &str, v: f64| {
            if v.is_finite() && v > 0.0 && (v as f32).is_finite() && v as f32 > 0.0 {
                Ok(())
            } else {
                Err(ConvertError::config(
                    origin,
                    format!("{key} {v} must be a positive finite number"),
                ))
            }
        };
        for (kind, p) in [
            (LayerType::Sliding, &self.rope_sliding),
            (LayerType::Full, &self.rope_full),
        ] {
            let key = |k: &str| format!("rope_parameters.{}.{k}", kind.hf_name());
            positive(&key("rope_theta"), p.theta)?;
            let factor = p.partial_rotary_factor;
            let factor_ok = match p.rope_type {
                RopeType::Default => factor == 1.0,
                RopeType::Proportional => factor > 0.0 && factor <= 1.0,
            };
            if !factor_ok {
                return Err(ConvertError::config(
                    origin,
                    format!(
                        "{} {factor} is not valid for {} RoPE (must be {})",
                        key("partial_rotary_factor"),
                        p.rope_type.hf_name(),
                        match p.rope_type {
                            RopeType::Default => "1",
                            RopeType::Proportional => "in (0, 1]",
                        }
                    ),
                ));
            }
        }
        positive("rms_norm_eps", self.rms_norm_eps)?;
        if self.rms_norm_eps >= 1.0 {
            return Err(ConvertError::config(
                origin,
                format!("rms_norm_eps {} must be below 1", self.rms_norm_eps),
            ));
        }
        if let Some(cap) = self.final_logit_softcapping {
            positive("final_logit_softcapping", cap)?;
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
