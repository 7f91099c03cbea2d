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
    /// Absent when the candidate's weights, logits or metrics were not finite: the run then
    /// stopped and its failing `finite` gate says where.
    #[serde(flatten)]
    pub metrics: Option<Metrics>,
    /// Relative error of the residual stream after the embedding (0) and each layer (`i + 1`).
    pub layers: Vec<LayerError>,
    pub gates: Vec<GateResult>,
    /// Present when `--baseline` was given.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub baseline: Option<BaselineComparison>,
    pub seconds: f64,
    /// Tokens run through both models per second (every position of every chunk); 0 when the
    /// run stopped on a non-finite candidate.
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

    /// Parses `text` as the `--baseline` of a run against the reference whose fingerprint is
    /// `reference_sha256`, and checks that it can serve as one (see [`Report::check_baseline`]).
    pub fn baseline_from_json(text: &str, file: &str, reference_sha256: &str) -> Result<Self> {
        let report = Report::from_json(text, file)?;
        // Before the unknown-field check: a report without metrics would otherwise be refused
        // for its first metric key, which says nothing of why.
        if report.metrics.is_none() {
            let why = match report
                .gates
                .iter()
                .find(|g| g.name == "finite" && !g.passed)
            {
                Some(g) => format!(
                    "its run failed gate finite ({}), so it has no metrics",
                    cut_long(g.message.as_deref().unwrap_or(""))
                ),
                // The flattened metrics read as absent whatever failed: ask which one did.
                None => match serde_json::from_str::<Metrics>(text) {
                    Err(e) => format!("its metrics are incomplete: {}", cut_long(&e.to_string())),
                    Ok(_) => "its metrics are incomplete".to_string(),
                },
            };
            return Err(VerifyError::Input(format!(
                "{file}: not a usable baseline: {why}"
            )));
        }
        // serde skips fields it does not know (and cannot be told otherwise through the
        // flattened metrics): any key the report would not write back is a stranger.
        let given: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| VerifyError::Input(format!("{file}: not a g4q verify report: {e}")))?;
        let known = serde_json::to_value(&report)
            .map_err(|e| VerifyError::Input(format!("{file}: not a g4q verify report: {e}")))?;
        if let Some(key) = unknown_key(&given, &known) {
            return Err(VerifyError::Input(format!(
                "{file}: not a usable baseline: unknown field {}",
                cut(&key)
            )));
        }
        report.check_baseline(file, reference_sha256)?;
        Ok(report)
    }

    /// Checks that this report can be a baseline: what `schemas/verify-report.schema.json`
    /// requires (tool, version, enums, fingerprints, ranges), made against the same reference
    /// model (`reference_sha256`), and figures that n scored tokens can produce. The regression
    /// gate trusts the baseline's standard errors as noise, so an impossible one (1e300) would
    /// turn it off; each is bounded by what its per-token values allow.
    pub fn check_baseline(&self, file: &str, reference_sha256: &str) -> Result<()> {
        let bad = |what: String| {
            Err(VerifyError::Input(format!(
                "{file}: not a usable baseline: {what}"
            )))
        };
        if self.tool != "g4q" {
            return bad(format!("tool is {:?}, not \"g4q\"", cut(&self.tool)));
        }
        if !is_version(&self.version) {
            return bad(format!("version {:?} is not x.y.z", cut(&self.version)));
        }
        if self.command.is_empty() {
            return bad("command is empty".into());
        }
        for (name, input, kinds) in [
            ("reference", &self.reference, MODEL_KINDS),
            ("candidate", &self.candidate, MODEL_KINDS),
            ("data", &self.data.input, DATA_KINDS),
        ] {
            if !kinds.contains(&input.kind.as_str()) {
                return bad(format!("{name} kind {:?} is unknown", cut(&input.kind)));
            }
            if !is_sha256(&input.sha256) {
                return bad(format!(
                    "{name} sha256 {:?} is not a sha256",
                    cut(&input.sha256)
                ));
            }
        }
        if !is_sha256(&self.data.tokens_sha256) {
            return bad("data tokens_sha256 is not a sha256".into());
        }
        if self.reference.sha256 != reference_sha256 {
            return bad(format!(
                "it was made against another reference model (sha256 {}, this run's {})",
                self.reference.sha256, reference_sha256
            ));
        }
        if !["ggml", "dequantize"].contains(&self.gguf_math.as_str()) {
            return bad(format!("gguf_math {:?} is unknown", cut(&self.gguf_math)));
        }
        if !["second-half", "all"].contains(&self.data.scored.as_str()) {
            return bad(format!(
                "data scored {:?} is unknown",
                cut(&self.data.scored)
            ));
        }
        if self.data.ctx < 2 || self.data.chunks == 0 {
            return bad(format!(
                "ctx {} and chunks {} cannot be a run",
                self.data.ctx, self.data.chunks
            ));
        }
        let Some(m) = &self.metrics else {
            return bad("it has no metrics".into());
        };
        if m.tokens == 0 || m.tokens > self.data.ctx.saturating_mul(self.data.chunks) {
            return bad(format!(
                "{} tokens scored do not fit {} chunks of {}",
                m.tokens, self.data.chunks, self.data.ctx
            ));
        }
        if let Some((name, v)) = m.first_non_finite() {
            return bad(format!("{name} is {v}"));
        }
        if let Some(why) = implausible(m) {
            return bad(why);
        }
        for (what, v) in [
            ("seconds", self.seconds),
            ("tokens_per_second", self.tokens_per_second),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return bad(format!("{what} is {v}"));
            }
        }
        if let Some(l) = self
            .layers
            .iter()
            .find(|l| !(l.relative_error.is_finite() && l.relative_error >= 0.0))
        {
            return bad(format!(
                "layer {} relative_error is {}",
                l.index, l.relative_error
            ));
        }
        for g in &self.gates {
            if !GATE_NAMES.contains(&g.name.as_str())
                || !["<=", ">="].contains(&g.comparison.as_str())
            {
                return bad(format!(
                    "gate {:?} {:?} is unknown",
                    cut(&g.name),
                    cut(&g.comparison)
                ));
            }
        }
        Ok(())
    }

    /// The human-readable table.
    pub fn table(&self) -> String {
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
        let Some(m) = &self.metrics else {
            line("metrics", "none: the candidate is not finite".into());
            for g in &self.gates {
                line(&format!("gate {}", g.name), gate_verdict(g));
            }
            return s;
        };
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
        if let Some(b) = m.kld_bound {
            line(
                "KLD (top-k approx.)",
                format!(
                    "from a stored top-k reference: true mean in [{:.6}, {:.6}]",
                    m.kld_mean,
                    m.kld_mean + b
                ),
            );
        }
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
            line(&format!("gate {}", g.name), gate_verdict(g));
        }
        s
    }
}

