//! The Gemma 4 text decoder as an ONNX graph (spec §2.3-2.5), one graph for prefill and
//! token-by-token decoding, in onnxruntime-genai's decoder naming:
//!
//! - inputs `input_ids`, `attention_mask` (`[batch, total_sequence_length]`), `position_ids`,
//!   and `past_key_values.{l}.key` / `.value` (`[batch, kv_heads_l, past_sequence_length,
//!   head_dim_l]`) for every layer `l` that computes its own K/V;
//! - outputs `logits` (`[batch, sequence_length, vocab]`, after the softcap) and
//!   `present.{l}.key` / `.value` (past and new K/V concatenated).
//!
//! KV-shared layers (E2B/E4B) have no cache of their own: they attend over their source
//! layer's present K/V, exactly as the reference forward pass reads its stash. Key `j` of the
//! cache is position `j` (no left padding), so a query at position `p` sees keys `j <= p`
//! (and, on sliding layers, `j > p - window`) whose `attention_mask` is 1.
//!
//! The residual stream is kept as `[batch * sequence, hidden]`, so every linear layer is one
//! 2-D product; the head reuses the embedding table (tied) through `Gemm` with `transB`.

use onnx_protobuf::tensor_proto::DataType;

use super::graph::{Attr, Dim, GraphBuilder};
use super::linear::{Experts, LinearWriter, Weight};
use crate::checkpoint::Checkpoint;
use crate::config::{Gemma4Config, LayerType, RopeParams};
use crate::error::{ConvertError, Result};
use crate::rope::rope_inv_freq;

/// Graph input and output names.
pub const INPUT_IDS: &str = "input_ids";
pub const ATTENTION_MASK: &str = "attention_mask";
pub const POSITION_IDS: &str = "position_ids";
pub const LOGITS: &str = "logits";

/// `past_key_values.{l}.key` / `.value`.
pub fn past_name(l: usize, kind: &str) -> String {
    format!("past_key_values.{l}.{kind}")
}

/// `present.{l}.key` / `.value`.
pub fn present_name(l: usize, kind: &str) -> String {
    format!("present.{l}.{kind}")
}

/// cos and sin `[batch, seq, 1, hd/2]` of one RoPE setup.
struct Rope {
    cos: String,
    sin: String,
    half: usize,
}

/// Present K and V of a layer, `[batch, kv_heads, total, hd]`.
#[derive(Clone)]
struct Kv {
    k: String,
    v: String,
}

/// Builds the decoder graph, writing each weight as it is reached.
pub struct Decoder<'a, 'd> {
    pub g: GraphBuilder<'d>,
    ckpt: &'a Checkpoint,
    cfg: &'a Gemma4Config,
    lin: &'a mut dyn LinearWriter,
    eps: String,
    /// `Shape(input_ids)`: `[batch, seq]`.
    bs: String,
}

impl<'a, 'd> Decoder<'a, 'd> {
    pub fn new(
        g: GraphBuilder<'d>,
        ckpt: &'a Checkpoint,
        lin: &'a mut dyn LinearWriter,
    ) -> Result<Self> {
        let cfg = ckpt.config();
        let mut d = Decoder {
            g,
            ckpt,
            cfg,
            lin,
            eps: String::new(),
            bs: String::new(),
        };
        d.eps = d.g.float(cfg.rms_norm_eps as f32)?;
        Ok(d)
    }

    fn file_err(&self, tensor: &str, message: String) -> ConvertError {
        ConvertError::tensor(self.ckpt.dir(), self.ckpt.hf_name(tensor), message)
    }

    /// Reads `name` as f32 after checking its shape (3-D expert stacks compare flattened).
    fn read(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let t = self.ckpt.tensor(name)?;
        let numel: usize = shape.iter().product();
        let same = t.shape == shape
            || (shape.len() == 1 && t.numel() == numel && numel == 1)
            || (t.shape.len() == 3
                && shape.len() == 2
                && t.shape[0] * t.shape[1] == shape[0]
                && t.shape[2] == shape[1]);
        if !same {
            return Err(self.file_err(
                name,
                format!("shape {:?} but the config needs {shape:?}", t.shape),
            ));
        }
        t.to_f32()
    }

