//! The whole text model: embedding and per-layer inputs, the decoder layers, final norm, tied
//! head and softcap, in two modes with byte-identical results:
//! - [`Model`] resolves every weight once and can run many sequences;
//! - [`forward_streaming`] loads one layer, runs it, drops and releases it, so memory is one
//!   layer plus activations whatever the model size.
//!
//! Both modes run the same functions in the same order; the tied head reads the embedding in
//! fixed row chunks ([`HEAD_CHUNK`]) in both modes, and streaming releases each chunk after use.
//!
//! [`LayerMajor`] runs many independent sequences (the chunks of a verify or imatrix run)
//! layer-major: every chunk through layer `i` before layer `i + 1`, so each layer's tensors are
//! fetched from the source (and their pages read from disk) once per run instead of once per
//! chunk. Each chunk still runs through the same per-layer function with the same length, so its
//! values are bit-identical to a [`forward_streaming`] pass of that chunk alone; what a chunk
//! carries between layers lives in a [`crate::spill::ChunkStore`].

use std::collections::{BTreeMap, BTreeSet};

use ndarray::Array2;

use convert::Gemma4Config;

use crate::error::{Result, VerifyError};
use crate::layer::{observe, run_layer, LayerCtx, LayerWeights};
use crate::linear::{linear, linear_rows_into, PANEL};
use crate::observer::Observer;
use crate::ops::{add_assign, rms_norm_rows, scale, softcap};
use crate::rope::RopeTable;
use crate::spill::{ChunkState, ChunkStore, MemoryBudget};
use crate::weights::{matrix_of, vector_of, Matrix, Weights};

/// Embedding rows per head chunk: a multiple of [`PANEL`], so chunking never changes a result,
/// and small enough (8192 x 5376 bf16 = 88 MB on 31B) to bound the head's resident pages.
pub const HEAD_CHUNK: usize = 128 * PANEL;

/// Model-level weights.
pub struct GlobalWeights<'w> {
    /// `[vocab, B]`, also the tied output head.
    pub embed: Matrix<'w>,
    pub final_norm: Vec<f32>,
    pub ple: Option<PleGlobalWeights<'w>>,
}

/// Model-level PLE weights (E2B / E4B).
pub struct PleGlobalWeights<'w> {
    /// `[vocab_ple, L*P]`.
    pub embed: Matrix<'w>,
    /// `[L*P, B]`.
    pub proj: Matrix<'w>,
    /// `[P]`.
    pub norm: Vec<f32>,
}

impl<'w> GlobalWeights<'w> {
    /// Resolves and shape-checks the model-level weights.
    pub fn load(src: &'w dyn Weights) -> Result<Self> {
        let cfg = src.config();
        let b = cfg.hidden_size;
        let ple = if cfg.has_per_layer_inputs() {
            let lp = cfg.num_hidden_layers * cfg.hidden_size_per_layer_input;
            let embed = src.matrix("embed_tokens_per_layer.weight")?;
            if embed.cols() != lp {
                return Err(VerifyError::shape(
                    "embed_tokens_per_layer.weight",
                    format!(
                        "{} columns but layers x per-layer width is {lp}",
                        embed.cols()
                    ),
                ));
            }
            Some(PleGlobalWeights {
                embed,
                proj: matrix_of(src, "per_layer_model_projection.weight", lp, b)?,
                norm: vector_of(
                    src,
                    "per_layer_projection_norm.weight",
                    cfg.hidden_size_per_layer_input,
                )?,
            })
        } else {
            None
        };
        Ok(GlobalWeights {
            embed: matrix_of(src, "embed_tokens.weight", cfg.vocab_size, b)?,
            final_norm: vector_of(src, "norm.weight", b)?,
            ple,
        })
    }
}

/// What to return besides the logits.
#[derive(Clone, Copy, Debug, Default)]
pub struct ForwardOptions {
    /// Keep the residual stream after the embedding and after every layer.
    pub hidden_states: bool,
}

