//! The AWQ calibration run: one layer-streaming pass of the reference forward pass over the
//! calibration tokens with an observer that keeps only the current layer's linear inputs.
//! When the pass moves on to the next layer, the finished layer's groups are searched
//! ([`crate::awq::search`]) against its original weights and its activations are dropped, so
//! memory is one layer's weights plus one layer's activations whatever the model size.
//!
//! Inputs to layer `l` are the unquantized model's activations (AutoAWQ feeds each layer the
//! full-precision outputs of the previous one). With [`AwqOptions::experts`] the MoE layers of
//! 26B-A4B get two more kinds of group: the experts' pre-norm → every expert's gate_up (one
//! scale, each expert scored on the tokens routed to it) and, per expert, up → down. The int4
//! release leaves them off: the experts are fused 3-D parameters, not `nn.Linear`s, so they stay
//! dense there, and scaling them would only force them from bf16 to F32.

use std::collections::BTreeMap;
use std::time::Instant;

use verify::{forward_streaming, ForwardOptions, LinearSite, Observer, Weights};

use crate::awq::plan::{AwqPlan, GroupFit, LayerScales};
use crate::awq::search::{
    abs_mean_of, search_clip, search_scale, search_scale_streamed, Acts, Dense, HeadNorm, Mat,
    ScaleChoice,
};
use crate::error::{QuantizeError, Result};

/// Options of an AWQ search.
#[derive(Clone, Debug)]
pub struct AwqOptions {
    /// Input columns per quantization group (128 in AutoAWQ and compressed-tensors presets).
    pub group: usize,
    /// Search clip bounds after the scales (AutoAWQ `apply_clip`).
    pub clip: bool,
    /// Search the MoE expert groups too (for the GGUF path, which quantizes the experts).
    pub experts: bool,
}

impl Default for AwqOptions {
    fn default() -> Self {
        AwqOptions {
            group: 128,
            clip: true,
            experts: false,
        }
    }
}

/// The kinds of AWQ group: the layers that read one scaled input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GroupKind {
    /// Input norm → q (k, v).
    Attn,
    /// Pre-FFN norm → gate, up.
    Ffn,
    /// up → down.
    Down,
    /// The experts' pre-norm → every expert's gate_up.
    Moe,
    /// One expert's up → down.
    ExpertDown,
}

impl GroupKind {
    /// The name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            GroupKind::Attn => "attn",
            GroupKind::Ffn => "ffn",
            GroupKind::Down => "down",
            GroupKind::Moe => "moe",
            GroupKind::ExpertDown => "expert_down",
        }
    }
}

impl std::fmt::Display for GroupKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What one group's search found, for reports.
#[derive(Clone, Debug)]
pub struct GroupReport {
    pub layer: usize,
    pub group: GroupKind,
    pub alpha: Option<f32>,
    /// Mean squared output error with the chosen scales and with none (calibration rows).
    pub loss: f64,
    pub loss_identity: f64,
}

/// The plan and how the search went.
#[derive(Clone, Debug)]
pub struct AwqRun {
    pub plan: AwqPlan,
    pub groups: Vec<GroupReport>,
    /// Wall seconds per layer (forward step plus search).
    pub layer_seconds: Vec<f64>,
    pub tokens: usize,
}

/// One clip search: a weight with the scales folded in, and its input with the scales
/// divided out.
struct ClipJob {
    weight: String,
    input: Dense,
    scaled: Dense,
}

/// Which MoE input an observed batch is: the tokens routed to `expert`, entering its gate_up
/// (`down == false`) or its down projection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct ExpertInput {
    down: bool,
    expert: usize,
}

/// Which input of a layer an observed batch is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Input {
    Attn,
    Out,
    Ffn,
    Down,
}

fn input_of(suffix: &str) -> Option<Input> {
    Some(match suffix {
        "self_attn.q_proj.weight" => Input::Attn,
        "self_attn.o_proj.weight" => Input::Out,
        "mlp.gate_proj.weight" => Input::Ffn,
        "mlp.down_proj.weight" => Input::Down,
        _ => return None,
    })
}