    /// A small f32 weight (norms, scalars) as an initializer under its canonical name.
    fn vector(&mut self, name: &str, len: usize) -> Result<String> {
        let v = self.read(name, &[len])?;
        let bytes = super::graph::f32_bytes(&v);
        self.g
            .initializer(name, DataType::FLOAT, &[len as i64], &bytes)?;
        Ok(name.to_string())
    }

    /// `x [N, cols] @ W.T` for the `[rows, cols]` weight `name`.
    fn linear(&mut self, x: &str, name: &str, rows: usize, cols: usize) -> Result<String> {
        let w = self.read(name, &[rows, cols])?;
        let w = Weight {
            name,
            rows,
            cols,
            values: &w,
        };
        self.lin.linear(&mut self.g, x, w)
    }

    /// RMSNorm over the last axis: `x / sqrt(mean(x^2) + eps) * w` (no `1 + w`).
    fn rms(&mut self, x: &str, w: Option<&str>) -> Result<String> {
        let axes = self.g.ints(&[-1])?;
        let sq = self.g.op("Mul", &[x, x], vec![]);
        let ms = self.g.op(
            "ReduceMean",
            &[&sq, &axes],
            vec![("keepdims", Attr::Int(1))],
        );
        let eps = self.eps.clone();
        let d = self.g.op("Add", &[&ms, &eps], vec![]);
        let r = self.g.op("Sqrt", &[&d], vec![]);
        let y = self.g.op("Div", &[x, &r], vec![]);
        Ok(match w {
            Some(w) => self.g.op("Mul", &[&y, w], vec![]),
            None => y,
        })
    }

    fn scale(&mut self, x: &str, s: f32) -> Result<String> {
        let c = self.g.float(s)?;
        Ok(self.g.op("Mul", &[x, &c], vec![]))
    }

    fn reshape(&mut self, x: &str, shape: &[i64]) -> Result<String> {
        let s = self.g.ints(shape)?;
        Ok(self.g.op("Reshape", &[x, &s], vec![]))
    }

    fn gelu(&mut self, x: &str) -> String {
        self.g
            .op("Gelu", &[x], vec![("approximate", Attr::Str("tanh"))])
    }

    /// Declares the graph's inputs and outputs.
    fn declare_io(&mut self) {
        let cfg = self.cfg;
        let (b, s, t, p) = (
            Dim::Named("batch_size"),
            Dim::Named("sequence_length"),
            Dim::Named("total_sequence_length"),
            Dim::Named("past_sequence_length"),
        );
        self.g
            .input(INPUT_IDS, DataType::INT64, &[b.clone(), s.clone()]);
        self.g
            .input(ATTENTION_MASK, DataType::INT64, &[b.clone(), t.clone()]);
        self.g
            .input(POSITION_IDS, DataType::INT64, &[b.clone(), s.clone()]);
        for l in (0..cfg.num_hidden_layers).filter(|&l| !cfg.is_kv_shared(l)) {
            let dims = |len: &Dim| {
                [
                    b.clone(),
                    Dim::Fixed(cfg.num_kv_heads(l)),
                    len.clone(),
                    Dim::Fixed(cfg.head_dim_of(l)),
                ]
            };
            for kind in ["key", "value"] {
                self.g
                    .input(&past_name(l, kind), DataType::FLOAT, &dims(&p));
            }
        }
        self.g.output(
            LOGITS,
            DataType::FLOAT,
            &[b.clone(), s.clone(), Dim::Fixed(cfg.vocab_size)],
        );
        for l in (0..cfg.num_hidden_layers).filter(|&l| !cfg.is_kv_shared(l)) {
            let dims = [
                b.clone(),
                Dim::Fixed(cfg.num_kv_heads(l)),
                t.clone(),
                Dim::Fixed(cfg.head_dim_of(l)),
            ];
            for kind in ["key", "value"] {
                self.g
                    .output(&present_name(l, kind), DataType::FLOAT, &dims);
            }
        }
    }

