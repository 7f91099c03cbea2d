//! One decoder layer of Gemma 4 (transformers' `Gemma4TextDecoderLayer`): its weights and its
//! forward step over a whole
//! sequence. The same code serves the in-memory and the layer-streaming modes, which is why
//! their outputs are byte-identical.

use std::collections::BTreeMap;

use convert::{Gemma4Config, LayerType};

use crate::attention::{attend, AttnShape};
use crate::error::Result;
use crate::linear::linear;
use crate::moe::MoeWeights;
use crate::observer::{LinearSite, Observer};
use crate::ops::{add_assign, geglu, rms_norm_rows, scale};
use crate::rope::RopeTable;
use crate::weights::{matrix_of, vector_of, Matrix, Weights};

/// K/V projections of a layer that computes its own K/V.
pub struct KvWeights<'w> {
    pub k: Matrix<'w>,
    /// `None` on full layers with `attention_k_eq_v`: V is the raw K projection.
    pub v: Option<Matrix<'w>>,
    pub k_norm: Vec<f32>,
}

/// A GeGLU MLP: `down(gelu(gate(x)) * up(x))`.
pub struct MlpWeights<'w> {
    pub gate: Matrix<'w>,
    pub up: Matrix<'w>,
    pub down: Matrix<'w>,
}

/// Per-layer-input (PLE) weights of E2B / E4B.
pub struct PleLayerWeights<'w> {
    pub gate: Matrix<'w>,
    pub proj: Matrix<'w>,
    pub norm: Vec<f32>,
}

/// Every weight of decoder layer `index`.
pub struct LayerWeights<'w> {
    pub index: usize,
    pub input_norm: Vec<f32>,
    pub q: Matrix<'w>,
    pub q_norm: Vec<f32>,
    /// `None` on KV-shared layers.
    pub kv: Option<KvWeights<'w>>,
    pub o: Matrix<'w>,
    pub post_attn_norm: Vec<f32>,
    pub pre_ff_norm: Vec<f32>,
    pub post_ff_norm: Vec<f32>,
    pub mlp: MlpWeights<'w>,
    pub moe: Option<MoeWeights<'w>>,
    pub ple: Option<PleLayerWeights<'w>>,
    pub layer_scalar: f32,
}

/// Canonical name of a per-layer tensor.
pub fn lname(l: usize, suffix: &str) -> String {
    format!("layers.{l}.{suffix}")
}

impl<'w> LayerWeights<'w> {
    /// Resolves (and shape-checks against the config) every weight layer `l` reads.
    pub fn load(src: &'w dyn Weights, l: usize) -> Result<Self> {
        let cfg = src.config();
        let b = cfg.hidden_size;
        let hd = cfg.head_dim_of(l);
        let hq = cfg.num_attention_heads;
        let hkv = cfg.num_kv_heads(l);
        let n = |s: &str| lname(l, s);
        let kv = if cfg.is_kv_shared(l) {
            None
        } else {
            Some(KvWeights {
                k: matrix_of(src, &n("self_attn.k_proj.weight"), hkv * hd, b)?,
                v: if cfg.v_is_k(l) {
                    None
                } else {
                    Some(matrix_of(src, &n("self_attn.v_proj.weight"), hkv * hd, b)?)
                },
                k_norm: vector_of(src, &n("self_attn.k_norm.weight"), hd)?,
            })
        };
        let inter = cfg.intermediate_size_of(l);
        let ple = if cfg.has_per_layer_inputs() {
            let p = cfg.hidden_size_per_layer_input;
            Some(PleLayerWeights {
                gate: matrix_of(src, &n("per_layer_input_gate.weight"), p, b)?,
                proj: matrix_of(src, &n("per_layer_projection.weight"), b, p)?,
                norm: vector_of(src, &n("post_per_layer_input_norm.weight"), b)?,
            })
        } else {
            None
        };
        Ok(LayerWeights {
            index: l,
            input_norm: vector_of(src, &n("input_layernorm.weight"), b)?,
            q: matrix_of(src, &n("self_attn.q_proj.weight"), hq * hd, b)?,
            q_norm: vector_of(src, &n("self_attn.q_norm.weight"), hd)?,
            kv,
            o: matrix_of(src, &n("self_attn.o_proj.weight"), b, hq * hd)?,
            post_attn_norm: vector_of(src, &n("post_attention_layernorm.weight"), b)?,
            pre_ff_norm: vector_of(src, &n("pre_feedforward_layernorm.weight"), b)?,
            post_ff_norm: vector_of(src, &n("post_feedforward_layernorm.weight"), b)?,
            mlp: MlpWeights {
                gate: matrix_of(src, &n("mlp.gate_proj.weight"), inter, b)?,
                up: matrix_of(src, &n("mlp.up_proj.weight"), inter, b)?,
                down: matrix_of(src, &n("mlp.down_proj.weight"), b, inter)?,
            },
            moe: if cfg.enable_moe_block {
                Some(MoeWeights::load(src, l)?)
            } else {
                None
            },
            ple,
            layer_scalar: vector_of(src, &n("layer_scalar"), 1)?[0],
        })
    }

