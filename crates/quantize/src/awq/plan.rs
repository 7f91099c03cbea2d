//! What the AWQ search decides, and the model it describes.
//!
//! An [`AwqPlan`] holds, per decoder layer, the three per-channel scales (attention input,
//! FFN input, down-projection input) and, per quantized weight, one clip bound per
//! (row, group). It is small (vectors, not weights), so the search never holds more than one
//! layer of weights; [`ScaledWeights`] applies it lazily to any weight source:
//!
//! | tensor | becomes |
//! |---|---|
//! | `input_layernorm.weight` | `w / s_attn` (Gemma 4 norms multiply by plain `w`) |
//! | `q_proj`, `k_proj`, `v_proj` | columns `· s_attn` |
//! | `pre_feedforward_layernorm.weight` | `w / s_ffn` |
//! | `gate_proj` | columns `· s_ffn` |
//! | `up_proj` | columns `· s_ffn`, rows `/ s_down` |
//! | `down_proj` | columns `· s_down` |
//!
//! so the scaled model computes the same function as the original (up to f32 rounding); the
//! clip bounds then clamp the weights that int4 quantization will see. v → o is not a group:
//! Gemma 4's weightless v-norm sits between them and would undo the scale.

use std::collections::BTreeMap;

use convert::Gemma4Config;
use verify::weights::DenseMatrix;
use verify::{Matrix, Result as VResult, Weights};

use crate::awq::search::Dense;

/// Per-channel scales of one decoder layer's three groups.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerScales {
    /// `[B]`: input norm → q, k, v.
    pub attn: Vec<f32>,
    /// `[B]`: pre-FFN norm → gate, up.
    pub ffn: Vec<f32>,
    /// `[I]`: up → down.
    pub down: Vec<f32>,
    /// MoE layers: `[B]`, experts' pre-norm (`pre_feedforward_layernorm_2`) → every expert's
    /// gate_up; empty elsewhere.
    pub moe_in: Vec<f32>,
    /// MoE layers: per expert `[I_moe]`, the expert's up rows → its down columns; empty
    /// elsewhere.
    pub moe_down: Vec<Vec<f32>>,
}

/// How the int4 group of a weight follows from the requested group size and the weight's
/// input width (its columns).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupFit {
    /// The requested group everywhere; where it does not divide the width, each row's last
    /// group is shorter. The GGUF and ONNX `--awq` searches: the scales they fold in do not
    /// depend on the formats' own blocks, so no width has to fit the group.
    Partial,
    /// Per weight, a group that divides its width ([`dividing_group`]): compressed-tensors
    /// stores `[rows, cols / group]` scales, and vLLM's kernels need the group to divide the
    /// input width.
    Divide,
}

/// Group sizes tried, largest first, when the requested one does not divide a width: those of
/// vLLM's Marlin kernels for compressed-tensors WNA16 (`MARLIN_SUPPORTED_GROUP_SIZES`: 32, 64,
/// 128, or a whole row), so the fallback group still runs on vLLM's fast path.
pub const FALLBACK_GROUPS: [usize; 3] = [128, 64, 32];

/// The int4 group of a compressed-tensors weight `width` columns wide: `requested` when it
/// divides the width, else the largest of [`FALLBACK_GROUPS`] below it that does (64 for the
/// real 26B-A4B's 2112 and 704 at 128); `None` when none does.
pub fn dividing_group(requested: usize, width: usize) -> Option<usize> {
    group_candidates(requested).find(|&g| width.is_multiple_of(g))
}

/// The group sizes a compressed-tensors release may use for `requested`, in order of
/// preference: `requested`, then the [`FALLBACK_GROUPS`] below it.
pub fn group_candidates(requested: usize) -> impl Iterator<Item = usize> {
    std::iter::once(requested)
        .chain(FALLBACK_GROUPS.into_iter().filter(move |&g| g < requested))
        .filter(|&g| g > 0)
}

/// The result of an AWQ search over a model.
#[derive(Clone, Debug, PartialEq)]
pub struct AwqPlan {
    /// Requested quantization group size (input columns per scale).
    pub group: usize,
    /// How each weight's group follows from `group` (see [`AwqPlan::group_of`]).
    pub fit: GroupFit,
    pub layers: Vec<LayerScales>,
    /// Canonical weight name → clip bound per (row, group), `[rows, ceil(cols / g)]` with `g`
    /// the weight's group ([`AwqPlan::group_of`] its columns).
    pub clips: BTreeMap<String, Vec<f32>>,
}