    /// The whole graph.
    pub fn build(&mut self) -> Result<()> {
        let cfg = self.cfg;
        let (hsz, v) = (cfg.hidden_size, cfg.vocab_size);
        self.declare_io();
        self.bs = self.g.op("Shape", &[INPUT_IDS], vec![]);

        // Embedding, scaled by the f32 sqrt(hidden).
        let embed = "embed_tokens.weight";
        let e = self.read(embed, &[v, hsz])?;
        let rows = self.lin.embedding(
            &mut self.g,
            INPUT_IDS,
            Weight {
                name: embed,
                rows: v,
                cols: hsz,
                values: &e,
            },
        )?;
        drop(e);
        let h0 = self.reshape(&rows, &[-1, hsz as i64])?;
        let mut h = self.scale(&h0, (hsz as f64).sqrt() as f32)?;

        let ple = if cfg.has_per_layer_inputs() {
            Some(self.per_layer_inputs(&h)?)
        } else {
            None
        };
        let rope_s = self.rope(&cfg.rope_sliding, cfg.head_dim)?;
        let rope_f = self.rope(&cfg.rope_full, cfg.global_head_dim)?;
        let mask_s = self.mask(Some(cfg.sliding_window))?;
        let mask_f = self.mask(None)?;

        let mut kv: Vec<Option<Kv>> = vec![None; cfg.num_hidden_layers];
        for l in 0..cfg.num_hidden_layers {
            let (rope, mask) = match cfg.layer_type(l) {
                LayerType::Sliding => (&rope_s, &mask_s),
                LayerType::Full => (&rope_f, &mask_f),
            };
            let (rope, mask) = (
                Rope {
                    cos: rope.cos.clone(),
                    sin: rope.sin.clone(),
                    half: rope.half,
                },
                mask.clone(),
            );
            h = self.layer(l, &h, &rope, &mask, ple.as_deref(), &mut kv)?;
        }

        let w = self.vector("norm.weight", hsz)?;
        let hn = self.rms(&h, Some(&w))?;
        let logits = self.lin.head(&mut self.g, &hn, embed)?;
        let logits = match cfg.final_logit_softcapping {
            Some(cap) => {
                let c = self.g.float(cap as f32)?;
                let q = self.g.op("Div", &[&logits, &c], vec![]);
                let t = self.g.op("Tanh", &[&q], vec![]);
                self.g.op("Mul", &[&t, &c], vec![])
            }
            None => logits,
        };
        let vdim = self.g.ints(&[v as i64])?;
        let bs = self.bs.clone();
        let shape = self
            .g
            .op("Concat", &[&bs, &vdim], vec![("axis", Attr::Int(0))]);
        self.g
            .node_named("", "Reshape", &[&logits, &shape], &[LOGITS.into()], vec![]);
        Ok(())
    }

    /// PLE inputs `[N, L, P]`: `(rmsnorm(h0 W^T * B^-0.5) + E_ple[ids] * sqrt(P)) * 2^-0.5`.
    fn per_layer_inputs(&mut self, h0: &str) -> Result<String> {
        let cfg = self.cfg;
        let (nl, p, b) = (
            cfg.num_hidden_layers,
            cfg.hidden_size_per_layer_input,
            cfg.hidden_size,
        );
        let name = "embed_tokens_per_layer.weight";
        let t = self.ckpt.tensor(name)?;
        let vp = t.shape.first().copied().unwrap_or(0);
        drop(t);

        // transformers maps ids outside the per-layer vocabulary to 0.
        let ids = if vp < cfg.vocab_size {
            let lim = self.g.int(vp as i64)?;
            let zero = self.g.int(0)?;
            let inside = self.g.op("Less", &[INPUT_IDS, &lim], vec![]);
            self.g.op("Where", &[&inside, INPUT_IDS, &zero], vec![])
        } else {
            INPUT_IDS.to_string()
        };
        let e = self.read(name, &[vp, nl * p])?;
        let tok = self.lin.embedding(
            &mut self.g,
            &ids,
            Weight {
                name,
                rows: vp,
                cols: nl * p,
                values: &e,
            },
        )?;
        drop(e);
        let tok = self.reshape(&tok, &[-1, nl as i64, p as i64])?;
        let tok = self.scale(&tok, (p as f64).sqrt() as f32)?;
        let proj = self.linear(h0, "per_layer_model_projection.weight", nl * p, b)?;
        let proj = self.scale(&proj, (b as f64).powf(-0.5) as f32)?;
        let proj = self.reshape(&proj, &[-1, nl as i64, p as i64])?;
        let w = self.vector("per_layer_projection_norm.weight", p)?;
        let proj = self.rms(&proj, Some(&w))?;
        let sum = self.g.op("Add", &[&proj, &tok], vec![]);
        self.scale(&sum, 0.5f64.sqrt() as f32)
    }