    /// Canonical names of every tensor [`LayerWeights::load`] reads for layer `l` (what
    /// streaming mode releases after the layer).
    pub fn tensor_names(cfg: &Gemma4Config, l: usize) -> Vec<String> {
        let mut names: Vec<String> = [
            "input_layernorm.weight",
            "self_attn.q_proj.weight",
            "self_attn.q_norm.weight",
            "self_attn.o_proj.weight",
            "post_attention_layernorm.weight",
            "pre_feedforward_layernorm.weight",
            "post_feedforward_layernorm.weight",
            "mlp.gate_proj.weight",
            "mlp.up_proj.weight",
            "mlp.down_proj.weight",
            "layer_scalar",
        ]
        .iter()
        .map(|s| lname(l, s))
        .collect();
        if !cfg.is_kv_shared(l) {
            names.push(lname(l, "self_attn.k_proj.weight"));
            names.push(lname(l, "self_attn.k_norm.weight"));
            if !cfg.v_is_k(l) {
                names.push(lname(l, "self_attn.v_proj.weight"));
            }
        }
        if cfg.has_per_layer_inputs() {
            for s in [
                "per_layer_input_gate.weight",
                "per_layer_projection.weight",
                "post_per_layer_input_norm.weight",
            ] {
                names.push(lname(l, s));
            }
        }
        if cfg.enable_moe_block {
            names.extend(MoeWeights::tensor_names(l));
        }
        names
    }
}

/// Post-norm, post-RoPE K and V of a layer, `[T, Hkv*hd]` each, kept for KV-shared layers.
pub type KvPair = (Vec<f32>, Vec<f32>);

/// What a layer step needs besides its weights.
pub struct LayerCtx<'a> {
    pub cfg: &'a Gemma4Config,
    pub t: usize,
    pub rope_sliding: &'a RopeTable,
    pub rope_full: &'a RopeTable,
    /// PLE inputs `[T, L, P]` (E models).
    pub ple: Option<&'a [f32]>,
    /// K/V of source layers, by layer index, for the KV-shared layers after them.
    pub kv_stash: &'a mut BTreeMap<usize, KvPair>,
    /// Whether this layer's K/V must be stashed (some shared layer reads it).
    pub stash_kv: bool,
    pub observer: &'a mut dyn Observer,
}

/// Tells the observer about the input of a linear layer that sees every token.
pub(crate) fn observe(
    obs: &mut dyn Observer,
    layer: Option<usize>,
    weight: &str,
    x: &[f32],
    t: usize,
) {
    let cols = x.len().checked_div(t).unwrap_or(0);
    obs.linear_input(
        &LinearSite {
            layer,
            weight,
            expert: None,
            token_rows: None,
        },
        x,
        t,
        cols,
    );
}

/// The dense GeGLU MLP on `x` `[T, B]`, reporting gate/up/down inputs to the observer.
pub(crate) fn mlp(
    w: &MlpWeights<'_>,
    x: &[f32],
    t: usize,
    layer: usize,
    obs: &mut dyn Observer,
) -> Result<Vec<f32>> {
    observe(obs, Some(layer), w.gate.name(), x, t);
    observe(obs, Some(layer), w.up.name(), x, t);
    let mut g = linear(x, t, w.gate.as_ref())?;
    let u = linear(x, t, w.up.as_ref())?;
    geglu(&mut g, &u);
    observe(obs, Some(layer), w.down.name(), &g, t);
    linear(&g, t, w.down.as_ref())
}