/// Result of one forward pass over a sequence.
#[derive(Clone, Debug)]
pub struct ForwardOutput {
    /// `[T, vocab]` f32, after the final softcap.
    pub logits: Array2<f32>,
    /// `[0]` the scaled embedding, `[i + 1]` the output of layer `i`, each `[T, B]`
    /// (transformers' `hidden_states`), when requested.
    pub hidden_states: Option<Vec<Array2<f32>>>,
}

/// Called after each layer with `(layers done, total layers)`; for progress bars.
pub type Progress<'a> = &'a mut dyn FnMut(usize, usize);

/// Every weight resolved once, for repeated runs.
pub struct Model<'w> {
    src: &'w dyn Weights,
    globals: GlobalWeights<'w>,
    layers: Vec<LayerWeights<'w>>,
}

impl<'w> Model<'w> {
    /// Resolves and checks every text weight of `src`.
    pub fn load(src: &'w dyn Weights) -> Result<Self> {
        let globals = GlobalWeights::load(src)?;
        let layers = (0..src.config().num_hidden_layers)
            .map(|l| LayerWeights::load(src, l))
            .collect::<Result<_>>()?;
        Ok(Model {
            src,
            globals,
            layers,
        })
    }

    /// Runs the model on `ids`.
    pub fn forward(
        &self,
        ids: &[u32],
        opts: ForwardOptions,
        observer: &mut dyn Observer,
        progress: Progress<'_>,
    ) -> Result<ForwardOutput> {
        let pass = Pass {
            src: self.src,
            g: &self.globals,
            layers: Layers::Loaded(&self.layers),
            ids,
            opts,
        };
        run(pass, observer, progress)
    }

    /// The logits on `ids` with the default options, row-major `[T, vocab]`: what comparisons
    /// of two weight sources read.
    pub fn logits(&self, ids: &[u32]) -> Result<Vec<f32>> {
        let out = self.forward(
            ids,
            ForwardOptions::default(),
            &mut crate::observer::NoObserver,
            &mut |_, _| {},
        )?;
        Ok(out.logits.iter().copied().collect())
    }

    /// Runs the embedding and the decoder layers on `ids` for the observer's sake only: no final
    /// norm, no tied head. Calibration reads linear-layer inputs, and the head over a 262k-token
    /// vocabulary is the largest single GEMM of a forward pass.
    pub fn observe_layers(
        &self,
        ids: &[u32],
        observer: &mut dyn Observer,
        progress: Progress<'_>,
    ) -> Result<()> {
        let pass = Pass {
            src: self.src,
            g: &self.globals,
            layers: Layers::Loaded(&self.layers),
            ids,
            opts: ForwardOptions::default(),
        };
        run_layers(pass, observer, progress).map(|_| ())
    }
}

/// Runs the model on `ids` holding one layer's weights at a time; releases each layer's tensors
/// (and the embedding chunks of the head) from `src` after use.
pub fn forward_streaming(
    src: &dyn Weights,
    ids: &[u32],
    opts: ForwardOptions,
    observer: &mut dyn Observer,
    progress: Progress<'_>,
) -> Result<ForwardOutput> {
    let globals = GlobalWeights::load(src)?;
    let pass = Pass {
        src,
        g: &globals,
        layers: Layers::Stream,
        ids,
        opts,
    };
    run(pass, observer, progress)
}

enum Layers<'a, 'w> {
    Loaded(&'a [LayerWeights<'w>]),
    Stream,
}

/// What one forward pass runs over: the weights (the globals loaded, the layers loaded or
/// streamed), the tokens and the options.
struct Pass<'a, 'w> {
    src: &'a dyn Weights,
    g: &'a GlobalWeights<'w>,
    layers: Layers<'a, 'w>,
    ids: &'a [u32],
    opts: ForwardOptions,
}