    /// cos/sin `[batch, seq, 1, hd/2]` from `position_ids`.
    fn rope(&mut self, params: &RopeParams, hd: usize) -> Result<Rope> {
        let inv = rope_inv_freq(params, hd).map_err(|m| {
            ConvertError::config(
                &self.ckpt.dir().join("config.json").display().to_string(),
                m,
            )
        })?;
        let inv = self.g.floats(&inv)?;
        let pos = self.g.op(
            "Cast",
            &[POSITION_IDS],
            vec![("to", Attr::Int(DataType::FLOAT as i64))],
        );
        let ax = self.g.ints(&[2])?;
        let pos = self.g.op("Unsqueeze", &[&pos, &ax], vec![]);
        let freqs = self.g.op("Mul", &[&pos, &inv], vec![]);
        let freqs = self.g.op("Unsqueeze", &[&freqs, &ax], vec![]);
        Ok(Rope {
            cos: self.g.op("Cos", &[&freqs], vec![]),
            sin: self.g.op("Sin", &[&freqs], vec![]),
            half: hd / 2,
        })
    }

    /// Rotates `x` `[batch, seq, heads, hd]`: `x * cos + rotate_half(x) * sin`.
    fn apply_rope(&mut self, x: &str, r: &Rope) -> Result<String> {
        let split = self.g.ints(&[r.half as i64, r.half as i64])?;
        let parts = self
            .g
            .node("", "Split", &[x, &split], 2, vec![("axis", Attr::Int(-1))]);
        let (x1, x2) = (&parts[0], &parts[1]);
        let c1 = self.g.op("Mul", &[x1, &r.cos], vec![]);
        let s1 = self.g.op("Mul", &[x2, &r.sin], vec![]);
        let c2 = self.g.op("Mul", &[x2, &r.cos], vec![]);
        let s2 = self.g.op("Mul", &[x1, &r.sin], vec![]);
        let o1 = self.g.op("Sub", &[&c1, &s1], vec![]);
        let o2 = self.g.op("Add", &[&c2, &s2], vec![]);
        Ok(self
            .g
            .op("Concat", &[&o1, &o2], vec![("axis", Attr::Int(-1))]))
    }

    /// Additive attention mask `[batch, 1, 1, seq, total]`: 0 where key `j` is visible from the
    /// query at position `p` (`j <= p`, `j > p - window` on sliding layers, `attention_mask` 1),
    /// f32 min elsewhere (what transformers adds; the softmax then gives exactly 0).
    fn mask(&mut self, window: Option<usize>) -> Result<String> {
        let shape = self.g.op("Shape", &[ATTENTION_MASK], vec![]);
        let one = self.g.ints(&[1])?;
        let two = self.g.ints(&[2])?;
        let total = self.g.op("Slice", &[&shape, &one, &two], vec![]);
        let zero_s = self.g.int(0)?;
        let one_s = self.g.int(1)?;
        let sq = self.g.ints(&[0])?;
        let total = self.g.op("Squeeze", &[&total, &sq], vec![]);
        let kpos = self.g.op("Range", &[&zero_s, &total, &one_s], vec![]);
        // query positions [b, 1, 1, s, 1]
        let ax = self.g.ints(&[1, 2, 4])?;
        let qpos = self.g.op("Unsqueeze", &[POSITION_IDS, &ax], vec![]);
        let mut visible = self.g.op("LessOrEqual", &[&kpos, &qpos], vec![]);
        if let Some(w) = window {
            let w = self.g.int(w as i64)?;
            let lo = self.g.op("Sub", &[&qpos, &w], vec![]);
            let inside = self.g.op("Greater", &[&kpos, &lo], vec![]);
            visible = self.g.op("And", &[&visible, &inside], vec![]);
        }
        let am = self.g.op(
            "Cast",
            &[ATTENTION_MASK],
            vec![("to", Attr::Int(DataType::BOOL as i64))],
        );
        let ax = self.g.ints(&[1, 2, 3])?;
        let am = self.g.op("Unsqueeze", &[&am, &ax], vec![]);
        let visible = self.g.op("And", &[&visible, &am], vec![]);
        let zero = self.g.float(0.0)?;
        let min = self.g.float(f32::MIN)?;
        Ok(self.g.op("Where", &[&visible, &zero, &min], vec![]))
    }