/// The linear layers of decoder layer `l` that AWQ quantizes, in execution order, and whether
/// the layer computes them (KV-shared layers have no k/v; `attention_k_eq_v` layers no v).
pub fn quantized_linears(cfg: &Gemma4Config, l: usize) -> Vec<String> {
    let mut v = vec![format!("layers.{l}.self_attn.q_proj.weight")];
    if !cfg.is_kv_shared(l) {
        v.push(format!("layers.{l}.self_attn.k_proj.weight"));
        if !cfg.v_is_k(l) {
            v.push(format!("layers.{l}.self_attn.v_proj.weight"));
        }
    }
    for s in [
        "self_attn.o_proj.weight",
        "mlp.gate_proj.weight",
        "mlp.up_proj.weight",
        "mlp.down_proj.weight",
    ] {
        v.push(format!("layers.{l}.{s}"));
    }
    v
}

/// How one tensor is transformed by a plan.
enum Role<'p> {
    /// Divide a norm weight by `s`.
    Norm(&'p [f32]),
    /// Multiply columns by `cols`, divide rows by `rows`.
    Linear {
        cols: Option<&'p [f32]>,
        rows: Option<&'p [f32]>,
    },
    /// The fused expert stacks of a MoE layer.
    Experts { down: bool, sc: &'p LayerScales },
}

impl AwqPlan {
    /// The plan that changes nothing (all scales 1, no clipping): plain round-to-nearest int4,
    /// each weight at a group that divides it ([`GroupFit::Divide`]).
    pub fn identity(cfg: &Gemma4Config, group: usize) -> AwqPlan {
        let b = cfg.hidden_size;
        AwqPlan {
            group,
            fit: GroupFit::Divide,
            layers: (0..cfg.num_hidden_layers)
                .map(|l| LayerScales {
                    attn: vec![1.0; b],
                    ffn: vec![1.0; b],
                    down: vec![1.0; cfg.intermediate_size_of(l)],
                    moe_in: Vec::new(),
                    moe_down: Vec::new(),
                })
                .collect(),
            clips: BTreeMap::new(),
        }
    }

    fn role(&self, cfg: &Gemma4Config, name: &str) -> Option<Role<'_>> {
        let rest = name.strip_prefix("layers.")?;
        let (l, suffix) = rest.split_once('.')?;
        let l: usize = l.parse().ok()?;
        let sc = self.layers.get(l)?;
        let shared = cfg.is_kv_shared(l);
        Some(match suffix {
            "input_layernorm.weight" => Role::Norm(&sc.attn),
            "pre_feedforward_layernorm.weight" => Role::Norm(&sc.ffn),
            "self_attn.q_proj.weight" => Role::Linear {
                cols: Some(&sc.attn),
                rows: None,
            },
            // The unused K/V of KV-shared layers never meet the scaled norm.
            "self_attn.k_proj.weight" | "self_attn.v_proj.weight" if !shared => Role::Linear {
                cols: Some(&sc.attn),
                rows: None,
            },
            "mlp.gate_proj.weight" => Role::Linear {
                cols: Some(&sc.ffn),
                rows: None,
            },
            "mlp.up_proj.weight" => Role::Linear {
                cols: Some(&sc.ffn),
                rows: Some(&sc.down),
            },
            "mlp.down_proj.weight" => Role::Linear {
                cols: Some(&sc.down),
                rows: None,
            },
            "pre_feedforward_layernorm_2.weight" if !sc.moe_in.is_empty() => Role::Norm(&sc.moe_in),
            "experts.gate_up_proj" if !sc.moe_in.is_empty() || !sc.moe_down.is_empty() => {
                Role::Experts { down: false, sc }
            }
            "experts.down_proj" if !sc.moe_down.is_empty() => Role::Experts { down: true, sc },
            _ => return None,
        })
    }

    /// The int4 group of a weight with `cols` input columns; `None` when [`GroupFit::Divide`]
    /// finds no group that divides it.
    pub fn group_of(&self, cols: usize) -> Option<usize> {
        match self.fit {
            GroupFit::Partial => Some(self.group),
            GroupFit::Divide => dividing_group(self.group, cols),
        }
    }

    /// Whether the plan changes `name` (scales or clips it).
    pub fn touches(&self, cfg: &Gemma4Config, name: &str) -> bool {
        self.role(cfg, name).is_some() || self.clips.contains_key(name)
    }
}