fn run(
    pass: Pass<'_, '_>,
    observer: &mut dyn Observer,
    progress: Progress<'_>,
) -> Result<ForwardOutput> {
    let (src, g, ids) = (pass.src, pass.g, pass.ids);
    let streaming = matches!(pass.layers, Layers::Stream);
    let (mut h, hidden) = run_layers(pass, observer, progress)?;
    let cfg = src.config();
    let t = ids.len();
    rms_norm_rows(
        &mut h,
        cfg.hidden_size,
        Some(&g.final_norm),
        cfg.rms_norm_eps as f32,
    );
    let logits = head(src, g, cfg, &h, t, streaming, observer)?;
    Ok(ForwardOutput {
        logits: Array2::from_shape_vec((t, cfg.vocab_size), logits)
            .map_err(|e| VerifyError::Input(format!("logits shape: {e}")))?,
        hidden_states: hidden,
    })
}

/// Residual stream after the last layer, and the hidden states when requested.
type LayersOutput = (Vec<f32>, Option<Vec<Array2<f32>>>);

/// The embedding, per-layer inputs and every decoder layer: everything but the head.
fn run_layers(
    pass: Pass<'_, '_>,
    observer: &mut dyn Observer,
    progress: Progress<'_>,
) -> Result<LayersOutput> {
    let Pass {
        src,
        g,
        layers,
        ids,
        opts,
    } = pass;
    let cfg = src.config();
    let t = ids.len();
    let b = cfg.hidden_size;
    let nl = cfg.num_hidden_layers;
    check_ids(cfg, ids)?;

    let mut h = embed(g, cfg, ids)?;
    let ple = match &g.ple {
        Some(p) => Some(per_layer_inputs(p, cfg, ids, &h, observer)?),
        None => None,
    };
    let streaming = matches!(layers, Layers::Stream);
    if streaming {
        src.release("embed_tokens_per_layer.weight");
    }
    let mut hidden = opts.hidden_states.then(|| vec![to_array(&h, t, b)]);

    let rope_sliding = RopeTable::new(&cfg.rope_sliding, cfg.head_dim, t)?;
    let rope_full = RopeTable::new(&cfg.rope_full, cfg.global_head_dim, t)?;
    let sources: BTreeSet<usize> = (0..nl).filter_map(|l| cfg.kv_source_layer(l)).collect();
    let mut kv_stash = BTreeMap::new();
    for l in 0..nl {
        let mut ctx = LayerCtx {
            cfg,
            t,
            rope_sliding: &rope_sliding,
            rope_full: &rope_full,
            ple: ple.as_deref(),
            kv_stash: &mut kv_stash,
            stash_kv: sources.contains(&l),
            observer: &mut *observer,
        };
        match layers {
            Layers::Loaded(ws) => run_layer(&ws[l], &mut h, &mut ctx)?,
            Layers::Stream => {
                let w = LayerWeights::load(src, l)?;
                run_layer(&w, &mut h, &mut ctx)?;
                drop(w);
                for name in LayerWeights::tensor_names(cfg, l) {
                    src.release(&name);
                }
            }
        }
        // A stashed K/V is no longer needed once no later layer reads it.
        kv_stash.retain(|&s, _| (l + 1..nl).any(|m| cfg.kv_source_layer(m) == Some(s)));
        if let Some(hs) = hidden.as_mut() {
            hs.push(to_array(&h, t, b));
        }
        progress(l + 1, nl);
    }
    Ok((h, hidden))
}

/// Refuses an empty sequence or a token outside the vocabulary.
fn check_ids(cfg: &Gemma4Config, ids: &[u32]) -> Result<()> {
    if ids.is_empty() {
        return Err(VerifyError::Input("no tokens to run".into()));
    }
    if let Some(&bad) = ids.iter().find(|&&id| id as usize >= cfg.vocab_size) {
        return Err(VerifyError::Input(format!(
            "token id {bad} is outside the vocabulary of {}",
            cfg.vocab_size
        )));
    }
    Ok(())
}

