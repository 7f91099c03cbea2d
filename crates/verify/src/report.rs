//! The verification report: every figure of a run with its inputs' fingerprints, the tool
//! version and the command, as JSON (`schemas/verify-report.schema.json`) and as a terminal
//! table; and the comparison with an earlier report (`--baseline`).
//!
//! The metrics sit at the top level of the JSON (`kld_mean`, `ppl_reference`, ...) so that CI
//! scripts can read them with one `jq` path.

use serde::{Deserialize, Serialize};

use crate::candidate::InputRecord;
use crate::compare::LayerError;
use crate::error::{Result, VerifyError};
use crate::gates::GateResult;
use crate::metrics::Metrics;

/// How the evaluation data was cut and scored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DataRecord {
    #[serde(flatten)]
    pub input: InputRecord,
    /// sha256 of the evaluation token ids (little-endian u32, chunks in order, BOS included).
    pub tokens_sha256: String,
    pub ctx: usize,
    pub chunks: usize,
    /// `second-half` (llama.cpp) or `all`.
    pub scored: String,
}

/// The whole report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub tool: String,
    pub version: String,
    /// The command line, as run.
    pub command: String,
    pub reference: InputRecord,
    pub candidate: InputRecord,
    /// How GGUF models multiplied: `ggml` (8-bit activations, as llama.cpp) or `dequantize`.
    pub gguf_math: String,
    pub data: DataRecord,
    #[serde(flatten)]
    pub metrics: Metrics,
    /// Relative error of the residual stream after the embedding (0) and each layer (`i + 1`).
    pub layers: Vec<LayerError>,
    pub gates: Vec<GateResult>,
    /// Present when `--baseline` was given.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub baseline: Option<BaselineComparison>,
    pub seconds: f64,
    /// Tokens run through both models per second (every position of every chunk).
    pub tokens_per_second: f64,
}

impl Report {
    /// The report as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report always serialises")
    }

    /// Parses a report written by [`Report::to_json`]; `file` names it in errors.
    pub fn from_json(text: &str, file: &str) -> Result<Self> {
        serde_json::from_str(text)
            .map_err(|e| VerifyError::Input(format!("{file}: not a g4q verify report: {e}")))
    }

    /// The human-readable table.
    pub fn table(&self) -> String {
        let m = &self.metrics;
        let mut s = String::new();
        let mut line = |k: &str, v: String| s.push_str(&format!("  {k:<22} {v}\n"));
        line("reference", self.reference.path.clone());
        line(
            "candidate",
            if self.candidate.kind == "gguf" {
                format!(
                    "{} (gguf, {} products)",
                    self.candidate.path, self.gguf_math
                )
            } else {
                format!("{} ({})", self.candidate.path, self.candidate.kind)
            },
        );
        line(
            "data",
            format!(
                "{} ({} chunks x {} tokens, {} positions scored)",
                self.data.input.path, self.data.chunks, self.data.ctx, self.data.scored
            ),
        );
        line("tokens scored", m.tokens.to_string());
        line(
            "PPL reference",
            format!("{:.4} ± {:.4}", m.ppl_reference, m.ppl_reference_stderr),
        );
        line(
            "PPL candidate",
            format!("{:.4} ± {:.4}", m.ppl_candidate, m.ppl_candidate_stderr),
        );
        line(
            "PPL ratio",
            format!("{:.6} ± {:.6}", m.ppl_ratio, m.ppl_ratio_stderr),
        );
        line(
            "KLD mean",
            format!("{:.6} ± {:.6}", m.kld_mean, m.kld_mean_stderr),
        );
        line(
            "KLD median/p99/max",
            format!("{:.6} / {:.6} / {:.6}", m.kld_median, m.kld_p99, m.kld_max),
        );
        line(
            "top-1 agreement",
            format!(
                "{:.3}% ± {:.3}%",
                100.0 * m.top1_agreement,
                100.0 * m.top1_agreement_stderr
            ),
        );
        line(
            "mean Δp",
            format!(
                "{:+.4}% ± {:.4}%",
                100.0 * m.delta_p_mean,
                100.0 * m.delta_p_mean_stderr
            ),
        );
        line(
            "RMS Δp",
            format!(
                "{:.4}% ± {:.4}%",
                100.0 * m.delta_p_rms,
                100.0 * m.delta_p_rms_stderr
            ),
        );
        if !self.layers.is_empty() {
            let errs: Vec<String> = self
                .layers
                .iter()
                .map(|l| format!("{:.2e}", l.relative_error))
                .collect();
            line("hidden rel. error", errs.join(" "));
        }
        line(
            "speed",
            format!(
                "{:.1} tokens/s ({:.2} s)",
                self.tokens_per_second, self.seconds
            ),
        );
        if let Some(b) = &self.baseline {
            line("baseline", b.file.clone());
            for d in &b.metrics {
                let flag = if d.regression { "  REGRESSION" } else { "" };
                line(
                    &format!("  {}", d.metric),
                    format!(
                        "{:.6} -> {:.6} (noise {:.6}){flag}",
                        d.baseline, d.current, d.noise
                    ),
                );
            }
            if !b.same_data {
                line(
                    "  note",
                    "the baseline ran on other data or chunking".into(),
                );
            }
        }
        for g in &self.gates {
            let verdict = if g.passed { "pass" } else { "FAIL" };
            line(
                &format!("gate {}", g.name),
                format!(
                    "{verdict}: {} {:.6} {} {}",
                    g.metric, g.value, g.comparison, g.threshold
                ),
            );
        }
        s
    }
}

