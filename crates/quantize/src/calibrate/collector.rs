//! The importance-matrix collector: a [`verify::Observer`] that adds up x² per input column of
//! every `blk.*` weight the forward pass multiplies, following llama-imatrix's
//! `collect_imatrix`:
//!
//! - dense weights count only batches of at least [`MIN_ROWS`] token rows (llama.cpp skips
//!   smaller matrix multiplications) and keep one count, the tokens seen;
//! - MoE expert stacks (`ffn_gate_up_exps`, `ffn_down_exps`) keep one row of sums and one count
//!   per expert, fed only by the tokens routed to it, whatever the batch size;
//! - model-level weights (the PLE projection, the tied head) are not collected: llama.cpp only
//!   looks at `blk.*` (its `--process-output` head option aside), and the embeddings are lookups.
//!
//! Sums are kept in f64 and written as f32: llama.cpp sums in f32, which over long calibration
//! runs loses low bits, so this is at least as accurate and still deterministic (the observer is
//! called in a fixed order on one thread).

use std::collections::{BTreeMap, HashMap};

use convert::llama::gguf_name;
use verify::{LinearSite, Observer};

use crate::error::{QuantizeError, Result};
use crate::imatrix::{Entry, Imatrix};

/// Smallest batch (token rows) of a dense matrix multiplication that llama-imatrix collects.
pub const MIN_ROWS: usize = 16;

/// Running sums of one weight.
struct Acc {
    n_cols: usize,
    /// `n_mat × n_cols`, expert-major.
    sums: Vec<f64>,
    counts: Vec<u64>,
}

/// Accumulates Σx² and token counts per GGUF weight name over any number of forward passes.
pub struct ImatrixCollector {
    n_experts: usize,
    acc: BTreeMap<String, Acc>,
    /// Canonical name → GGUF name (or `None`: not collected), so each name is mapped once.
    names: HashMap<String, Option<String>>,
    /// The first inconsistency met (the observer cannot return errors); reported by `finish`.
    error: Option<String>,
}

impl ImatrixCollector {
    /// A collector for a model whose MoE layers (if any) have `n_experts` experts.
    pub fn new(n_experts: usize) -> Self {
        ImatrixCollector {
            n_experts,
            acc: BTreeMap::new(),
            names: HashMap::new(),
            error: None,
        }
    }

    /// The GGUF name under which `site` is collected, or `None` when llama-imatrix ignores it.
    fn target(&mut self, site: &LinearSite<'_>) -> Option<String> {
        site.layer?;
        self.names
            .entry(site.weight.to_string())
            .or_insert_with(|| gguf_name(site.weight).filter(|g| g.starts_with("blk.")))
            .clone()
    }

    fn fail(&mut self, message: String) {
        if self.error.is_none() {
            self.error = Some(message);
        }
    }

    /// The first error met so far (non-finite activations, inconsistent widths), if any.
    pub fn check(&self) -> Result<()> {
        match &self.error {
            Some(m) => Err(QuantizeError::Options(format!("imatrix collection: {m}"))),
            None => Ok(()),
        }
    }

    /// The collected sums as an [`Imatrix`] (names sorted, f32 values as llama.cpp stores them).
    pub fn finish(
        self,
        datasets: Vec<String>,
        chunk_count: u32,
        chunk_size: u32,
    ) -> Result<Imatrix> {
        self.check()?;
        let mut entries = BTreeMap::new();
        for (name, a) in self.acc {
            let sums: Vec<f32> = a.sums.iter().map(|&s| s as f32).collect();
            // Finite f64 sums can still exceed f32; llama.cpp refuses such files when reading.
            if sums.iter().any(|s| !s.is_finite()) {
                return Err(QuantizeError::Options(format!(
                    "imatrix collection: {name}: a sum of squares exceeds the f32 range"
                )));
            }
            let entry = Entry {
                n_cols: a.n_cols,
                sums,
                counts: a.counts.iter().map(|&c| c as f32).collect(),
            };
            entries.insert(name, entry);
        }
        Ok(Imatrix {
            entries,
            datasets,
            chunk_count,
            chunk_size,
        })
    }
}