/// A layer-major pass of one weight source over many chunks (each an independent sequence).
///
/// [`LayerMajor::start`] embeds every chunk; each [`LayerMajor::step`] fetches the next layer's
/// tensors once, runs every chunk through it in chunk order and releases them; after the last
/// step, [`LayerMajor::logits`] runs the final norm and the tied head on one chunk. The observer
/// sees every chunk's inputs of a weight in chunk order, so sums it keeps per weight are the
/// same as with one pass per chunk.
pub struct LayerMajor<'a, 'b> {
    src: &'a dyn Weights,
    globals: GlobalWeights<'a>,
    chunks: &'a [Vec<u32>],
    /// Sliding and full RoPE tables per chunk length.
    ropes: BTreeMap<usize, (RopeTable, RopeTable)>,
    /// Layers whose K/V a later KV-shared layer reads.
    sources: BTreeSet<usize>,
    store: ChunkStore<'b>,
    done: usize,
}

impl<'a, 'b> LayerMajor<'a, 'b> {
    /// Checks the chunks, loads the model-level weights once and embeds every chunk (and its
    /// per-layer inputs on E models); the states are kept under `budget`.
    pub fn start(
        src: &'a dyn Weights,
        chunks: &'a [Vec<u32>],
        budget: &'b MemoryBudget,
        observer: &mut dyn Observer,
    ) -> Result<Self> {
        let cfg = src.config();
        for ids in chunks {
            check_ids(cfg, ids)?;
        }
        let globals = GlobalWeights::load(src)?;
        let mut ropes = BTreeMap::new();
        for ids in chunks {
            let t = ids.len();
            if let std::collections::btree_map::Entry::Vacant(slot) = ropes.entry(t) {
                let sliding = RopeTable::new(&cfg.rope_sliding, cfg.head_dim, t)?;
                let full = RopeTable::new(&cfg.rope_full, cfg.global_head_dim, t)?;
                slot.insert((sliding, full));
            }
        }
        let mut store = ChunkStore::new(budget, chunks.len());
        for (ci, ids) in chunks.iter().enumerate() {
            let h = embed(&globals, cfg, ids)?;
            let ple = match &globals.ple {
                Some(p) => Some(per_layer_inputs(p, cfg, ids, &h, observer)?),
                None => None,
            };
            store.put(
                ci,
                ChunkState {
                    h,
                    ple,
                    kv_stash: BTreeMap::new(),
                },
            )?;
        }
        src.release("embed_tokens_per_layer.weight");
        let nl = cfg.num_hidden_layers;
        Ok(LayerMajor {
            src,
            globals,
            chunks,
            ropes,
            sources: (0..nl).filter_map(|l| cfg.kv_source_layer(l)).collect(),
            store,
            done: 0,
        })
    }

    /// Decoder layers run so far.
    pub fn layers_done(&self) -> usize {
        self.done
    }

    /// Decoder layers of the model.
    pub fn num_layers(&self) -> usize {
        self.src.config().num_hidden_layers
    }

    /// Runs every chunk through the next decoder layer, whose tensors are fetched once and
    /// released after the last chunk.
    pub fn step(&mut self, observer: &mut dyn Observer) -> Result<()> {
        let (src, cfg) = (self.src, self.src.config());
        let (l, nl) = (self.done, cfg.num_hidden_layers);
        if l >= nl {
            return Err(VerifyError::Input(format!(
                "internal: layer {l} of a model with {nl}"
            )));
        }
        let w = LayerWeights::load(src, l)?;
        for (ci, ids) in self.chunks.iter().enumerate() {
            let t = ids.len();
            let (rope_sliding, rope_full) = &self.ropes[&t];
            let mut state = self.store.take(ci)?;
            let ChunkState { h, ple, kv_stash } = &mut state;
            let mut ctx = LayerCtx {
                cfg,
                t,
                rope_sliding,
                rope_full,
                ple: ple.as_deref(),
                kv_stash,
                stash_kv: self.sources.contains(&l),
                observer: &mut *observer,
            };
            run_layer(&w, h, &mut ctx)?;
            // A stashed K/V is no longer needed once no later layer reads it.
            kv_stash.retain(|&s, _| (l + 1..nl).any(|m| cfg.kv_source_layer(m) == Some(s)));
            if l + 1 == nl {
                // Only the head is left: the per-layer inputs are done with.
                state.ple = None;
            }
            self.store.put(ci, state)?;
        }
        drop(w);
        for name in LayerWeights::tensor_names(cfg, l) {
            src.release(&name);
        }
        self.done += 1;
        Ok(())
    }

