//! The mixture-of-experts block of 26B-A4B, as transformers runs it: router norm and scale,
//! softmax over all experts, exact top-k, renormalise, per-expert scale, the routed GeGLU experts
//! and their post-norm. The dense MLP beside it lives in the layer.
//!
//! Parallel and still deterministic: the router runs over tokens in parallel (each token's
//! top-k is its own); tokens are grouped per expert in token order and the experts run in
//! parallel (each one's GEMMs are themselves deterministic, and an expert with few tokens is
//! one small task, not one per token); each token's row then sums its experts' weighted outputs
//! in ascending expert order, as transformers' `index_add_` loop does, with tokens in parallel.
//! None of it depends on the thread count.

use rayon::prelude::*;

use convert::Gemma4Config;

use crate::error::Result;
use crate::layer::{lname, observe};
use crate::linear::{linear, linear_rows};
use crate::observer::{LinearSite, Observer};
use crate::ops::{gelu_tanh, rms_norm_rows, MIN_ROWS};
use crate::weights::{matrix_of, vector_of, Matrix, Weights};

/// Router and expert weights of one MoE layer.
pub struct MoeWeights<'w> {
    /// `[E, B]`.
    pub router: Matrix<'w>,
    /// `[B]`, multiplies the normalised router input.
    pub router_scale: Vec<f32>,
    /// `[E]`, multiplies each selected expert's weight.
    pub per_expert_scale: Vec<f32>,
    /// `[E * 2I, B]`: per expert, rows `0..I` gate and `I..2I` up.
    pub gate_up: Matrix<'w>,
    /// `[E * B, I]`: per expert `[B, I]`.
    pub down: Matrix<'w>,
    pub pre_norm_2: Vec<f32>,
    pub post_norm_1: Vec<f32>,
    pub post_norm_2: Vec<f32>,
}

/// Routing of a sequence: per token, the chosen experts and their final weights.
#[derive(Clone, Debug, PartialEq)]
pub struct Routing {
    pub top_k: usize,
    /// `[T, k]` expert ids, highest probability first.
    pub index: Vec<usize>,
    /// `[T, k]` renormalised probabilities times the per-expert scale.
    pub weight: Vec<f32>,
}

impl<'w> MoeWeights<'w> {
    /// Resolves and shape-checks the MoE tensors of layer `l`.
    pub fn load(src: &'w dyn Weights, l: usize) -> Result<Self> {
        let cfg = src.config();
        let (b, e, i) = (cfg.hidden_size, cfg.num_experts, cfg.moe_intermediate_size);
        let n = |s: &str| lname(l, s);
        Ok(MoeWeights {
            router: matrix_of(src, &n("router.proj.weight"), e, b)?,
            router_scale: vector_of(src, &n("router.scale"), b)?,
            per_expert_scale: vector_of(src, &n("router.per_expert_scale"), e)?,
            gate_up: matrix_of(src, &n("experts.gate_up_proj"), e * 2 * i, b)?,
            down: matrix_of(src, &n("experts.down_proj"), e * b, i)?,
            pre_norm_2: vector_of(src, &n("pre_feedforward_layernorm_2.weight"), b)?,
            post_norm_1: vector_of(src, &n("post_feedforward_layernorm_1.weight"), b)?,
            post_norm_2: vector_of(src, &n("post_feedforward_layernorm_2.weight"), b)?,
        })
    }

    /// Canonical names of the MoE tensors of layer `l`.
    pub fn tensor_names(l: usize) -> Vec<String> {
        [
            "router.proj.weight",
            "router.scale",
            "router.per_expert_scale",
            "experts.gate_up_proj",
            "experts.down_proj",
            "pre_feedforward_layernorm_2.weight",
            "post_feedforward_layernorm_1.weight",
            "post_feedforward_layernorm_2.weight",
        ]
        .iter()
        .map(|s| lname(l, s))
        .collect()
    }

    /// Router: `softmax(proj(rmsnorm(h) * scale * B^-0.5))`, top-k, renormalised, scaled.
    pub fn route(
        &self,
        h: &[f32],
        t: usize,
        cfg: &Gemma4Config,
        l: usize,
        obs: &mut dyn Observer,
    ) -> Result<Routing> {
        let b = cfg.hidden_size;
        let k = cfg.top_k_experts;
        let ne = cfg.num_experts;
        let mut z = h.to_vec();
        rms_norm_rows(&mut z, b, None, cfg.rms_norm_eps as f32);
        let root = (b as f64).powf(-0.5) as f32;
        if b > 0 {
            z.par_chunks_mut(b).with_min_len(MIN_ROWS).for_each(|row| {
                for (v, s) in row.iter_mut().zip(&self.router_scale) {
                    *v = (*v * *s) * root;
                }
            });
        }
        observe(obs, Some(l), self.router.name(), &z, t);
        let logits = linear(&z, t, self.router.as_ref())?;
        let mut index = vec![0usize; t * k];
        let mut weight = vec![0f32; t * k];
        if ne > 0 && k > 0 {
            index
                .par_chunks_mut(k)
                .zip(weight.par_chunks_mut(k))
                .zip(logits.par_chunks(ne))
                .with_min_len(MIN_ROWS)
                .for_each(|((index, weight), row)| {
                    let probs = softmax(row);
                    // Exact top-k on the probabilities; ties go to the lower expert id.
                    let mut order: Vec<usize> = (0..ne).collect();
                    order.sort_by(|&a, &c| probs[c].total_cmp(&probs[a]).then(a.cmp(&c)));
                    let top = &order[..k];
                    let sum: f32 = top.iter().map(|&e| probs[e]).sum();
                    for ((&e, i), w) in top.iter().zip(index).zip(weight) {
                        *i = e;
                        *w = (probs[e] / sum) * self.per_expert_scale[e];
                    }
                });
        }
        Ok(Routing {
            top_k: k,
            index,
            weight,
        })
    }

