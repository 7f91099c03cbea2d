//! CI gates: thresholds on the metrics, from flags or the `[verify.gates]` section of
//! `g4q.toml`, each checked into a verdict the report records and the exit code follows
//! (0 all passed, 1 a gate failed).
//!
//! ```toml
//! [verify.gates]
//! max_kld = 0.002        # mean KL divergence (reference ‖ candidate) at most this
//! min_top1 = 0.97        # top-1 agreement at least this (a fraction, 0..1)
//! max_ppl_ratio = 1.02   # ppl_candidate / ppl_reference at most this
//! ```
//!
//! Unknown tables and keys anywhere in the file (`[verfy.gates]`, `[Verify.Gates]`, a bare
//! `max_kld` at the top level), and thresholds that are negative, not finite or out of range are
//! errors, not silently ignored: a misspelt gate that never runs is worse than none.

use serde::{Deserialize, Serialize};

use crate::error::{Result, VerifyError};
use crate::metrics::Metrics;

/// The thresholds of the three gates; `None` means the gate is off.
#[derive(Clone, Copy, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    pub max_kld: Option<f64>,
    pub min_top1: Option<f64>,
    pub max_ppl_ratio: Option<f64>,
}

/// The whole of `g4q.toml`: `[verify.gates]` and `[recommend]` (read by `g4q recommend`) are
/// its only tables, so anything else is a typo.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    verify: Option<VerifySection>,
    #[allow(dead_code)]
    recommend: Option<toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VerifySection {
    gates: Option<Thresholds>,
}

impl Thresholds {
    /// Reads the `[verify.gates]` section of a `g4q.toml` text (`file` names it in errors);
    /// a file without the section sets no gates. Any other table or key is an error.
    pub fn from_toml(text: &str, file: &str) -> Result<Self> {
        let cfg: ConfigFile = toml::from_str(text)
            .map_err(|e| VerifyError::Input(format!("{file}: {}", one_line(&e, text))))?;
        let th = cfg.verify.and_then(|v| v.gates).unwrap_or_default();
        th.validate(file)?;
        Ok(th)
    }

    /// `self` with every gate that `over` sets replaced by `over`'s (flags override the file).
    pub fn overridden_by(self, over: Thresholds) -> Thresholds {
        Thresholds {
            max_kld: over.max_kld.or(self.max_kld),
            min_top1: over.min_top1.or(self.min_top1),
            max_ppl_ratio: over.max_ppl_ratio.or(self.max_ppl_ratio),
        }
    }

    /// Rejects thresholds no metric can meet meaningfully. `origin` names where they came from.
    pub fn validate(&self, origin: &str) -> Result<()> {
        let bad = |gate: &str, v: f64, why: &str| {
            Err(VerifyError::Input(format!(
                "{origin}: gate {gate} = {v} {why}"
            )))
        };
        if let Some(v) = self.max_kld {
            if !v.is_finite() || v < 0.0 {
                return bad("max_kld", v, "must be a finite number >= 0");
            }
        }
        if let Some(v) = self.min_top1 {
            if !(0.0..=1.0).contains(&v) {
                return bad("min_top1", v, "must be a fraction between 0 and 1");
            }
        }
        if let Some(v) = self.max_ppl_ratio {
            if !v.is_finite() || v <= 0.0 {
                return bad("max_ppl_ratio", v, "must be a finite number > 0");
            }
        }
        Ok(())
    }

    /// Checks every gate that is on against `m`.
    pub fn evaluate(&self, m: &Metrics) -> Vec<GateResult> {
        let mut out = Vec::new();
        if let Some(t) = self.max_kld {
            out.push(GateResult::at_most("max_kld", "kld_mean", t, m.kld_mean));
        }
        if let Some(t) = self.min_top1 {
            out.push(GateResult::at_least(
                "min_top1",
                "top1_agreement",
                t,
                m.top1_agreement,
            ));
        }
        if let Some(t) = self.max_ppl_ratio {
            out.push(GateResult::at_most(
                "max_ppl_ratio",
                "ppl_ratio",
                t,
                m.ppl_ratio,
            ));
        }
        out
    }
}

/// A TOML error of `text` on one line: toml's own messages quote the offending line with a
/// caret underneath; the message (which names the key) and the line number are kept.
fn one_line(e: &toml::de::Error, text: &str) -> String {
    let msg = e.message().trim().replace('\n', " ");
    match e.span() {
        Some(span) => {
            let line = text.as_bytes()[..span.start.min(text.len())]
                .iter()
                .filter(|&&b| b == b'\n')
                .count()
                + 1;
            format!("line {line}: {msg}")
        }
        None => msg,
    }
}

/// One gate's verdict.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GateResult {
    /// Gate name (`max_kld`, `min_top1`, `max_ppl_ratio`, `baseline`, `finite`).
    pub name: String,
    /// The report field it checks.
    pub metric: String,
    /// `<=` or `>=`: how the value must relate to the threshold.
    pub comparison: String,
    pub threshold: f64,
    pub value: f64,
    pub passed: bool,
    /// What went wrong, in words, where the figures cannot say it (the `finite` gate names
    /// the tensor or the position that was NaN or infinite).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub message: Option<String>,
}