    /// `[N, heads*hd]` → `[batch, seq, heads, hd]`.
    fn split_heads(&mut self, x: &str, heads: usize, hd: usize) -> Result<String> {
        let tail = self.g.ints(&[heads as i64, hd as i64])?;
        let bs = self.bs.clone();
        let shape = self
            .g
            .op("Concat", &[&bs, &tail], vec![("axis", Attr::Int(0))]);
        Ok(self.g.op("Reshape", &[x, &shape], vec![]))
    }

    fn transpose(&mut self, x: &str, perm: &[i64]) -> String {
        self.g
            .op("Transpose", &[x], vec![("perm", Attr::Ints(perm.to_vec()))])
    }

    /// Decoder layer `l` on the residual stream `h` `[N, B]`; returns the new stream.
    fn layer(
        &mut self,
        l: usize,
        h: &str,
        rope: &Rope,
        mask: &str,
        ple: Option<&str>,
        kv: &mut [Option<Kv>],
    ) -> Result<String> {
        let cfg = self.cfg;
        let n = |s: &str| format!("layers.{l}.{s}");
        let b = cfg.hidden_size;
        let hd = cfg.head_dim_of(l);
        let hq = cfg.num_attention_heads;
        let hkv = cfg.num_kv_heads(l);
        if hkv == 0 || !hq.is_multiple_of(hkv) {
            return Err(ConvertError::config(
                &self.ckpt.dir().join("config.json").display().to_string(),
                format!("layer {l}: {hq} query heads are not a multiple of {hkv} KV heads"),
            ));
        }
        let group = hq / hkv;

        // Attention block.
        let w = self.vector(&n("input_layernorm.weight"), b)?;
        let x = self.rms(h, Some(&w))?;
        let q = self.linear(&x, &n("self_attn.q_proj.weight"), hq * hd, b)?;
        let q = self.split_heads(&q, hq, hd)?;
        let w = self.vector(&n("self_attn.q_norm.weight"), hd)?;
        let q = self.rms(&q, Some(&w))?;
        let q = self.apply_rope(&q, rope)?;
        let q = self.transpose(&q, &[0, 2, 1, 3]);
        let present = match cfg.kv_source_layer(l) {
            Some(src) => kv[src].clone().ok_or_else(|| {
                ConvertError::config(
                    &self.ckpt.dir().join("config.json").display().to_string(),
                    format!("layer {l} shares K/V with layer {src}, which has none"),
                )
            })?,
            None => {
                let k_raw = self.linear(&x, &n("self_attn.k_proj.weight"), hkv * hd, b)?;
                let k_raw = self.split_heads(&k_raw, hkv, hd)?;
                let v_raw = if cfg.v_is_k(l) {
                    k_raw.clone()
                } else {
                    let v = self.linear(&x, &n("self_attn.v_proj.weight"), hkv * hd, b)?;
                    self.split_heads(&v, hkv, hd)?
                };
                let w = self.vector(&n("self_attn.k_norm.weight"), hd)?;
                let k = self.rms(&k_raw, Some(&w))?;
                let k = self.apply_rope(&k, rope)?;
                let k = self.transpose(&k, &[0, 2, 1, 3]);
                let v = self.rms(&v_raw, None)?;
                let v = self.transpose(&v, &[0, 2, 1, 3]);
                let mut out = Vec::new();
                for (kind, new) in [("key", &k), ("value", &v)] {
                    let name = present_name(l, kind);
                    self.g.node_named(
                        "",
                        "Concat",
                        &[&past_name(l, kind), new],
                        std::slice::from_ref(&name),
                        vec![("axis", Attr::Int(2))],
                    );
                    out.push(name);
                }
                let pair = Kv {
                    k: out[0].clone(),
                    v: out[1].clone(),
                };
                kv[l] = Some(pair.clone());
                pair
            }
        };
        // GQA: query heads [b, hkv, group, s, hd] against K/V [b, hkv, 1, total, hd].
        let q5 = self.reshape(&q, &[0, hkv as i64, group as i64, -1, hd as i64])?;
        let ax = self.g.ints(&[2])?;
        let k5 = self.g.op("Unsqueeze", &[&present.k, &ax], vec![]);
        let v5 = self.g.op("Unsqueeze", &[&present.v, &ax], vec![]);
        let kt = self.transpose(&k5, &[0, 1, 2, 4, 3]);
        let scores = self.g.op("MatMul", &[&q5, &kt], vec![]);
        let scores = self.g.op("Add", &[&scores, mask], vec![]);
        let probs = self
            .g
            .op("Softmax", &[&scores], vec![("axis", Attr::Int(-1))]);
        let o = self.g.op("MatMul", &[&probs, &v5], vec![]);
        let o = self.reshape(&o, &[0, hq as i64, -1, hd as i64])?;
        let o = self.transpose(&o, &[0, 2, 1, 3]);
        let o = self.reshape(&o, &[-1, (hq * hd) as i64])?;
        let a = self.linear(&o, &n("self_attn.o_proj.weight"), b, hq * hd)?;
        let w = self.vector(&n("post_attention_layernorm.weight"), b)?;
        let a = self.rms(&a, Some(&w))?;
        let h = self.g.op("Add", &[h, &a], vec![]);

        // Feed-forward block.
        let w = self.vector(&n("pre_feedforward_layernorm.weight"), b)?;
        let x = self.rms(&h, Some(&w))?;
        let inter = cfg.intermediate_size_of(l);
        let mut f = self.mlp(&x, &n("mlp"), inter)?;
        if cfg.enable_moe_block {
            let w = self.vector(&n("post_feedforward_layernorm_1.weight"), b)?;
            f = self.rms(&f, Some(&w))?;
            let f2 = self.moe(l, &h)?;
            f = self.g.op("Add", &[&f, &f2], vec![]);
        }
        let w = self.vector(&n("post_feedforward_layernorm.weight"), b)?;
        let f = self.rms(&f, Some(&w))?;
        let mut h = self.g.op("Add", &[&h, &f], vec![]);

        // Per-layer input (E2B / E4B).
        if let Some(ple) = ple {
            let p = cfg.hidden_size_per_layer_input;
            let g = self.linear(&h, &n("per_layer_input_gate.weight"), p, b)?;
            let g = self.gelu(&g);
            let idx = self.g.int(l as i64)?;
            let pl = self
                .g
                .op("Gather", &[ple, &idx], vec![("axis", Attr::Int(1))]);
            let g = self.g.op("Mul", &[&g, &pl], vec![]);
            let y = self.linear(&g, &n("per_layer_projection.weight"), b, p)?;
            let w = self.vector(&n("post_per_layer_input_norm.weight"), b)?;
            let y = self.rms(&y, Some(&w))?;
            h = self.g.op("Add", &[&h, &y], vec![]);
        }
        let s = self.vector(&n("layer_scalar"), 1)?;
        Ok(self.g.op("Mul", &[&h, &s], vec![]))
    }