/// Applies `W ← diag(1/rows) · W · diag(cols)` in place to a row-major `[r, c]` matrix.
pub fn scale_matrix(w: &mut [f32], c: usize, cols: Option<&[f32]>, rows: Option<&[f32]>) {
    for (i, row) in w.chunks_exact_mut(c).enumerate() {
        if let Some(s) = cols {
            row.iter_mut().zip(s).for_each(|(v, &f)| *v *= f);
        }
        if let Some(s) = rows {
            let f = s[i];
            row.iter_mut().for_each(|v| *v /= f);
        }
    }
}

/// Applies a MoE layer's scales to its fused expert stack `[E·rows_e, c]`: gate_up
/// (`[E·2I, B]`, per expert gate rows then up rows) gets columns `· moe_in` and each expert's
/// up rows `/ moe_down[e]`; down (`[E·B, I]`) gets each expert's columns `· moe_down[e]`.
fn scale_experts(
    w: &mut [f32],
    r: usize,
    c: usize,
    down: bool,
    sc: &LayerScales,
) -> Result<(), String> {
    let e = if down {
        sc.moe_down.len()
    } else {
        sc.moe_down.len().max(1)
    };
    let per = r
        .checked_div(e)
        .filter(|p| p * e == r)
        .ok_or("AWQ expert scales do not fit")?;
    if down {
        for (x, s) in w.chunks_exact_mut(per * c).zip(&sc.moe_down) {
            if s.len() != c {
                return Err("AWQ expert down scales do not fit".into());
            }
            scale_matrix(x, c, Some(s), None);
        }
        return Ok(());
    }
    if !sc.moe_in.is_empty() {
        if sc.moe_in.len() != c {
            return Err("AWQ expert input scales do not fit".into());
        }
        scale_matrix(w, c, Some(&sc.moe_in), None);
    }
    for (x, s) in w.chunks_exact_mut(per * c).zip(&sc.moe_down) {
        // Rows I..2I of each expert block are its up projection.
        let i = per / 2;
        if s.len() != i {
            return Err("AWQ expert up scales do not fit".into());
        }
        scale_matrix(&mut x[i * c..], c, None, Some(s));
    }
    Ok(())
}

/// Clamps each (row, group) of a row-major `[r, c]` matrix to `[-bound, bound]` (the last
/// group of a row shorter when `group` does not divide `c`).
pub fn clip_matrix(w: &mut [f32], c: usize, group: usize, bounds: &[f32]) {
    let ng = c.div_ceil(group);
    for (i, row) in w.chunks_exact_mut(c).enumerate() {
        for (j, chunk) in row.chunks_mut(group).enumerate() {
            let b = bounds[i * ng + j];
            chunk.iter_mut().for_each(|v| *v = v.clamp(-b, b));
        }
    }
}

/// A weight source seen through an [`AwqPlan`]: scaled (and, with `clip`, clipped) matrices and
/// folded norms, everything else passed through. Scaled matrices are materialised in f32 one at
/// a time, when asked for.
pub struct ScaledWeights<'a> {
    pub base: &'a dyn Weights,
    pub plan: &'a AwqPlan,
    /// Apply the clip bounds (for int4 output; the GGUF k-quant path uses scales only).
    pub clip: bool,
}

impl ScaledWeights<'_> {
    /// The transformed matrix `name` as row-major f32 `[rows, cols]`, or `None` when the plan
    /// leaves it alone.
    pub fn transformed(&self, name: &str) -> VResult<Option<Dense>> {
        let cfg = self.base.config();
        let role = self.plan.role(cfg, name);
        let bounds = self.clip.then(|| self.plan.clips.get(name)).flatten();
        if !matches!(role, Some(Role::Linear { .. } | Role::Experts { .. })) && bounds.is_none() {
            return Ok(None);
        }
        let Dense {
            values: mut w,
            rows: r,
            cols: c,
        } = Dense::read(self.base, name)?;
        if let Some(Role::Linear { cols, rows }) = role {
            if cols.is_some_and(|s| s.len() != c) || rows.is_some_and(|s| s.len() != r) {
                return Err(shape_error(name, "AWQ scales do not fit this matrix"));
            }
            scale_matrix(&mut w, c, cols, rows);
        }
        if let Some(Role::Experts { down, sc }) = role {
            scale_experts(&mut w, r, c, down, sc).map_err(|m| shape_error(name, &m))?;
        }
        if let Some(b) = bounds {
            let g = self
                .plan
                .group_of(c)
                .filter(|g| b.len() == r * c.div_ceil(*g));
            let Some(g) = g else {
                return Err(shape_error(name, "AWQ clip bounds do not fit this matrix"));
            };
            clip_matrix(&mut w, c, g, b);
        }
        Ok(Some(Dense {
            values: w,
            rows: r,
            cols: c,
        }))
    }
}

