//! The tensor catalogue: for a `Gemma4Config`, every text tensor a checkpoint must (or may) hold
//! and its exact shape, and the classification of every name a released file can contain.
//!
//! Checkpoints are checked against this list before any work starts, so a file that disagrees
//! with its config fails at open with the tensor's name, never halfway through a conversion.
//! Canonical names are the Hugging Face names without the text prefix, e.g.
//! `layers.3.self_attn.q_proj.weight`.

use crate::config::Gemma4Config;
use crate::error::{ConvertError, Result};

/// Text prefix of the released `Gemma4ForConditionalGeneration` layout.
pub const RELEASED_PREFIX: &str = "model.language_model.";
/// Text prefix of the `Gemma4ForCausalLM` layout transformers' `save_pretrained` writes.
pub const CAUSAL_PREFIX: &str = "model.";
/// The output head; tied to `embed_tokens` in every released variant, so usually absent.
pub const LM_HEAD: &str = "lm_head.weight";

/// Whether a catalogue entry must be present.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// Must be present with exactly this shape.
    Required,
    /// May be absent; if present it must have this shape.
    Optional,
    /// Recognised and never read: the unused `k_proj`/`v_proj`/`k_norm` Google ships on
    /// KV-shared layers. Its shape is not checked.
    Ignored,
}

/// One expected text tensor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorSpec {
    /// Canonical name (HF name minus the text prefix).
    pub name: String,
    pub shape: Vec<usize>,
    pub need: Need,
}

/// What a tensor name in a checkpoint file is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NameClass {
    /// A text tensor, by canonical name (not yet checked against the catalogue).
    Text(String),
    /// Part of the vision tower or its projector into the text model.
    Vision,
    /// Part of the audio tower or its projector into the text model.
    Audio,
    /// Neither: no Gemma 4 checkpoint holds such a name.
    Unknown,
}

/// The text prefix of a checkpoint, decided from its tensor names: the released layout nests
/// the text model under `model.language_model.`.
pub fn text_prefix<'a>(names: impl IntoIterator<Item = &'a str>) -> &'static str {
    if names.into_iter().any(|n| n.starts_with(RELEASED_PREFIX)) {
        RELEASED_PREFIX
    } else {
        CAUSAL_PREFIX
    }
}

/// Classifies an HF tensor name given the checkpoint's text prefix.
pub fn classify(hf_name: &str, prefix: &str) -> NameClass {
    const VISION: [&str; 2] = ["model.vision_tower.", "model.embed_vision."];
    const AUDIO: [&str; 2] = ["model.audio_tower.", "model.embed_audio."];
    if VISION.iter().any(|p| hf_name.starts_with(p)) {
        NameClass::Vision
    } else if AUDIO.iter().any(|p| hf_name.starts_with(p)) {
        NameClass::Audio
    } else if hf_name == LM_HEAD {
        NameClass::Text(LM_HEAD.to_string())
    } else if let Some(rest) = hf_name.strip_prefix(prefix) {
        NameClass::Text(rest.to_string())
    } else {
        NameClass::Unknown
    }
}