impl GateResult {
    /// A gate that passes when `value <= threshold`.
    pub fn at_most(name: &str, metric: &str, threshold: f64, value: f64) -> Self {
        GateResult {
            name: name.into(),
            metric: metric.into(),
            comparison: "<=".into(),
            threshold,
            value,
            passed: value <= threshold,
            message: None,
        }
    }

    /// A gate that passes when `value >= threshold`.
    pub fn at_least(name: &str, metric: &str, threshold: f64, value: f64) -> Self {
        GateResult {
            name: name.into(),
            metric: metric.into(),
            comparison: ">=".into(),
            threshold,
            value,
            passed: value >= threshold,
            message: None,
        }
    }

    /// The gate a run fails when the candidate's weights, logits or metrics are NaN or
    /// infinite (`message` says which tensor or position): such a candidate cannot be scored,
    /// so it fails outright instead of every metric gate passing or failing on NaN. It is only
    /// in a report when it failed, so reports of finite runs are unchanged.
    pub fn not_finite(message: String) -> Self {
        GateResult {
            message: Some(message),
            ..GateResult::at_most("finite", "non_finite", 0.0, 1.0)
        }
    }
}

/// The error a run returns when a gate failed: the binary maps it to exit code 1.
#[derive(Debug, thiserror::Error)]
#[error("gate failed: {}", .failed.join("; "))]
pub struct GateFailed {
    /// One line per failed gate, e.g. `max_kld: kld_mean 0.0031 > 0.002`.
    pub failed: Vec<String>,
}

impl GateFailed {
    /// The failure of `gates`, or `None` when every gate passed.
    pub fn check(gates: &[GateResult]) -> Option<GateFailed> {
        let failed: Vec<String> = gates
            .iter()
            .filter(|g| !g.passed)
            .map(|g| match &g.message {
                Some(m) => format!("{}: {m}", g.name),
                None => {
                    let op = if g.comparison == "<=" { ">" } else { "<" };
                    format!("{}: {} {} {op} {}", g.name, g.metric, g.value, g.threshold)
                }
            })
            .collect();
        (!failed.is_empty()).then_some(GateFailed { failed })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_section_is_read_and_flags_override_it() {
        let t = Thresholds::from_toml(
            "# gates\n[verify.gates]\nmax_kld = 0.01\nmin_top1 = 0.9\n",
            "g4q.toml",
        )
        .unwrap();
        assert_eq!(t.max_kld, Some(0.01));
        let t = t.overridden_by(Thresholds {
            max_kld: Some(0.5),
            ..Thresholds::default()
        });
        assert_eq!(t.max_kld, Some(0.5));
        assert_eq!(t.min_top1, Some(0.9));
        assert_eq!(t.max_ppl_ratio, None);
        assert_eq!(
            Thresholds::from_toml("", "g4q.toml").unwrap(),
            Thresholds::default()
        );
    }

    #[test]
    fn malformed_sections_are_errors() {
        for text in [
            "[verify.gates]\nmax_kdl = 0.01\n",
            "[verify.gates]\nmax_kld = \"small\"\n",
            "[verify.gates]\nmin_top1 = 1.5\n",
            "[verify.gates]\nmax_kld = -1.0\n",
            "[verify]\ngate = 1\n",
            "[verify.gates\n",
        ] {
            let err = Thresholds::from_toml(text, "g4q.toml").unwrap_err();
            assert!(err.to_string().starts_with("g4q.toml"), "{err}");
        }
    }

    /// The `finite` gate fails with its message as the error line; the metric gates keep
    /// writing no `message`, so reports of finite runs keep their bytes.
    #[test]
    fn the_finite_gate_fails_with_its_message() {
        let g = GateResult::not_finite("the candidate's tensor 'x': NaN".into());
        assert!(!g.passed);
        let err = GateFailed::check(&[g]).unwrap().to_string();
        assert_eq!(err, "gate failed: finite: the candidate's tensor 'x': NaN");
        let kld = GateResult::at_most("max_kld", "kld_mean", 0.1, 0.2);
        assert!(!serde_json::to_string(&kld).unwrap().contains("message"));
        let err = GateFailed::check(&[kld]).unwrap().to_string();
        assert_eq!(err, "gate failed: max_kld: kld_mean 0.2 > 0.1");
        println!("checked 2 failing gates");
    }

    /// Each misspelling used to be read as "no gates", so the run passed whatever it measured.
    #[test]
    fn misspelt_tables_and_stray_keys_are_errors_naming_the_key() {
        let cases = [
            ("[verfy.gates]\nmax_kld = 0.01\n", "verfy"),
            ("[Verify.Gates]\nmax_kld = 0.01\n", "Verify"),
            ("[verify.Gates]\nmax_kld = 0.01\n", "Gates"),
            ("max_kld = 0.01\n", "max_kld"),
            ("[other]\nx = 1\n", "other"),
            (
                "[verify.gates]\nmax_kld = 0.01\n[verify.gates.extra]\n",
                "extra",
            ),
            ("[verify]\nmax_kld = 0.01\n", "max_kld"),
        ];
        for (text, key) in cases {
            let err = Thresholds::from_toml(text, "g4q.toml")
                .unwrap_err()
                .to_string();
            assert!(err.starts_with("g4q.toml: line "), "{err}");
            assert!(err.contains(&format!("`{key}`")), "{text:?}: {err}");
            assert!(!err.contains('\n'), "{err}");
        }
        println!("{} misspelt configs rejected", cases.len());
    }
}