    /// GeGLU MLP `down(gelu(gate(x)) * up(x))` of the weights under `prefix`.
    fn mlp(&mut self, x: &str, prefix: &str, inter: usize) -> Result<String> {
        let b = self.cfg.hidden_size;
        let g = self.linear(x, &format!("{prefix}.gate_proj.weight"), inter, b)?;
        let u = self.linear(x, &format!("{prefix}.up_proj.weight"), inter, b)?;
        let g = self.gelu(&g);
        let a = self.g.op("Mul", &[&g, &u], vec![]);
        self.linear(&a, &format!("{prefix}.down_proj.weight"), b, inter)
    }

    /// The MoE expert branch (after its post-norm) for residual `h` `[N, B]` (spec §2.4):
    /// router softmax over every expert, exact top-k, renormalised and scaled per expert; the
    /// routing weights are scattered into a dense `[N, E]` matrix (0 for experts not chosen),
    /// every expert runs on every token, and the weighted outputs are summed. Standard
    /// operators only: each expert not chosen contributes exactly 0, at E/k times the
    /// arithmetic of a gathered implementation.
    fn moe(&mut self, l: usize, h: &str) -> Result<String> {
        let cfg = self.cfg;
        let n = |s: &str| format!("layers.{l}.{s}");
        let (b, e, i, k) = (
            cfg.hidden_size,
            cfg.num_experts,
            cfg.moe_intermediate_size,
            cfg.top_k_experts,
        );
        if k == 0 || k > e {
            return Err(ConvertError::config(
                &self.ckpt.dir().join("config.json").display().to_string(),
                format!("top_k_experts {k} is not between 1 and num_experts {e}"),
            ));
        }
        let z = self.rms(h, None)?;
        let rs = self.vector(&n("router.scale"), b)?;
        let z = self.g.op("Mul", &[&z, &rs], vec![]);
        let z = self.scale(&z, (b as f64).powf(-0.5) as f32)?;
        let logits = self.linear(&z, &n("router.proj.weight"), e, b)?;
        let probs = self
            .g
            .op("Softmax", &[&logits], vec![("axis", Attr::Int(-1))]);
        let kk = self.g.ints(&[k as i64])?;
        let top = self.g.node(
            "",
            "TopK",
            &[&probs, &kk],
            2,
            vec![
                ("axis", Attr::Int(-1)),
                ("largest", Attr::Int(1)),
                ("sorted", Attr::Int(1)),
            ],
        );
        let axes = self.g.ints(&[-1])?;
        let sum = self.g.op(
            "ReduceSum",
            &[&top[0], &axes],
            vec![("keepdims", Attr::Int(1))],
        );
        let wk = self.g.op("Div", &[&top[0], &sum], vec![]);
        let pes = self.vector(&n("router.per_expert_scale"), e)?;
        let scale = self.g.op("Gather", &[&pes, &top[1]], vec![]);
        let wk = self.g.op("Mul", &[&wk, &scale], vec![]);
        let shape = self.g.op("Shape", &[&probs], vec![]);
        let zeros = self.g.op("ConstantOfShape", &[&shape], vec![]);
        let dense = self.g.op(
            "ScatterElements",
            &[&zeros, &top[1], &wk],
            vec![("axis", Attr::Int(1))],
        );

        let w = self.vector(&n("pre_feedforward_layernorm_2.weight"), b)?;
        let xe = self.rms(h, Some(&w))?;
        let gu = self.linear(&xe, &n("experts.gate_up_proj"), e * 2 * i, b)?;
        let gu = self.reshape(&gu, &[-1, e as i64, 2 * i as i64])?;
        let split = self.g.ints(&[i as i64, i as i64])?;
        let parts = self.g.node(
            "",
            "Split",
            &[&gu, &split],
            2,
            vec![("axis", Attr::Int(-1))],
        );
        let gate = self.gelu(&parts[0]);
        let act = self.g.op("Mul", &[&gate, &parts[1]], vec![]);
        // [N, E, I] -> [E, N, I], one product per expert -> [E, N, B]
        let act = self.transpose(&act, &[1, 0, 2]);
        let name = n("experts.down_proj");
        let wd = self.read(&name, &[e * b, i])?;
        let down = Experts {
            count: e,
            weight: Weight {
                name: &name,
                rows: b,
                cols: i,
                values: &wd,
            },
        };
        let y = self.lin.experts(&mut self.g, &act, down)?;
        drop(wd);
        // weight [N, E] -> [E, N, 1], weighted sum over experts
        let wt = self.transpose(&dense, &[1, 0]);
        let ax = self.g.ints(&[2])?;
        let wt = self.g.op("Unsqueeze", &[&wt, &ax], vec![]);
        let y = self.g.op("Mul", &[&y, &wt], vec![]);
        let ax0 = self.g.ints(&[0])?;
        let f2 = self
            .g
            .op("ReduceSum", &[&y, &ax0], vec![("keepdims", Attr::Int(0))]);
        let w = self.vector(&n("post_feedforward_layernorm_2.weight"), b)?;
        self.rms(&f2, Some(&w))
    }
}