/// The observer: current layer's inputs, the plan so far, the first error.
struct Collector<'a> {
    src: &'a dyn Weights,
    opts: &'a AwqOptions,
    current: Option<usize>,
    inputs: BTreeMap<Input, Dense>,
    /// MoE expert inputs → routed rows.
    experts: BTreeMap<ExpertInput, Dense>,
    plan: AwqPlan,
    groups: Vec<GroupReport>,
    layer_seconds: Vec<f64>,
    started: Instant,
    error: Option<QuantizeError>,
    progress: &'a mut dyn FnMut(usize, usize),
}

impl Observer for Collector<'_> {
    fn linear_input(&mut self, site: &LinearSite<'_>, x: &[f32], rows: usize, cols: usize) {
        if self.error.is_some() {
            return;
        }
        let Some(l) = site.layer else { return };
        if self.current != Some(l) {
            self.flush();
            self.current = Some(l);
        }
        if let Some(e) = site.expert {
            if self.opts.experts {
                let down = site.weight.ends_with("experts.down_proj");
                self.experts
                    .insert(ExpertInput { down, expert: e }, dense(x, rows, cols));
            }
            return;
        }
        let suffix = site
            .weight
            .strip_prefix(&format!("layers.{l}."))
            .unwrap_or("");
        if let Some(input) = input_of(suffix) {
            self.inputs.insert(input, dense(x, rows, cols));
        }
    }
}

