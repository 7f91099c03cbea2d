//! Accuracy evidence: the figures a candidate is ranked by, from `g4q verify --json` reports
//! (`--reports DIR`) or from scoring the candidates here (`--evaluate`, see
//! [`super::evaluate`]). A candidate without evidence stays "not measured" and is never
//! picked.

use std::path::Path;

use serde::{Deserialize, Serialize};
use verify::metrics::Metrics;
use verify::report::Report as VerifyReport;

use super::candidates::Candidate;

/// The figures of one candidate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    pub kld_mean: f64,
    pub kld_mean_stderr: f64,
    pub top1_agreement: f64,
    pub ppl_ratio: f64,
    /// Scored positions.
    pub tokens: usize,
    /// Where the figures come from: the report's file, or `evaluated`.
    pub source: String,
}

impl Evidence {
    /// The figures of `m`, from `source`.
    pub fn from_metrics(m: &Metrics, source: &str) -> Evidence {
        Evidence {
            kld_mean: m.kld_mean,
            kld_mean_stderr: m.kld_mean_stderr,
            top1_agreement: m.top1_agreement,
            ppl_ratio: m.ppl_ratio,
            tokens: m.tokens,
            source: source.to_string(),
        }
    }
}

/// Every `*.json` of `dir` (sorted by name) as a verify report; the error names the first file
/// that is not one. The combined report `g4q release` writes beside the per-file ones (an object
/// with `reports` and no `candidate`) repeats them and is passed over, so the `reports/` folder
/// of a release reads as it is.
pub fn read_reports(dir: &Path) -> Result<Vec<(String, VerifyReport)>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut files: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(format!("{}: no *.json verify reports", dir.display()));
    }
    let mut out = Vec::with_capacity(files.len());
    for p in &files {
        let name = p.display().to_string();
        let text = std::fs::read_to_string(p).map_err(|e| format!("{name}: {e}"))?;
        if is_combined(&text) {
            continue;
        }
        out.push((
            name.clone(),
            VerifyReport::from_json(&text, &name).map_err(|e| e.to_string())?,
        ));
    }
    if out.is_empty() {
        return Err(format!("{}: no *.json verify reports", dir.display()));
    }
    Ok(out)
}

/// Whether `text` is a combined release report (`{"tool", "version", "reports": [...]}`).
fn is_combined(text: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(text).is_ok_and(|v| {
        v.get("reports").is_some_and(|r| r.is_array()) && v.get("candidate").is_none()
    })
}

/// Whether the file name of `path` (without extension, case-insensitive, `-` and `_` alike)
/// ends with `name` after a separator or is `name`: `gemma-Q4_K_M.gguf` is a `Q4_K_M` and not a
/// `Q4_K_M-imatrix`; the folder `gemma-AWQ-int4-g128` (as `g4q release` names it) is an
/// `AWQ_INT4_G128`.
pub fn path_names(path: &str, name: &str) -> bool {
    let file = path
        .trim_end_matches(['/', '\\'])
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or(path);
    let stem = file
        .strip_suffix(".gguf")
        .unwrap_or(file)
        .to_ascii_uppercase()
        .replace('-', "_");
    let name = name.to_ascii_uppercase().replace('-', "_");
    stem == name
        || stem
            .strip_suffix(&name)
            .is_some_and(|head| head.ends_with(|c: char| !c.is_ascii_alphanumeric()))
}

/// The evidence for each candidate from `reports`: the report whose candidate sha256 is the
/// candidate's, else the one whose candidate file is named by the candidate's type (see
/// [`path_names`]). Reports without metrics (a run that failed its `finite` gate) are no
/// evidence. Errors: two reports for one candidate, or reports made against different
/// references or data (their KLDs would not be comparable).
pub fn match_reports(
    candidates: &[Candidate],
    reports: &[(String, VerifyReport)],
) -> Result<Vec<Option<Evidence>>, String> {
    let mut used: Vec<&(String, VerifyReport)> = Vec::new();
    let mut out = Vec::new();
    for c in candidates {
        let by_sha: Vec<_> = reports
            .iter()
            .filter(|(_, r)| c.sha256.as_deref() == Some(r.candidate.sha256.as_str()))
            .collect();
        let hits = if by_sha.is_empty() {
            reports
                .iter()
                .filter(|(_, r)| path_names(&r.candidate.path, &c.name))
                .collect()
        } else {
            by_sha
        };
        let hits: Vec<_> = hits
            .into_iter()
            .filter(|(_, r)| r.metrics.is_some())
            .collect();
        match hits.as_slice() {
            [] => out.push(None),
            [one] => {
                let m = one.1.metrics.as_ref().expect("filtered on metrics");
                out.push(Some(Evidence::from_metrics(m, &one.0)));
                used.push(one);
            }
            [a, b, ..] => {
                return Err(format!(
                    "{} and {} are both reports of candidate {}",
                    a.0, b.0, c.name
                ))
            }
        }
    }
    if let Some(((fa, a), rest)) = used.split_first().map(|(a, r)| ((&a.0, &a.1), r)) {
        for (fb, b) in rest {
            if b.reference.sha256 != a.reference.sha256 {
                return Err(format!("{fb}: another reference model than {fa}'s"));
            }
            if b.data.tokens_sha256 != a.data.tokens_sha256 || b.data.scored != a.data.scored {
                return Err(format!(
                    "{fb}: scored on other data than {fa} (KLDs would not be comparable)"
                ));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_name_types() {
        let cases = [
            ("/x/gemma-Q4_K_M.gguf", "Q4_K_M", true),
            ("Q4_K_M.gguf", "Q4_K_M", true),
            ("/x/gemma-q4_k_m.gguf", "Q4_K_M", true),
            ("/x/gemma-Q4_K_M-imatrix.gguf", "Q4_K_M", false),
            ("/x/gemma-Q4_K_M-imatrix.gguf", "Q4_K_M-imatrix", true),
            ("/x/gemma-IQ4_XS.gguf", "Q4_XS", false),
            ("/x/gemma-Q4_K_S.gguf", "Q4_K_M", false),
            ("/x/gemma-Q8_0.gguf", "Q4_K_M", false),
            ("/x/gemma-Q4_K_M-awq.gguf", "Q4_K_M", false),
            ("/x/gemma-Q4_K_M-awq.gguf", "Q4_K_M-awq", true),
            ("/x/gemma-AWQ-int4-g128", "AWQ_INT4_G128", true),
            ("/x/gemma-AWQ-int4-g128/", "AWQ_INT4_G128", true),
            ("/x/gemma-AWQ-int4-g64", "AWQ_INT4_G128", false),
        ];
        for (p, n, want) in cases {
            assert_eq!(path_names(p, n), want, "{p} {n}");
        }
        println!("checked {} file-name cases", cases.len());
    }
}