    /// Calls `f` with chunk `ci`'s residual stream as it is now (`[T, B]`).
    pub fn with_hidden<R>(&self, ci: usize, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
        self.store.with_hidden(ci, f)
    }

    /// The final norm, the tied head and the softcap on chunks `cis` once every layer has run,
    /// for the positions `rows(len)` of each chunk of `len` tokens only: their logits
    /// `[rows.len(), vocab]`, row-major, per chunk in order ([`GroupLogits::chunk`]). The head is most of a pass's arithmetic at a
    /// 262k vocabulary, so positions nothing scores are not multiplied; each kept row is the
    /// same as when every position runs. Each embedding row chunk is read once for all of the
    /// chunks (the caller sizes `cis` so that their logits fit in memory). Consumes the chunks'
    /// states.
    pub fn logits(
        &mut self,
        cis: std::ops::Range<usize>,
        rows: impl Fn(usize) -> std::ops::Range<usize>,
        observer: &mut dyn Observer,
    ) -> Result<GroupLogits> {
        let cfg = self.src.config();
        if self.done != cfg.num_hidden_layers {
            return Err(VerifyError::Input(format!(
                "internal: the head after {} of {} layers",
                self.done, cfg.num_hidden_layers
            )));
        }
        let b = cfg.hidden_size;
        // Every chunk's kept rows stacked into one `[rows, B]` matrix, so the head (the
        // embedding's packing and widening included) runs once for the group; each output row
        // is computed alone, so the rows are the same as one call per chunk.
        let mut h_all = Vec::new();
        let mut spans = Vec::with_capacity(cis.len());
        for ci in cis {
            let len = self.chunks[ci].len();
            let r = rows(len);
            if r.start > r.end || r.end > len {
                return Err(VerifyError::Input(format!(
                    "internal: rows {r:?} of a chunk of {len} tokens"
                )));
            }
            let h = self.store.take(ci)?.h;
            let at = h_all.len() / b.max(1);
            h_all.extend_from_slice(&h[r.start * b..r.end * b]);
            spans.push(at..at + r.len());
        }
        rms_norm_rows(
            &mut h_all,
            b,
            Some(&self.globals.final_norm),
            cfg.rms_norm_eps as f32,
        );
        for span in &spans {
            observe(
                observer,
                None,
                self.globals.embed.name(),
                &h_all[span.start * b..span.end * b],
                span.len(),
            );
        }
        let t = h_all.len() / b.max(1);
        let data = head_rows(self.src, &self.globals, cfg, &h_all, t, true)?;
        let v = cfg.vocab_size;
        Ok(GroupLogits {
            data,
            spans: spans.into_iter().map(|r| r.start * v..r.end * v).collect(),
        })
    }

    /// Bytes of one chunk's logits at the longest chunk length: what [`LayerMajor::logits`]
    /// allocates per chunk.
    pub fn logits_bytes(&self) -> usize {
        let t = self.chunks.iter().map(Vec::len).max().unwrap_or(0);
        t.saturating_mul(self.src.config().vocab_size)
            .saturating_mul(4)
    }
}

fn to_array(h: &[f32], t: usize, b: usize) -> Array2<f32> {
    Array2::from_shape_vec((t, b), h.to_vec()).expect("residual stream is [T, B]")
}