    /// The expert branch `f2` (after its post-norm) for residual `h` `[T, B]`.
    pub fn forward(
        &self,
        h: &[f32],
        t: usize,
        cfg: &Gemma4Config,
        l: usize,
        obs: &mut dyn Observer,
    ) -> Result<Vec<f32>> {
        let b = cfg.hidden_size;
        let i = cfg.moe_intermediate_size;
        let eps = cfg.rms_norm_eps as f32;
        let routing = self.route(h, t, cfg, l, obs)?;
        let mut xe = h.to_vec();
        rms_norm_rows(&mut xe, b, Some(&self.pre_norm_2), eps);

        // Tokens (and their weights) per expert, in token order.
        let mut routed: Vec<(Vec<usize>, Vec<f32>)> =
            vec![(Vec::new(), Vec::new()); cfg.num_experts];
        for tok in 0..t {
            for s in 0..routing.top_k {
                let e = routing.index[tok * routing.top_k + s];
                routed[e].0.push(tok);
                routed[e].1.push(routing.weight[tok * routing.top_k + s]);
            }
        }
        let inputs: Vec<Vec<f32>> = routed
            .par_iter()
            .map(|(toks, _)| {
                toks.iter()
                    .flat_map(|&tok| xe[tok * b..(tok + 1) * b].iter().copied())
                    .collect()
            })
            .collect();
        observe_experts(obs, l, self.gate_up.name(), &routed, &inputs, b);
        let acts: Vec<Vec<f32>> = (0..cfg.num_experts)
            .into_par_iter()
            .map(|e| -> Result<Vec<f32>> {
                let n = routed[e].0.len();
                if n == 0 {
                    return Ok(Vec::new());
                }
                let gu = linear_rows(
                    &inputs[e],
                    n,
                    self.gate_up.as_ref(),
                    e * 2 * i..(e + 1) * 2 * i,
                )?;
                let mut act = vec![0f32; n * i];
                for (row, out) in gu.chunks(2 * i).zip(act.chunks_mut(i)) {
                    for j in 0..i {
                        out[j] = gelu_tanh(row[j]) * row[i + j];
                    }
                }
                Ok(act)
            })
            .collect::<Result<_>>()?;
        observe_experts(obs, l, self.down.name(), &routed, &acts, i);
        let outs: Vec<Vec<f32>> = (0..cfg.num_experts)
            .into_par_iter()
            .map(|e| -> Result<Vec<f32>> {
                let n = routed[e].0.len();
                if n == 0 {
                    return Ok(Vec::new());
                }
                linear_rows(&acts[e], n, self.down.as_ref(), e * b..(e + 1) * b)
            })
            .collect::<Result<_>>()?;
        // Per token, its (expert, row in that expert's output, weight) in ascending expert
        // order: the order of transformers' per-expert `index_add_`.
        let mut slots: Vec<Vec<(usize, usize, f32)>> = vec![Vec::new(); t];
        for (e, (toks, ws)) in routed.iter().enumerate() {
            for (r, (&tok, &wt)) in toks.iter().zip(ws).enumerate() {
                slots[tok].push((e, r, wt));
            }
        }
        let mut f2 = vec![0f32; t * b];
        if b > 0 {
            f2.par_chunks_mut(b)
                .zip(slots.par_iter())
                .with_min_len(MIN_ROWS)
                .for_each(|(dst, slots)| {
                    for &(e, r, wt) in slots {
                        for (d, &y) in dst.iter_mut().zip(&outs[e][r * b..(r + 1) * b]) {
                            *d += y * wt;
                        }
                    }
                });
        }
        rms_norm_rows(&mut f2, b, Some(&self.post_norm_2), eps);
        Ok(f2)
    }
}

/// Softmax of one row in f32 with an f64 sum.
fn softmax(row: &[f32]) -> Vec<f32> {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let ex: Vec<f32> = row
        .iter()
        .map(|&v| ((v - max) as f64).exp() as f32)
        .collect();
    let sum = ex.iter().map(|&v| v as f64).sum::<f64>() as f32;
    ex.into_iter().map(|v| v / sum).collect()
}

/// Reports each expert's input rows (`width` columns, only the tokens routed to it) of the
/// expert weight `weight` to the observer, in expert order.
fn observe_experts(
    obs: &mut dyn Observer,
    layer: usize,
    weight: &str,
    routed: &[(Vec<usize>, Vec<f32>)],
    xs: &[Vec<f32>],
    width: usize,
) {
    for (e, (toks, _)) in routed.iter().enumerate() {
        if !toks.is_empty() {
            let site = LinearSite {
                layer: Some(layer),
                weight,
                expert: Some(e),
                token_rows: Some(toks),
            };
            obs.linear_input(&site, &xs[e], toks.len(), width);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::softmax;

    #[test]
    fn softmax_sums_to_one_and_orders() {
        let p = softmax(&[1.0, 3.0, 2.0]);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(p[1] > p[2] && p[2] > p[0]);
    }
}