/// Every text tensor of a checkpoint with this config, in a stable order (globals, then layer by
/// layer). Sizes come from an untrusted config, so products are checked.
pub fn text_catalogue(cfg: &Gemma4Config) -> Result<Vec<TensorSpec>> {
    let mul = |a: usize, b: usize, what: &str| {
        a.checked_mul(b).ok_or_else(|| {
            ConvertError::config("config.json", format!("{what} ({a} x {b}) overflows"))
        })
    };
    let h = cfg.hidden_size;
    let mut out = Vec::new();
    let mut push = |name: String, shape: Vec<usize>, need: Need| {
        out.push(TensorSpec { name, shape, need });
    };

    push(
        "embed_tokens.weight".into(),
        vec![cfg.vocab_size, h],
        Need::Required,
    );
    let ple = cfg.hidden_size_per_layer_input;
    if cfg.has_per_layer_inputs() {
        let total = mul(cfg.num_hidden_layers, ple, "per-layer input width")?;
        push(
            "embed_tokens_per_layer.weight".into(),
            vec![cfg.vocab_size_per_layer_input, total],
            Need::Required,
        );
        push(
            "per_layer_model_projection.weight".into(),
            vec![total, h],
            Need::Required,
        );
        push(
            "per_layer_projection_norm.weight".into(),
            vec![ple],
            Need::Required,
        );
    }
    push("norm.weight".into(), vec![h], Need::Required);
    push(
        LM_HEAD.into(),
        vec![cfg.vocab_size, h],
        if cfg.tie_word_embeddings {
            Need::Optional
        } else {
            Need::Required
        },
    );

    for l in 0..cfg.num_hidden_layers {
        let p = format!("layers.{l}.");
        let hd = cfg.head_dim_of(l);
        let q = mul(cfg.num_attention_heads, hd, "query width")?;
        let kv = mul(cfg.num_kv_heads(l), hd, "key/value width")?;
        for norm in [
            "input_layernorm",
            "post_attention_layernorm",
            "pre_feedforward_layernorm",
            "post_feedforward_layernorm",
        ] {
            push(format!("{p}{norm}.weight"), vec![h], Need::Required);
        }
        push(
            format!("{p}self_attn.q_proj.weight"),
            vec![q, h],
            Need::Required,
        );
        push(
            format!("{p}self_attn.q_norm.weight"),
            vec![hd],
            Need::Required,
        );
        let own_kv = if cfg.is_kv_shared(l) {
            Need::Ignored
        } else {
            Need::Required
        };
        push(format!("{p}self_attn.k_proj.weight"), vec![kv, h], own_kv);
        push(format!("{p}self_attn.k_norm.weight"), vec![hd], own_kv);
        if !cfg.v_is_k(l) {
            push(format!("{p}self_attn.v_proj.weight"), vec![kv, h], own_kv);
        }
        push(
            format!("{p}self_attn.o_proj.weight"),
            vec![h, q],
            Need::Required,
        );
        let inter = cfg.intermediate_size_of(l);
        push(
            format!("{p}mlp.gate_proj.weight"),
            vec![inter, h],
            Need::Required,
        );
        push(
            format!("{p}mlp.up_proj.weight"),
            vec![inter, h],
            Need::Required,
        );
        push(
            format!("{p}mlp.down_proj.weight"),
            vec![h, inter],
            Need::Required,
        );
        if cfg.has_per_layer_inputs() {
            push(
                format!("{p}per_layer_input_gate.weight"),
                vec![ple, h],
                Need::Required,
            );
            push(
                format!("{p}per_layer_projection.weight"),
                vec![h, ple],
                Need::Required,
            );
            push(
                format!("{p}post_per_layer_input_norm.weight"),
                vec![h],
                Need::Required,
            );
        }
        if cfg.enable_moe_block {
            let e = cfg.num_experts;
            let mi = cfg.moe_intermediate_size;
            push(format!("{p}router.proj.weight"), vec![e, h], Need::Required);
            push(format!("{p}router.scale"), vec![h], Need::Required);
            push(
                format!("{p}router.per_expert_scale"),
                vec![e],
                Need::Required,
            );
            push(
                format!("{p}experts.gate_up_proj"),
                vec![e, mul(2, mi, "expert width")?, h],
                Need::Required,
            );
            push(
                format!("{p}experts.down_proj"),
                vec![e, h, mi],
                Need::Required,
            );
            for norm in [
                "pre_feedforward_layernorm_2",
                "post_feedforward_layernorm_1",
                "post_feedforward_layernorm_2",
            ] {
                push(format!("{p}{norm}.weight"), vec![h], Need::Required);
            }
        }
        push(format!("{p}layer_scalar"), vec![1], Need::Required);
    }
    Ok(out)
}

/// Whether a file's shape matches the catalogue's. Scalars may be stored 0-d or as `[1]`.
pub fn shape_matches(expected: &[usize], found: &[usize]) -> bool {
    expected == found
        || (expected.len() <= 1
            && found.len() <= 1
            && expected.iter().product::<usize>() == 1
            && found.iter().product::<usize>() == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_both_layouts_and_towers() {
        assert_eq!(
            classify(
                "model.language_model.layers.0.layer_scalar",
                RELEASED_PREFIX
            ),
            NameClass::Text("layers.0.layer_scalar".into())
        );
        assert_eq!(
            classify("model.norm.weight", CAUSAL_PREFIX),
            NameClass::Text("norm.weight".into())
        );
        assert_eq!(
            classify("model.vision_tower.x", RELEASED_PREFIX),
            NameClass::Vision
        );
        assert_eq!(
            classify(
                "model.embed_audio.embedding_projection.weight",
                CAUSAL_PREFIX
            ),
            NameClass::Audio
        );
        assert_eq!(classify("foo.bar", RELEASED_PREFIX), NameClass::Unknown);
        assert_eq!(
            classify("model.norm.weight", RELEASED_PREFIX),
            NameClass::Unknown
        );
    }

    #[test]
    fn scalar_shapes() {
        assert!(shape_matches(&[1], &[]));
        assert!(shape_matches(&[1], &[1]));
        assert!(!shape_matches(&[1], &[2]));
        assert!(!shape_matches(&[4, 2], &[2, 4]));
    }
}
