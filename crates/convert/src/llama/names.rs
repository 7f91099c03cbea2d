//! Hugging Face → GGUF tensor names for Gemma 4, as llama.cpp's `gguf-py` tensor map and its
//! `Gemma4Model` converter spell them.

/// Global (non-layer) tensors.
const GLOBAL: &[(&str, &str)] = &[
    ("embed_tokens.weight", "token_embd.weight"),
    (
        "embed_tokens_per_layer.weight",
        "per_layer_token_embd.weight",
    ),
    (
        "per_layer_model_projection.weight",
        "per_layer_model_proj.weight",
    ),
    (
        "per_layer_projection_norm.weight",
        "per_layer_proj_norm.weight",
    ),
    ("norm.weight", "output_norm.weight"),
];

/// Per-layer tensors: the part after `layers.N.` → the part after `blk.N.`.
const LAYER: &[(&str, &str)] = &[
    ("input_layernorm.weight", "attn_norm.weight"),
    ("self_attn.q_proj.weight", "attn_q.weight"),
    ("self_attn.k_proj.weight", "attn_k.weight"),
    ("self_attn.v_proj.weight", "attn_v.weight"),
    ("self_attn.o_proj.weight", "attn_output.weight"),
    ("self_attn.q_norm.weight", "attn_q_norm.weight"),
    ("self_attn.k_norm.weight", "attn_k_norm.weight"),
    (
        "post_attention_layernorm.weight",
        "post_attention_norm.weight",
    ),
    ("pre_feedforward_layernorm.weight", "ffn_norm.weight"),
    ("mlp.gate_proj.weight", "ffn_gate.weight"),
    ("mlp.up_proj.weight", "ffn_up.weight"),
    ("mlp.down_proj.weight", "ffn_down.weight"),
    ("post_feedforward_layernorm.weight", "post_ffw_norm.weight"),
    (
        "pre_feedforward_layernorm_2.weight",
        "pre_ffw_norm_2.weight",
    ),
    (
        "post_feedforward_layernorm_1.weight",
        "post_ffw_norm_1.weight",
    ),
    (
        "post_feedforward_layernorm_2.weight",
        "post_ffw_norm_2.weight",
    ),
    ("router.proj.weight", "ffn_gate_inp.weight"),
    ("router.scale", "ffn_gate_inp.scale"),
    ("router.per_expert_scale", "ffn_down_exps.scale"),
    ("experts.gate_up_proj", "ffn_gate_up_exps.weight"),
    ("experts.down_proj", "ffn_down_exps.weight"),
    ("layer_scalar", "layer_output_scale.weight"),
    ("per_layer_input_gate.weight", "inp_gate.weight"),
    ("per_layer_projection.weight", "proj.weight"),
    ("post_per_layer_input_norm.weight", "post_norm.weight"),
];

/// The GGUF name of a canonical text tensor name (`layers.3.self_attn.q_proj.weight` →
/// `blk.3.attn_q.weight`), or `None` for a name llama.cpp has no tensor for.
pub fn gguf_name(canonical: &str) -> Option<String> {
    if let Some((_, g)) = GLOBAL.iter().find(|(h, _)| *h == canonical) {
        return Some((*g).to_string());
    }
    let rest = canonical.strip_prefix("layers.")?;
    let (layer, part) = rest.split_once('.')?;
    layer.parse::<usize>().ok()?;
    let (_, g) = LAYER.iter().find(|(h, _)| *h == part)?;
    Some(format!("blk.{layer}.{g}"))
}

/// The canonical name of a GGUF tensor name (the inverse of [`gguf_name`]).
pub fn canonical_name(gguf: &str) -> Option<String> {
    if let Some((h, _)) = GLOBAL.iter().find(|(_, g)| *g == gguf) {
        return Some((*h).to_string());
    }
    let rest = gguf.strip_prefix("blk.")?;
    let (layer, part) = rest.split_once('.')?;
    layer.parse::<usize>().ok()?;
    let (h, _) = LAYER.iter().find(|(_, g)| *g == part)?;
    Some(format!("layers.{layer}.{h}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_both_ways() {
        for (hf, g) in [
            ("embed_tokens.weight", "token_embd.weight"),
            (
                "layers.12.experts.gate_up_proj",
                "blk.12.ffn_gate_up_exps.weight",
            ),
            ("layers.0.layer_scalar", "blk.0.layer_output_scale.weight"),
            (
                "layers.3.router.per_expert_scale",
                "blk.3.ffn_down_exps.scale",
            ),
        ] {
            assert_eq!(gguf_name(hf).as_deref(), Some(g));
            assert_eq!(canonical_name(g).as_deref(), Some(hf));
        }
        assert_eq!(gguf_name("layers.x.input_layernorm.weight"), None);
        assert_eq!(gguf_name("vision_tower.foo"), None);
    }
}