/// A gate's line in the table: its message when it has one, else value against threshold.
fn gate_verdict(g: &GateResult) -> String {
    let verdict = if g.passed { "pass" } else { "FAIL" };
    match &g.message {
        Some(m) => format!("{verdict}: {m}"),
        None => format!(
            "{verdict}: {} {:.6} {} {}",
            g.metric, g.value, g.comparison, g.threshold
        ),
    }
}

/// What the report's model inputs can be (the schema's `kind` enum).
const MODEL_KINDS: &[&str] = &["safetensors", "gguf", "awq"];
/// What its data input can be.
const DATA_KINDS: &[&str] = &["text", "tokens", "bundled"];
/// The gates a report can hold.
const GATE_NAMES: &[&str] = &["max_kld", "min_top1", "max_ppl_ratio", "baseline", "finite"];

/// A Gemma 4 logit is soft-capped to ±30, so one token's log-likelihood under one model is within
/// `2·30 + ln(vocab)` (about 73 nats for a 262k vocabulary) of its log-likelihood under another;
/// 100 nats bounds the per-token difference of any two runs g4q can make.
const MAX_NLL_DIFFERENCE: f64 = 100.0;

/// Why the figures of `m` cannot come from `m.tokens` scored positions, or `None`. Each
/// standard error is `sqrt(var / (n - 1))`, and the variance of a per-token value is bounded by
/// its range: top-1 hits are 0 or 1 (variance `p (1 - p)`), |Δp| is at most 1 (variance of Δp at
/// most mean(Δp²) = rms²; of Δp² at most rms²), KLD terms lie in `[0, kld_max]` (variance at
/// most `kld_max · kld_mean`), and per-token log-likelihood differences lie within
/// [`MAX_NLL_DIFFERENCE`].
fn implausible(m: &Metrics) -> Option<String> {
    let out_of = |name: &str, v: f64, lo: f64, hi: f64| {
        (!(lo..=hi).contains(&v)).then(|| format!("{name} {v} is outside {lo}..={hi}"))
    };
    let checks = [
        out_of("top1_agreement", m.top1_agreement, 0.0, 1.0),
        out_of("delta_p_mean", m.delta_p_mean, -1.0, 1.0),
        out_of("delta_p_rms", m.delta_p_rms, 0.0, 1.0),
        out_of("ppl_reference", m.ppl_reference, 1.0, f64::MAX),
        out_of("ppl_candidate", m.ppl_candidate, 1.0, f64::MAX),
        out_of("ppl_ratio", m.ppl_ratio, f64::MIN_POSITIVE, f64::MAX),
        out_of("kld_max", m.kld_max, 0.0, f64::MAX),
    ];
    if let Some(why) = checks.into_iter().flatten().next() {
        return Some(why);
    }
    for (name, v) in m.figures() {
        if name.ends_with("_stderr") && v < 0.0 {
            return Some(format!("{name} {v} is negative"));
        }
    }
    let n = m.tokens as f64;
    // With one token every standard error is 0.
    let per = if m.tokens < 2 { 0.0 } else { 1.0 / (n - 1.0) };
    let kld_mean = m.kld_mean.max(0.0);
    let p = m.top1_agreement;
    let bounds = [
        (
            "kld_mean_stderr",
            m.kld_mean_stderr,
            (m.kld_max * kld_mean * per).sqrt(),
        ),
        (
            "top1_agreement_stderr",
            m.top1_agreement_stderr,
            (p * (1.0 - p) * per).sqrt(),
        ),
        (
            "delta_p_mean_stderr",
            m.delta_p_mean_stderr,
            m.delta_p_rms * per.sqrt(),
        ),
        ("delta_p_rms_stderr", m.delta_p_rms_stderr, 0.5 * per.sqrt()),
        (
            "ppl_ratio_stderr",
            m.ppl_ratio_stderr,
            m.ppl_ratio * MAX_NLL_DIFFERENCE * per.sqrt(),
        ),
    ];
    for (name, v, bound) in bounds {
        // Room for rounding: the figures were summed in f64 over many tokens.
        if v > bound * (1.0 + 1e-6) + 1e-12 {
            return Some(format!(
                "{name} {v} is more than {} scored tokens allow ({bound:e})",
                m.tokens
            ));
        }
    }
    if m.kld_mean > m.kld_max * (1.0 + 1e-9) + 1e-12 {
        return Some(format!(
            "kld_mean {} exceeds kld_max {}",
            m.kld_mean, m.kld_max
        ));
    }
    None
}