/// A metric compared with the baseline report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricDelta {
    pub metric: String,
    pub baseline: f64,
    pub current: f64,
    /// Two combined standard errors: `2 sqrt(se_baseline² + se_current²)`.
    pub noise: f64,
    /// Worse than the baseline by more than `noise`.
    pub regression: bool,
}

/// The comparison with an earlier report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BaselineComparison {
    pub file: String,
    /// Whether both runs scored the same tokens the same way (otherwise the noise estimate
    /// still holds, but differences may come from the data).
    pub same_data: bool,
    pub metrics: Vec<MetricDelta>,
}

impl BaselineComparison {
    /// Compares `current` with `base`: KLD mean, top-1 agreement, the perplexity ratio and
    /// RMS Δp, each flagged as a regression when it is worse by more than two combined
    /// standard errors (about 95% confidence that the change is real).
    pub fn new(file: &str, base: &Report, current: &Metrics, data: &DataRecord) -> Self {
        let b = &base.metrics;
        // (name, baseline, its stderr, current, its stderr, higher is worse)
        let rows = [
            (
                "kld_mean",
                b.kld_mean,
                b.kld_mean_stderr,
                current.kld_mean,
                current.kld_mean_stderr,
                true,
            ),
            (
                "top1_agreement",
                b.top1_agreement,
                b.top1_agreement_stderr,
                current.top1_agreement,
                current.top1_agreement_stderr,
                false,
            ),
            (
                "ppl_ratio",
                b.ppl_ratio,
                b.ppl_ratio_stderr,
                current.ppl_ratio,
                current.ppl_ratio_stderr,
                true,
            ),
            (
                "delta_p_rms",
                b.delta_p_rms,
                b.delta_p_rms_stderr,
                current.delta_p_rms,
                current.delta_p_rms_stderr,
                true,
            ),
        ];
        let metrics = rows
            .iter()
            .map(|&(metric, old, se_old, new, se_new, higher_worse)| {
                let noise = 2.0 * (se_old * se_old + se_new * se_new).sqrt();
                let worse_by = if higher_worse { new - old } else { old - new };
                MetricDelta {
                    metric: metric.into(),
                    baseline: old,
                    current: new,
                    noise,
                    regression: worse_by > noise,
                }
            })
            .collect();
        BaselineComparison {
            file: file.into(),
            same_data: base.data.tokens_sha256 == data.tokens_sha256
                && base.data.scored == data.scored,
            metrics,
        }
    }

    /// The gate the baseline adds: passes when no metric regressed.
    pub fn gate(&self) -> GateResult {
        let n = self.metrics.iter().filter(|m| m.regression).count();
        GateResult::at_most("baseline", "regressions", 0.0, n as f64)
    }
}