impl ScaledWeights<'_> {
    /// How many experts the fused expert stack `name` is scaled as, when the plan scales it and
    /// clips nothing of it: a writer can then produce it one [`ScaledWeights::expert_block`] at
    /// a time instead of whole (2 GB of f32 per layer's gate_up on 26B-A4B).
    pub fn expert_blocks(&self, name: &str) -> Option<usize> {
        let cfg = self.base.config();
        let clipped = self.clip && self.plan.clips.contains_key(name);
        match self.plan.role(cfg, name)? {
            Role::Experts { sc, .. } if !clipped && sc.moe_down.len() == cfg.num_experts => {
                Some(cfg.num_experts)
            }
            _ => None,
        }
    }

    /// Expert `e`'s rows of the fused stack `name` (see [`ScaledWeights::expert_blocks`]),
    /// scaled: the same f32 values as the same rows of [`ScaledWeights::transformed`].
    pub fn expert_block(&self, name: &str, e: usize) -> VResult<Dense> {
        let cfg = self.base.config();
        let (Some(Role::Experts { down, sc }), Some(ne)) =
            (self.plan.role(cfg, name), self.expert_blocks(name))
        else {
            return Err(shape_error(name, "not a scaled expert stack"));
        };
        let m = self.base.matrix(name)?;
        let (r, c) = (m.rows(), m.cols());
        let per = r / ne;
        if per * ne != r || e >= ne {
            return Err(shape_error(name, "AWQ expert scales do not fit"));
        }
        let mut w = vec![0f32; per * c];
        m.rows_to_f32(e * per, per, &mut w)?;
        drop(m);
        let s = &sc.moe_down[e];
        if down {
            if s.len() != c {
                return Err(shape_error(name, "AWQ expert down scales do not fit"));
            }
            scale_matrix(&mut w, c, Some(s), None);
        } else {
            if !sc.moe_in.is_empty() {
                if sc.moe_in.len() != c {
                    return Err(shape_error(name, "AWQ expert input scales do not fit"));
                }
                scale_matrix(&mut w, c, Some(&sc.moe_in), None);
            }
            // Rows I..2I of the expert's block are its up projection.
            let i = per / 2;
            if s.len() != i {
                return Err(shape_error(name, "AWQ expert up scales do not fit"));
            }
            scale_matrix(&mut w[i * c..], c, None, Some(s));
        }
        self.base.release(name);
        Ok(Dense {
            values: w,
            rows: per,
            cols: c,
        })
    }
}

impl Weights for ScaledWeights<'_> {
    fn config(&self) -> &Gemma4Config {
        self.base.config()
    }

    fn has(&self, name: &str) -> bool {
        self.base.has(name)
    }

    fn matrix(&self, name: &str) -> VResult<Matrix<'_>> {
        match self.transformed(name)? {
            Some(d) => Ok(Box::new(DenseMatrix::from_f32(
                name, d.rows, d.cols, &d.values,
            )?)),
            None => self.base.matrix(name),
        }
    }

    fn vector(&self, name: &str) -> VResult<Vec<f32>> {
        let mut v = self.base.vector(name)?;
        if let Some(Role::Norm(s)) = self.plan.role(self.base.config(), name) {
            if s.len() != v.len() {
                return Err(shape_error(name, "AWQ scales do not fit this norm"));
            }
            v.iter_mut().zip(s).for_each(|(w, &f)| *w /= f);
        }
        Ok(v)
    }

    fn release(&self, name: &str) {
        self.base.release(name)
    }
}

fn shape_error(name: &str, message: &str) -> verify::VerifyError {
    verify::VerifyError::Shape {
        tensor: name.to_string(),
        message: message.to_string(),
    }
}