impl Observer for ImatrixCollector {
    fn linear_input(&mut self, site: &LinearSite<'_>, x: &[f32], rows: usize, cols: usize) {
        let Some(name) = self.target(site) else {
            return;
        };
        let (mat, n_mat) = match site.expert {
            Some(e) => (e, self.n_experts),
            None if rows < MIN_ROWS => return,
            None => (0, 1),
        };
        if mat >= n_mat {
            self.fail(format!("{name}: expert {mat} of a model with {n_mat}"));
            return;
        }
        if cols == 0 || x.len() != rows.saturating_mul(cols) {
            self.fail(format!("{name}: {} values for {rows} x {cols}", x.len()));
            return;
        }
        if let Some(bad) = x.iter().position(|v| !v.is_finite()) {
            let message = format!(
                "{name}: non-finite activation {} in row {} column {}",
                x[bad],
                bad / cols,
                bad % cols
            );
            self.fail(message);
            return;
        }
        let acc = self.acc.entry(name.clone()).or_insert_with(|| Acc {
            n_cols: cols,
            sums: vec![0.0; n_mat * cols],
            counts: vec![0; n_mat],
        });
        if acc.n_cols != cols || acc.counts.len() != n_mat {
            let message = format!(
                "{name}: input width {cols} x {n_mat} after {} x {}",
                acc.n_cols,
                acc.counts.len()
            );
            self.fail(message);
            return;
        }
        let sums = &mut acc.sums[mat * cols..(mat + 1) * cols];
        for row in x.chunks_exact(cols) {
            for (s, &v) in sums.iter_mut().zip(row) {
                let v = f64::from(v);
                *s += v * v;
            }
        }
        acc.counts[mat] += rows as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site<'a>(weight: &'a str, layer: Option<usize>, expert: Option<usize>) -> LinearSite<'a> {
        LinearSite {
            layer,
            weight,
            expert,
            token_rows: None,
        }
    }

    #[test]
    fn sums_squares_per_column_and_expert() {
        let mut c = ImatrixCollector::new(4);
        let x: Vec<f32> = (0..16 * 2).map(|i| (i % 2 + 1) as f32).collect();
        c.linear_input(
            &site("layers.0.self_attn.q_proj.weight", Some(0), None),
            &x,
            16,
            2,
        );
        // Too few rows for a dense weight: ignored, as by llama-imatrix.
        c.linear_input(
            &site("layers.0.self_attn.q_proj.weight", Some(0), None),
            &x[..4],
            2,
            2,
        );
        // Experts count every routed row.
        c.linear_input(
            &site("layers.0.experts.down_proj", Some(0), Some(2)),
            &[3.0, 4.0],
            1,
            2,
        );
        // Model-level weights are not collected.
        c.linear_input(
            &site("per_layer_model_projection.weight", None, None),
            &x,
            16,
            2,
        );
        let im = c.finish(vec!["d.txt".into()], 1, 16).unwrap();
        let names: Vec<&str> = im.entries.keys().map(String::as_str).collect();
        assert_eq!(names, ["blk.0.attn_q.weight", "blk.0.ffn_down_exps.weight"]);
        let q = &im.entries["blk.0.attn_q.weight"];
        assert_eq!(
            (q.sums.as_slice(), q.counts.as_slice()),
            (&[16.0, 64.0][..], &[16.0][..])
        );
        let d = &im.entries["blk.0.ffn_down_exps.weight"];
        assert_eq!(d.counts, [0.0, 0.0, 1.0, 0.0]);
        assert_eq!(d.sums[4..6], [9.0, 16.0]);
        assert_eq!(d.sums.iter().sum::<f32>(), 25.0);
    }

    #[test]
    fn sums_beyond_f32_are_an_error() {
        let mut c = ImatrixCollector::new(0);
        let x = vec![1e30f32; 16];
        c.linear_input(
            &site("layers.0.mlp.down_proj.weight", Some(0), None),
            &x,
            16,
            1,
        );
        let err = c.finish(Vec::new(), 1, 16).unwrap_err().to_string();
        assert!(err.contains("blk.0.ffn_down.weight"), "{err}");
    }

    #[test]
    fn non_finite_input_is_an_error() {
        let mut c = ImatrixCollector::new(0);
        let mut x = vec![1.0f32; 32];
        x[5] = f32::NAN;
        c.linear_input(
            &site("layers.1.mlp.up_proj.weight", Some(1), None),
            &x,
            16,
            2,
        );
        let err = c.finish(Vec::new(), 0, 16).unwrap_err().to_string();
        assert!(err.contains("blk.1.ffn_up.weight"), "{err}");
    }
}