/// `E[ids] * sqrt(B)` (the f32 scale, as transformers computes in float32).
fn embed(g: &GlobalWeights<'_>, cfg: &Gemma4Config, ids: &[u32]) -> Result<Vec<f32>> {
    let b = cfg.hidden_size;
    let mut h = vec![0f32; ids.len() * b];
    for (row, &id) in h.chunks_mut(b).zip(ids) {
        g.embed.rows_to_f32(id as usize, 1, row)?;
    }
    scale(&mut h, (b as f64).sqrt() as f32);
    Ok(h)
}

/// PLE inputs `[T, L, P]`: `(rmsnorm(h0 W_plmp^T * B^-0.5) + E_ple[ids] * sqrt(P)) * 2^-0.5`.
fn per_layer_inputs(
    p: &PleGlobalWeights<'_>,
    cfg: &Gemma4Config,
    ids: &[u32],
    h0: &[f32],
    observer: &mut dyn Observer,
) -> Result<Vec<f32>> {
    let t = ids.len();
    let width = p.embed.cols();
    let pd = cfg.hidden_size_per_layer_input;
    let mut tok = vec![0f32; t * width];
    for (row, &id) in tok.chunks_mut(width).zip(ids) {
        // transformers maps ids outside the per-layer vocabulary to 0.
        let id = if (id as usize) < p.embed.rows() {
            id
        } else {
            0
        };
        p.embed.rows_to_f32(id as usize, 1, row)?;
    }
    scale(&mut tok, (pd as f64).sqrt() as f32);
    observe(observer, None, p.proj.name(), h0, t);
    let mut proj = linear(h0, t, p.proj.as_ref())?;
    scale(&mut proj, (cfg.hidden_size as f64).powf(-0.5) as f32);
    rms_norm_rows(&mut proj, pd, Some(&p.norm), cfg.rms_norm_eps as f32);
    add_assign(&mut proj, &tok);
    scale(&mut proj, 0.5f64.sqrt() as f32);
    Ok(proj)
}

/// Tied head over the final hidden `[T, B]` in embedding row chunks, then the softcap. With
/// `release` (streaming) each chunk's pages are dropped once used.
fn head(
    src: &dyn Weights,
    g: &GlobalWeights<'_>,
    cfg: &Gemma4Config,
    h: &[f32],
    t: usize,
    release: bool,
    observer: &mut dyn Observer,
) -> Result<Vec<f32>> {
    observe(observer, None, g.embed.name(), h, t);
    head_rows(src, g, cfg, h, t, release)
}

/// [`head`] without the observer: the logits `[T, vocab]` of `h [T, B]`.
fn head_rows(
    src: &dyn Weights,
    g: &GlobalWeights<'_>,
    cfg: &Gemma4Config,
    h: &[f32],
    t: usize,
    release: bool,
) -> Result<Vec<f32>> {
    let v = cfg.vocab_size;
    let mut out = vec![0f32; t * v];
    let mut r0 = 0;
    while r0 < v {
        let r1 = (r0 + HEAD_CHUNK).min(v);
        linear_rows_into(h, t, g.embed.as_ref(), r0..r1, &mut out[r0..], v)?;
        if release {
            src.release("embed_tokens.weight");
        }
        r0 = r1;
    }
    if let Some(cap) = cfg.final_logit_softcapping {
        softcap(&mut out, cap as f32);
    }
    Ok(out)
}

/// The logits of a group of chunks from [`LayerMajor::logits`], stored as one matrix.
pub struct GroupLogits {
    data: Vec<f32>,
    spans: Vec<std::ops::Range<usize>>,
}

impl GroupLogits {
    /// The `i`-th chunk's logits `[rows, vocab]`, row-major.
    pub fn chunk(&self, i: usize) -> Option<&[f32]> {
        self.spans.get(i).map(|r| &self.data[r.clone()])
    }
}