/// The path of the first key of `given` (objects, arrays by index) that `known` lacks.
fn unknown_key(given: &serde_json::Value, known: &serde_json::Value) -> Option<String> {
    use serde_json::Value;
    match (given, known) {
        (Value::Object(g), Value::Object(k)) => g.iter().find_map(|(key, v)| match k.get(key) {
            None => Some(key.clone()),
            Some(kv) => unknown_key(v, kv).map(|inner| format!("{key}.{inner}")),
        }),
        (Value::Array(g), Value::Array(k)) => g
            .iter()
            .zip(k)
            .enumerate()
            .find_map(|(i, (v, kv))| unknown_key(v, kv).map(|inner| format!("{i}.{inner}"))),
        _ => None,
    }
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// `x.y.z` with an optional suffix, as the schema's `version` pattern says.
fn is_version(s: &str) -> bool {
    let mut parts = s.splitn(3, '.');
    let number =
        |p: Option<&str>| p.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    let (a, b) = (parts.next(), parts.next());
    let c = parts.next().map(|c| {
        let end = c.find(|ch: char| !ch.is_ascii_digit()).unwrap_or(c.len());
        &c[..end]
    });
    number(a) && number(b) && number(c)
}

/// A value from a file shortened for an error message.
fn cut(s: &str) -> String {
    cut_at(s, 40)
}

/// A message from a file (a gate's) shortened for an error message.
fn cut_long(s: &str) -> String {
    cut_at(s, 200)
}

fn cut_at(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
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
    pub fn new(
        file: &str,
        b: &Metrics,
        base_data: &DataRecord,
        current: &Metrics,
        data: &DataRecord,
    ) -> Self {
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
            same_data: base_data.tokens_sha256 == data.tokens_sha256
                && base_data.scored == data.scored,
            metrics,
        }
    }

    /// The gate the baseline adds: passes when no metric regressed.
    pub fn gate(&self) -> GateResult {
        let n = self.metrics.iter().filter(|m| m.regression).count();
        GateResult::at_most("baseline", "regressions", 0.0, n as f64)
    }
}
