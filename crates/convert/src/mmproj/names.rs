//! Hugging Face → GGUF names of the Gemma 4 vision and audio towers, as llama.cpp's
//! `Gemma4VisionAudioModel.modify_tensors` renames them and gguf-py's `MMPROJ` tensor map then
//! maps them: a module path maps to a GGUF base name, and the suffix (`.weight`, `.bias`, the
//! clipped linears' `.input_min`/`.input_max`/`.output_min`/`.output_max`) is carried over.

/// The suffixes gguf-py tries when a full name is not in its map.
const SUFFIXES: [&str; 6] = [
    ".weight",
    ".bias",
    ".input_max",
    ".input_min",
    ".output_max",
    ".output_min",
];

/// Parameters stored without a suffix, to which llama.cpp appends `.weight` before mapping.
const BARE_PARAMS: [&str; 4] = [
    "position_embedding_table",
    "layer_scalar",
    "per_dim_scale",
    "per_dim_key_scale",
];

/// Vision tensors outside the layers: module path (after `model.`) → GGUF name.
const VISION_GLOBAL: &[(&str, &str)] = &[
    ("vision_tower.patch_embedder.input_proj", "v.patch_embd"),
    (
        "vision_tower.patch_embedder.position_embedding_table",
        "v.position_embd",
    ),
    ("vision_tower.std_bias", "v.std_bias"),
    ("vision_tower.std_scale", "v.std_scale"),
    ("embed_vision.embedding_projection", "mm.input_projection"),
];

/// Vision layer modules: the path after `model.vision_tower.encoder.layers.N.` → the part
/// after `v.blk.N.`.
const VISION_LAYER: &[(&str, &str)] = &[
    ("input_layernorm", "ln1"),
    ("self_attn.q_proj", "attn_q"),
    ("self_attn.k_proj", "attn_k"),
    ("self_attn.v_proj", "attn_v"),
    ("self_attn.o_proj", "attn_out"),
    ("self_attn.q_norm", "attn_q_norm"),
    ("self_attn.k_norm", "attn_k_norm"),
    ("pre_feedforward_layernorm", "ln2"),
    ("post_attention_layernorm", "attn_post_norm"),
    ("post_feedforward_layernorm", "ffn_post_norm"),
    ("mlp.gate_proj", "ffn_gate"),
    ("mlp.up_proj", "ffn_up"),
    ("mlp.down_proj", "ffn_down"),
    ("layer_scalar", "out_scale"),
];

/// Audio tensors outside the layers: module path (after `model.`) → GGUF name.
const AUDIO_GLOBAL: &[(&str, &str)] = &[
    (
        "audio_tower.subsample_conv_projection.input_proj_linear",
        "a.input_projection",
    ),
    ("audio_tower.output_proj", "a.pre_encode.out"),
    ("embed_audio.embedding_projection", "mm.a.input_projection"),
];

/// Audio subsampling convolutions: `model.audio_tower.subsample_conv_projection.layerN.<part>`
/// → `a.conv1d.N<gguf>`.
const AUDIO_CONV: &[(&str, &str)] = &[("conv", ""), ("norm", ".norm")];

/// Audio (conformer) layer modules: the path after `model.audio_tower.layers.N.` → the part
/// after `a.blk.N.`.
const AUDIO_LAYER: &[(&str, &str)] = &[
    ("self_attn.q_proj", "attn_q"),
    ("self_attn.k_proj", "attn_k"),
    ("self_attn.v_proj", "attn_v"),
    ("self_attn.post", "attn_out"),
    ("self_attn.relative_k_proj", "attn_k_rel"),
    ("self_attn.per_dim_scale", "per_dim_scale"),
    ("self_attn.per_dim_key_scale", "per_dim_k_scale"),
    ("norm_pre_attn", "attn_pre_norm"),
    ("norm_post_attn", "attn_post_norm"),
    ("norm_out", "ln2"),
    ("feed_forward1.pre_layer_norm", "ffn_norm"),
    ("feed_forward1.post_layer_norm", "ffn_post_norm"),
    ("feed_forward1.ffw_layer_1", "ffn_up"),
    ("feed_forward1.ffw_layer_2", "ffn_down"),
    ("feed_forward2.pre_layer_norm", "ffn_norm_1"),
    ("feed_forward2.post_layer_norm", "ffn_post_norm_1"),
    ("feed_forward2.ffw_layer_1", "ffn_up_1"),
    ("feed_forward2.ffw_layer_2", "ffn_down_1"),
    ("lconv1d.pre_layer_norm", "conv_norm"),
    ("lconv1d.linear_start", "conv_pw1"),
    ("lconv1d.depthwise_conv1d", "conv_dw"),
    ("lconv1d.conv_norm", "norm_conv"),
    ("lconv1d.linear_end", "conv_pw2"),
];

/// Whether a checkpoint tensor belongs to the audio side (llama.cpp's `is_audio_tensor`).
pub fn is_audio(hf: &str) -> bool {
    hf.contains("audio_tower") || hf.contains("embed_audio")
}

