//! The imatrix run: every chunk through the reference forward pass with the collector attached.
//!
//! Weights are resolved once ([`verify::Model`]: zero-copy views of the mmap) and the chunks run
//! one after another, so memory is the mapped weights plus one chunk's activations. Each chunk is
//! an independent sequence (no state carries over), as llama-imatrix clears its KV cache per
//! chunk. The tied head is skipped: llama-imatrix does not collect `output.weight` by default,
//! and on the released 262k-token vocabulary it is the largest GEMM of the pass.

use verify::{Model, Weights};

use crate::calibrate::chunks::split_chunks;
use crate::calibrate::collector::ImatrixCollector;
use crate::error::Result;
use crate::imatrix::Imatrix;

/// How to cut the calibration tokens, and what to record as the data set.
#[derive(Clone, Debug)]
pub struct ImatrixOptions {
    /// Tokens per chunk (llama-imatrix `-c`), recorded as `imatrix.chunk_size`.
    pub ctx: usize,
    /// At most this many chunks (llama-imatrix `--chunks`); `None`: as many as the text fills.
    pub max_chunks: Option<usize>,
    /// The data set name written to `imatrix.datasets` (llama.cpp writes the `-f` path as given).
    pub dataset: String,
}

/// Computes the importance matrix of `src` over `tokens` (BOS first, as
/// [`crate::calibrate::calibration_tokens`] returns them). `progress(done, total)` is called
/// after every layer of every chunk.
pub fn compute_imatrix(
    src: &dyn Weights,
    tokens: &[u32],
    opts: &ImatrixOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Imatrix> {
    let cfg = src.config();
    let chunks = split_chunks(tokens, opts.ctx, opts.max_chunks, cfg.bos_token_id)?;
    let model = Model::load(src)?;
    let mut collector = ImatrixCollector::new(cfg.num_experts);
    let n_layers = cfg.num_hidden_layers;
    let total = chunks.len() * n_layers;
    for (i, chunk) in chunks.iter().enumerate() {
        let mut tick = |done: usize, _all: usize| progress(i * n_layers + done, total);
        model.observe_layers(chunk, &mut collector, &mut tick)?;
        // Stop at the first bad chunk rather than after the whole run.
        collector.check()?;
    }
    let chunk_count = u32::try_from(chunks.len()).unwrap_or(u32::MAX);
    let chunk_size = u32::try_from(opts.ctx).unwrap_or(u32::MAX);
    collector.finish(vec![opts.dataset.clone()], chunk_count, chunk_size)
}