impl Collector<'_> {
    /// Searches the finished layer (if any) and drops its activations.
    fn flush(&mut self) {
        let Some(l) = self.current.take() else { return };
        let inputs = std::mem::take(&mut self.inputs);
        let experts = std::mem::take(&mut self.experts);
        if let Err(e) = self.search_layer(l, &inputs, &experts) {
            self.error = Some(e);
        }
        self.layer_seconds
            .push(self.started.elapsed().as_secs_f64());
        self.started = Instant::now();
        (self.progress)(l + 1, self.src.config().num_hidden_layers);
    }

    fn weight(&self, name: &str) -> Result<Dense> {
        Ok(Dense::read(self.src, name)?)
    }

    fn search_layer(
        &mut self,
        l: usize,
        inputs: &BTreeMap<Input, Dense>,
        experts: &BTreeMap<ExpertInput, Dense>,
    ) -> Result<()> {
        let cfg = self.src.config();
        let get = |i: Input| {
            inputs.get(&i).ok_or_else(|| {
                QuantizeError::Options(format!("AWQ: layer {l} did not report its {i:?} input"))
            })
        };
        let name = |s: &str| format!("layers.{l}.{s}");

        // Group 1: input norm → q (k, v).
        let mut attn_names = vec![name("self_attn.q_proj.weight")];
        if !cfg.is_kv_shared(l) {
            attn_names.push(name("self_attn.k_proj.weight"));
            if !cfg.v_is_k(l) {
                attn_names.push(name("self_attn.v_proj.weight"));
            }
        }
        let attn_w = attn_names
            .iter()
            .map(|n| self.weight(n))
            .collect::<Result<Vec<_>>>()?;
        let x_attn = get(Input::Attn)?;
        let attn = self.group(l, GroupKind::Attn, x_attn.acts(), &attn_w)?;

        // Group 2: pre-FFN norm → gate, up; group 3: up → down.
        let gate = self.weight(&name("mlp.gate_proj.weight"))?;
        let up = self.weight(&name("mlp.up_proj.weight"))?;
        let down = self.weight(&name("mlp.down_proj.weight"))?;
        let x_ffn = get(Input::Ffn)?;
        let x_down = get(Input::Down)?;
        let ffn = self.group(l, GroupKind::Ffn, x_ffn.acts(), &[gate.clone(), up.clone()])?;
        let down_s = self.group(
            l,
            GroupKind::Down,
            x_down.acts(),
            std::slice::from_ref(&down),
        )?;

        if self.opts.clip {
            // Clip search on the scaled weights with the scaled inputs (AutoAWQ skips q and k).
            let o = self.weight(&name("self_attn.o_proj.weight"))?;
            let x_o = get(Input::Out)?;
            let mut jobs: Vec<ClipJob> = Vec::new();
            // The input with the scales divided out, and the weight with them folded in.
            let unscale = |x: &Dense, s: &[f32]| {
                let mut v = x.clone();
                for row in v.values.chunks_exact_mut(x.cols) {
                    row.iter_mut().zip(s).for_each(|(a, &f)| *a /= f);
                }
                v
            };
            let scaled = |w: &Dense, cols: &[f32], rows: Option<&[f32]>| {
                let mut v = w.clone();
                crate::awq::plan::scale_matrix(&mut v.values, w.cols, Some(cols), rows);
                v
            };
            if attn_names.len() == 3 {
                jobs.push(ClipJob {
                    weight: attn_names[2].clone(),
                    input: unscale(x_attn, &attn),
                    scaled: scaled(&attn_w[2], &attn, None),
                });
            }
            let ones = vec![1f32; o.cols];
            jobs.push(ClipJob {
                weight: name("self_attn.o_proj.weight"),
                input: x_o.clone(),
                scaled: scaled(&o, &ones, None),
            });
            let xs = unscale(x_ffn, &ffn);
            jobs.push(ClipJob {
                weight: name("mlp.gate_proj.weight"),
                input: xs.clone(),
                scaled: scaled(&gate, &ffn, None),
            });
            jobs.push(ClipJob {
                weight: name("mlp.up_proj.weight"),
                input: xs,
                scaled: scaled(&up, &ffn, Some(&down_s)),
            });
            jobs.push(ClipJob {
                weight: name("mlp.down_proj.weight"),
                input: unscale(x_down, &down_s),
                scaled: scaled(&down, &down_s, None),
            });
            for job in jobs {
                let cols = job.scaled.values.len() / job.scaled.rows.max(1);
                let g = self.group_of(&job.weight, cols)?;
                let a = Acts {
                    x: &job.input.values,
                    rows: job.input.rows,
                    cols,
                };
                let bounds = search_clip(a, &job.scaled.values, job.scaled.rows, g);
                self.plan.clips.insert(job.weight, bounds);
            }
        }
        let (moe_in, moe_down) = if self.opts.experts && cfg.enable_moe_block {
            self.search_experts(l, experts)?
        } else {
            (Vec::new(), Vec::new())
        };
        self.plan.layers[l] = LayerScales {
            attn,
            ffn,
            down: down_s,
            moe_in,
            moe_down,
        };
        Ok(())
    }

    /// The MoE groups of layer `l`: the shared expert-input scale and each expert's down scale.
    fn search_experts(
        &mut self,
        l: usize,
        experts: &BTreeMap<ExpertInput, Dense>,
    ) -> Result<(Vec<f32>, Vec<Vec<f32>>)> {
        let cfg = self.src.config();
        let (b, i, ne) = (cfg.hidden_size, cfg.moe_intermediate_size, cfg.num_experts);
        let name = |s: &str| format!("layers.{l}.{s}");
        let g_in = self.group_of(&name("experts.gate_up_proj"), b)?;
        let g_down = self.group_of(&name("experts.down_proj"), i)?;
        let none = Acts {
            x: &[],
            rows: 0,
            cols: 0,
        };
        let acts = |down: bool, expert: usize| {
            experts
                .get(&ExpertInput { down, expert })
                .map_or(none, Dense::acts)
        };
        // Experts' pre-norm → every expert's gate_up rows, one expert in f32 at a time.
        let gate_up = name("experts.gate_up_proj");
        let blocks: Vec<Acts<'_>> = (0..ne).map(|e| acts(false, e)).collect();
        let present: Vec<Acts<'_>> = blocks.iter().copied().filter(|a| a.rows > 0).collect();
        let x_mean = abs_mean_of(&present, b);
        let choice = search_scale_streamed(&x_mean, &blocks, 2 * i, g_in, &mut |e| {
            self.expert_rows(&gate_up, e * 2 * i, 2 * i)
        })?;
        self.report(l, GroupKind::Moe, &choice);
        // Per expert: up rows → down columns.
        let down = name("experts.down_proj");
        let mut moe_down = Vec::with_capacity(ne);
        for e in 0..ne {
            let a = acts(true, e);
            let s = if experts.contains_key(&ExpertInput {
                down: true,
                expert: e,
            }) {
                let w = self.expert_rows(&down, e * b, b)?;
                let c = search_scale(
                    a,
                    &[Mat {
                        w: &w,
                        rows: b,
                        head: None,
                    }],
                    g_down,
                );
                self.report(l, GroupKind::ExpertDown, &c);
                c.s
            } else {
                vec![1.0; i]
            };
            moe_down.push(s);
        }
        Ok((choice.s, moe_down))
    }

    /// Rows `row0 .. row0 + n` of the fused expert stack `name`, widened to f32; the stack's
    /// mapped pages are released after each read, so neither the f32 nor the stored stack is
    /// held whole.
    fn expert_rows(&self, name: &str, row0: usize, n: usize) -> Result<Vec<f32>> {
        let m = self.src.matrix(name)?;
        let mut out = vec![0f32; n * m.cols()];
        m.rows_to_f32(row0, n, &mut out)?;
        drop(m);
        self.src.release(name);
        Ok(out)
    }

    fn report(&mut self, layer: usize, group: GroupKind, c: &ScaleChoice) {
        self.groups.push(GroupReport {
            layer,
            group,
            alpha: c.alpha,
            loss: c.loss,
            loss_identity: c.loss_identity,
        });
    }

    /// The int4 group the search evaluates `weight` (`cols` input columns) at: the plan's
    /// group, or one that divides `cols` under [`GroupFit::Divide`] (an error naming the weight
    /// when there is none).
    fn group_of(&self, weight: &str, cols: usize) -> Result<usize> {
        self.plan.group_of(cols).ok_or_else(|| {
            QuantizeError::Options(format!(
                "AWQ: no int4 group size of {} or below (of {}, {:?}) divides the {cols} input columns of {weight}",
                self.plan.group, self.plan.group, crate::awq::plan::FALLBACK_GROUPS
            ))
        })
    }

    /// Searches the scale of one group: weights `ws` reading activations `a` (their input
    /// width `a.cols`).
    fn group(
        &mut self,
        layer: usize,
        group: GroupKind,
        a: Acts<'_>,
        ws: &[Dense],
    ) -> Result<Vec<f32>> {
        let cfg = self.src.config();
        let head = (group == GroupKind::Attn).then(|| HeadNorm {
            size: cfg.head_dim_of(layer),
            eps: cfg.rms_norm_eps,
        });
        let g = self.group_of(&format!("layer {layer}'s {group} group"), a.cols)?;
        let mats: Vec<Mat<'_>> = ws.iter().map(|w| w.mat(head)).collect();
        let choice = search_scale(a, &mats, g);
        self.report(layer, group, &choice);
        Ok(choice.s)
    }
}