/// Whether a checkpoint tensor belongs to either tower or its projector.
pub fn is_tower(hf: &str) -> bool {
    let rest = hf.strip_prefix("model.").unwrap_or(hf);
    [
        "vision_tower.",
        "embed_vision.",
        "audio_tower.",
        "embed_audio.",
    ]
    .iter()
    .any(|p| rest.starts_with(p))
}

/// The GGUF name llama.cpp gives a tower tensor of the released layout (`model.vision_tower.*`,
/// `model.audio_tower.*`, `model.embed_vision.*`, `model.embed_audio.*`), or `None` for a name
/// its converter cannot map (it stops there too).
pub fn gguf_name(hf: &str) -> Option<String> {
    let rest = hf.strip_prefix("model.")?;
    // The clipped linears keep their weight under `.linear.weight`; llama.cpp drops `.linear`.
    let mut rest = rest.replace(".linear.", ".");
    if BARE_PARAMS.iter().any(|p| rest.ends_with(p)) {
        rest.push_str(".weight");
    }
    // gguf-py looks the whole name up first, then the name without each suffix.
    for (path, g) in VISION_GLOBAL.iter().chain(AUDIO_GLOBAL) {
        if rest == *path {
            return Some((*g).to_string());
        }
    }
    let (module, suffix) = split_suffix(&rest);
    for (path, g) in VISION_GLOBAL.iter().chain(AUDIO_GLOBAL) {
        if module == *path {
            return Some(format!("{g}{suffix}"));
        }
    }
    if let Some(tail) = rest.strip_prefix("vision_tower.encoder.layers.") {
        return layer_name(tail, VISION_LAYER, "v.blk");
    }
    if let Some(tail) = rest.strip_prefix("audio_tower.layers.") {
        return layer_name(tail, AUDIO_LAYER, "a.blk");
    }
    if let Some(tail) = rest.strip_prefix("audio_tower.subsample_conv_projection.layer") {
        let (n, part) = tail.split_once('.')?;
        n.parse::<usize>().ok()?;
        let (m, s) = split_suffix(part);
        let (_, g) = AUDIO_CONV.iter().find(|(p, _)| *p == m)?;
        return Some(format!("a.conv1d.{n}{g}{s}"));
    }
    None
}

/// `a.b.c.weight` → (`a.b.c`, `.weight`) for the suffixes gguf-py tries; (`name`, "") otherwise.
fn split_suffix(name: &str) -> (&str, &str) {
    for s in SUFFIXES {
        if let Some(m) = name.strip_suffix(s) {
            return (m, &name[m.len()..]);
        }
    }
    (name, "")
}

fn layer_name(tail: &str, table: &[(&str, &str)], prefix: &str) -> Option<String> {
    let (n, part) = tail.split_once('.')?;
    n.parse::<usize>().ok()?;
    if let Some((_, g)) = table.iter().find(|(p, _)| *p == part) {
        return Some(format!("{prefix}.{n}.{g}"));
    }
    let (m, s) = split_suffix(part);
    let (_, g) = table.iter().find(|(p, _)| *p == m)?;
    Some(format!("{prefix}.{n}.{g}{s}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_like_llama_cpp() {
        for (hf, g) in [
            (
                "model.audio_tower.layers.0.feed_forward1.ffw_layer_1.linear.weight",
                "a.blk.0.ffn_up.weight",
            ),
            (
                "model.audio_tower.layers.3.lconv1d.linear_end.output_min",
                "a.blk.3.conv_pw2.output_min",
            ),
            (
                "model.audio_tower.layers.0.self_attn.per_dim_scale",
                "a.blk.0.per_dim_scale.weight",
            ),
            (
                "model.audio_tower.subsample_conv_projection.layer1.norm.weight",
                "a.conv1d.1.norm.weight",
            ),
            (
                "model.audio_tower.subsample_conv_projection.input_proj_linear.weight",
                "a.input_projection.weight",
            ),
            (
                "model.audio_tower.output_proj.bias",
                "a.pre_encode.out.bias",
            ),
            (
                "model.embed_audio.embedding_projection.weight",
                "mm.a.input_projection.weight",
            ),
            (
                "model.vision_tower.encoder.layers.2.self_attn.o_proj.linear.weight",
                "v.blk.2.attn_out.weight",
            ),
            (
                "model.vision_tower.encoder.layers.0.pre_feedforward_layernorm.weight",
                "v.blk.0.ln2.weight",
            ),
            (
                "model.vision_tower.encoder.layers.0.layer_scalar",
                "v.blk.0.out_scale.weight",
            ),
            (
                "model.vision_tower.patch_embedder.position_embedding_table",
                "v.position_embd.weight",
            ),
            ("model.vision_tower.std_bias", "v.std_bias"),
        ] {
            assert_eq!(gguf_name(hf).as_deref(), Some(g), "{hf}");
            assert!(is_tower(hf));
        }
        assert_eq!(
            gguf_name("model.vision_tower.encoder.layers.x.mlp.up_proj.weight"),
            None
        );
        assert_eq!(gguf_name("model.audio_tower.mystery.weight"), None);
        assert!(!is_tower("model.language_model.embed_tokens.weight"));
    }
}