/// Runs decoder layer `w` on the residual stream `h` `[T, B]` in place.
pub fn run_layer(w: &LayerWeights<'_>, h: &mut [f32], ctx: &mut LayerCtx<'_>) -> Result<()> {
    let cfg = ctx.cfg;
    let (l, t, b) = (w.index, ctx.t, cfg.hidden_size);
    let eps = cfg.rms_norm_eps as f32;
    let hd = cfg.head_dim_of(l);
    let hq = cfg.num_attention_heads;
    let hkv = cfg.num_kv_heads(l);
    let rope = match cfg.layer_type(l) {
        LayerType::Sliding => ctx.rope_sliding,
        LayerType::Full => ctx.rope_full,
    };

    // Attention block.
    let mut x = h.to_vec();
    rms_norm_rows(&mut x, b, Some(&w.input_norm), eps);
    observe(ctx.observer, Some(l), w.q.name(), &x, t);
    let mut q = linear(&x, t, w.q.as_ref())?;
    rms_norm_rows(&mut q, hd, Some(&w.q_norm), eps);
    rope.apply(&mut q, hq);
    let computed;
    let (k, v): (&[f32], &[f32]) = match &w.kv {
        Some(kv) => {
            observe(ctx.observer, Some(l), kv.k.name(), &x, t);
            let k_raw = linear(&x, t, kv.k.as_ref())?;
            let mut v = match &kv.v {
                Some(vm) => {
                    observe(ctx.observer, Some(l), vm.name(), &x, t);
                    linear(&x, t, vm.as_ref())?
                }
                None => k_raw.clone(),
            };
            let mut k = k_raw;
            rms_norm_rows(&mut k, hd, Some(&kv.k_norm), eps);
            rope.apply(&mut k, hkv);
            rms_norm_rows(&mut v, hd, None, eps);
            if ctx.stash_kv {
                ctx.kv_stash.insert(l, (k.clone(), v.clone()));
            }
            computed = (k, v);
            (&computed.0, &computed.1)
        }
        None => {
            let src = cfg.kv_source_layer(l);
            let pair = src.and_then(|s| ctx.kv_stash.get(&s)).ok_or_else(|| {
                crate::error::VerifyError::Input(format!(
                    "layer {l} shares K/V with layer {src:?}, which has not run"
                ))
            })?;
            (&pair.0, &pair.1)
        }
    };
    let window = match cfg.layer_type(l) {
        LayerType::Sliding => Some(cfg.sliding_window),
        LayerType::Full => None,
    };
    let o = attend(
        &q,
        k,
        v,
        AttnShape {
            t,
            hq,
            hkv,
            hd,
            window,
        },
    );
    drop(q);
    observe(ctx.observer, Some(l), w.o.name(), &o, t);
    let mut a = linear(&o, t, w.o.as_ref())?;
    rms_norm_rows(&mut a, b, Some(&w.post_attn_norm), eps);
    add_assign(h, &a);

    // Feed-forward block.
    let mut x = h.to_vec();
    rms_norm_rows(&mut x, b, Some(&w.pre_ff_norm), eps);
    let mut f = mlp(&w.mlp, &x, t, l, ctx.observer)?;
    if let Some(moe) = &w.moe {
        rms_norm_rows(&mut f, b, Some(&moe.post_norm_1), eps);
        let f2 = moe.forward(h, t, cfg, l, ctx.observer)?;
        add_assign(&mut f, &f2);
    }
    rms_norm_rows(&mut f, b, Some(&w.post_ff_norm), eps);
    add_assign(h, &f);

    // Per-layer input (E2B / E4B).
    if let (Some(pw), Some(ple)) = (&w.ple, ctx.ple) {
        let p = cfg.hidden_size_per_layer_input;
        let nl = cfg.num_hidden_layers;
        observe(ctx.observer, Some(l), pw.gate.name(), h, t);
        let mut g = linear(h, t, pw.gate.as_ref())?;
        let mut pl = vec![0f32; t * p];
        for (i, row) in pl.chunks_mut(p).enumerate() {
            row.copy_from_slice(&ple[(i * nl + l) * p..(i * nl + l + 1) * p]);
        }
        geglu(&mut g, &pl);
        observe(ctx.observer, Some(l), pw.proj.name(), &g, t);
        let mut y = linear(&g, t, pw.proj.as_ref())?;
        rms_norm_rows(&mut y, b, Some(&pw.norm), eps);
        add_assign(h, &y);
    }
    scale(h, w.layer_scalar);
    Ok(())
}