/// An observed batch of `rows` activations of width `cols`, copied.
fn dense(x: &[f32], rows: usize, cols: usize) -> Dense {
    Dense {
        values: x.to_vec(),
        rows,
        cols,
    }
}

/// Runs the AWQ search for `src` on `tokens` (one sequence, BOS first) for a compressed-tensors
/// release: each weight evaluated at a group that divides its width ([`GroupFit::Divide`]).
/// `progress(done, total)` is called after each layer's search.
pub fn compute_awq(
    src: &dyn Weights,
    tokens: &[u32],
    opts: &AwqOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<AwqRun> {
    compute_awq_with_fit(src, tokens, opts, GroupFit::Divide, progress)
}

/// [`compute_awq`] with the groups chosen by `fit`: [`GroupFit::Partial`] for the GGUF and
/// ONNX `--awq` searches, which evaluate int4 at `opts.group` whether it divides a width or not.
pub fn compute_awq_with_fit(
    src: &dyn Weights,
    tokens: &[u32],
    opts: &AwqOptions,
    fit: GroupFit,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<AwqRun> {
    if opts.group == 0 || !opts.group.is_multiple_of(8) {
        return Err(QuantizeError::Options(format!(
            "AWQ group size {} must be a positive multiple of 8",
            opts.group
        )));
    }
    let cfg = src.config();
    let mut c = Collector {
        src,
        opts,
        current: None,
        inputs: BTreeMap::new(),
        experts: BTreeMap::new(),
        plan: AwqPlan {
            fit,
            ..AwqPlan::identity(cfg, opts.group)
        },
        groups: Vec::new(),
        layer_seconds: Vec::new(),
        started: Instant::now(),
        error: None,
        progress,
    };
    forward_streaming(
        src,
        tokens,
        ForwardOptions::default(),
        &mut c,
        &mut |_, _| {},
    )?;
    c.flush();
    if let Some(e) = c.error {
        return Err(e);
    }
    Ok(AwqRun {
        plan: c.plan,
        groups: c.groups,
        layer_seconds: c.layer_seconds,
        tokens: tokens.len(),
    })
}
