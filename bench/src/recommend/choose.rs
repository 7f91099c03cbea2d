//! The choice per device: each candidate's row (size, memory at the context, fit, predicted
//! speed, accuracy), the constraints it breaks, the Pareto frontier over (memory, KLD, decode
//! speed), and the pick: the most accurate candidate that fits and meets every constraint, where
//! KLDs within two standard errors of each other count as ties and ties go to the faster one.

use serde::{Deserialize, Serialize};

use super::evidence::Evidence;

/// One candidate on one device (a row of the table and of the JSON's `candidates[]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// `Q4_K_M`, `Q4_K_M-imatrix`, …
    pub name: String,
    /// The release file, for a release folder's candidate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// sha256 of the file the figures are of (a release file or an evaluated one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Tensor data bytes (exact: the `--dry-run` plan, or the file's tensors).
    pub bytes: u64,
    pub bits_per_weight: f64,
    /// weights + KV cache + compute buffers at the context.
    pub memory_bytes: u64,
    pub kv_cache_bytes: u64,
    pub compute_buffer_bytes: u64,
    /// Whether `memory_bytes` is at most the device's usable memory.
    pub fits: bool,
    pub decode_tokens_per_s: f64,
    pub prefill_tokens_per_s: f64,
    /// Accuracy; all `null` when the candidate is not measured.
    pub kld_mean: Option<f64>,
    pub kld_mean_stderr: Option<f64>,
    pub top1_agreement: Option<f64>,
    pub ppl_ratio: Option<f64>,
    /// Where the accuracy comes from (a report file, `evaluated`); `null`: not measured.
    pub evidence: Option<String>,
    /// Why `--evaluate` could not score it (a weight or logit that is not finite).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Why it cannot be picked: `does not fit`, `not measured` (with the error, when scoring
    /// failed: `not measured: …`), or a constraint it breaks
    /// (`kld_mean 0.004 > max_kld 0.002`). Empty: acceptable.
    pub rejected: Vec<String>,
    /// On the Pareto frontier over (memory, KLD, decode speed) among the measured candidates.
    pub frontier: bool,
}

impl Row {
    /// Sets the accuracy figures from `e` (or leaves them `null`).
    pub fn set_evidence(&mut self, e: Option<&Evidence>) {
        self.kld_mean = e.map(|e| e.kld_mean);
        self.kld_mean_stderr = e.map(|e| e.kld_mean_stderr);
        self.top1_agreement = e.map(|e| e.top1_agreement);
        self.ppl_ratio = e.map(|e| e.ppl_ratio);
        self.evidence = e.map(|e| e.source.clone());
    }
}

/// The constraints (flags or `[recommend]` in g4q.toml); `None` is off. Fitting in the device's
/// usable memory is always required.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Constraints {
    pub max_kld: Option<f64>,
    pub max_ppl_ratio: Option<f64>,
    pub min_top1: Option<f64>,
    pub min_decode_tps: Option<f64>,
    pub max_memory: Option<u64>,
}

impl Constraints {
    /// `self` with every constraint `over` sets replaced by `over`'s (flags override the file).
    pub fn overridden_by(self, over: Constraints) -> Constraints {
        Constraints {
            max_kld: over.max_kld.or(self.max_kld),
            max_ppl_ratio: over.max_ppl_ratio.or(self.max_ppl_ratio),
            min_top1: over.min_top1.or(self.min_top1),
            min_decode_tps: over.min_decode_tps.or(self.min_decode_tps),
            max_memory: over.max_memory.or(self.max_memory),
        }
    }

    /// Rejects values no candidate could meet meaningfully; `origin` names where they came from.
    pub fn validate(&self, origin: &str) -> Result<(), String> {
        let check = |name: &str, v: Option<f64>, ok: fn(f64) -> bool, why: &str| match v {
            Some(v) if !ok(v) => Err(format!("{origin}: {name} = {v} {why}")),
            _ => Ok(()),
        };
        let finite_pos = |v: f64| v.is_finite() && v >= 0.0;
        check(
            "max_kld",
            self.max_kld,
            finite_pos,
            "must be a finite number >= 0",
        )?;
        check(
            "max_ppl_ratio",
            self.max_ppl_ratio,
            |v| v.is_finite() && v > 0.0,
            "must be a finite number > 0",
        )?;
        check(
            "min_top1",
            self.min_top1,
            |v| (0.0..=1.0).contains(&v),
            "must be a fraction between 0 and 1",
        )?;
        check(
            "min_decode_tps",
            self.min_decode_tps,
            finite_pos,
            "must be a finite number >= 0",
        )?;
        Ok(())
    }

    /// Why `row` breaks a constraint, one entry per constraint broken (accuracy constraints
    /// only when the row is measured).
    pub fn violations(&self, row: &Row) -> Vec<String> {
        let mut v = Vec::new();
        let mut above = |name: &str, metric: &str, value: Option<f64>, limit: Option<f64>| {
            if let (Some(x), Some(t)) = (value, limit) {
                if x > t {
                    v.push(format!("{metric} {x:.6} > {name} {t}"));
                }
            }
        };
        above("max_kld", "kld_mean", row.kld_mean, self.max_kld);
        above(
            "max_ppl_ratio",
            "ppl_ratio",
            row.ppl_ratio,
            self.max_ppl_ratio,
        );
        if let (Some(x), Some(t)) = (row.top1_agreement, self.min_top1) {
            if x < t {
                v.push(format!("top1_agreement {x:.4} < min_top1 {t}"));
            }
        }
        if let Some(t) = self.min_decode_tps {
            if row.decode_tokens_per_s < t {
                v.push(format!(
                    "decode {:.2} tokens/s < min_decode_tps {t}",
                    row.decode_tokens_per_s
                ));
            }
        }
        if let Some(t) = self.max_memory {
            if row.memory_bytes > t {
                v.push(format!("memory {} B > max_memory {t} B", row.memory_bytes));
            }
        }
        v
    }
}

/// Fills each row's `rejected`: `not measured`, `does not fit`, then the broken constraints.
pub fn reject(rows: &mut [Row], c: &Constraints) {
    for r in rows.iter_mut() {
        let mut why = Vec::new();
        if r.kld_mean.is_none() {
            why.push(match &r.error {
                Some(e) => format!("not measured: {e}"),
                None => "not measured".to_string(),
            });
        }
        if !r.fits {
            why.push("does not fit".to_string());
        }
        why.extend(c.violations(r));
        r.rejected = why;
    }
}

/// Whether `a` dominates `b`: no more memory, no larger KLD, no slower decode, and better in one.
fn dominates(a: &Row, b: &Row) -> bool {
    let (Some(ka), Some(kb)) = (a.kld_mean, b.kld_mean) else {
        return false;
    };
    let no_worse = a.memory_bytes <= b.memory_bytes
        && ka <= kb
        && a.decode_tokens_per_s >= b.decode_tokens_per_s;
    let better =
        a.memory_bytes < b.memory_bytes || ka < kb || a.decode_tokens_per_s > b.decode_tokens_per_s;
    no_worse && better
}

/// Marks the Pareto frontier over (memory, KLD, decode speed) among the measured rows.
pub fn mark_frontier(rows: &mut [Row]) {
    let flags: Vec<bool> = rows
        .iter()
        .map(|r| r.kld_mean.is_some() && !rows.iter().any(|o| dominates(o, r)))
        .collect();
    for (r, f) in rows.iter_mut().zip(flags) {
        r.frontier = f;
    }
}

/// Whether two measured KLDs are a tie: their difference is within two standard errors of it
/// (`2·√(se_a² + se_b²)`).
pub fn tied(a: &Row, b: &Row) -> bool {
    match (a.kld_mean, a.kld_mean_stderr, b.kld_mean, b.kld_mean_stderr) {
        (Some(ka), Some(sa), Some(kb), Some(sb)) => {
            (ka - kb).abs() <= 2.0 * (sa * sa + sb * sb).sqrt()
        }
        _ => false,
    }
}

/// The pick among rows with nothing in `rejected`: the lowest mean KLD, and among the rows tied
/// with it ([`tied`]) the fastest decode (then the least memory, then the name). Returns its
/// index and the tied rows' indices (the pick included).
pub fn pick(rows: &[Row]) -> Option<(usize, Vec<usize>)> {
    let ok: Vec<usize> = (0..rows.len())
        .filter(|&i| rows[i].rejected.is_empty())
        .collect();
    let best = *ok.iter().min_by(|&&a, &&b| {
        let (ka, kb) = (rows[a].kld_mean, rows[b].kld_mean);
        ka.partial_cmp(&kb)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(rows[a].name.cmp(&rows[b].name))
    })?;
    let ties: Vec<usize> = ok
        .iter()
        .copied()
        .filter(|&i| i == best || tied(&rows[i], &rows[best]))
        .collect();
    let chosen = *ties.iter().min_by(|&&a, &&b| {
        let (ra, rb) = (&rows[a], &rows[b]);
        rb.decode_tokens_per_s
            .partial_cmp(&ra.decode_tokens_per_s)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(ra.memory_bytes.cmp(&rb.memory_bytes))
            .then(ra.name.cmp(&rb.name))
    })?;
    Some((chosen, ties))
}

fn gib(b: u64) -> String {
    format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64)
}

/// One sentence saying why `pick` (from [`pick`]) was chosen, or why nothing was, for a device
/// whose usable memory is `usable`.
pub fn reason(rows: &[Row], picked: Option<&(usize, Vec<usize>)>, usable: u64) -> String {
    let ok = rows.iter().filter(|r| r.rejected.is_empty()).count();
    let Some((i, ties)) = picked else {
        let count = |what: &str| {
            rows.iter()
                .filter(|r| r.rejected.iter().any(|w| w.starts_with(what)))
                .count()
        };
        let measured = rows.iter().filter(|r| r.kld_mean.is_some()).count();
        let mut parts = vec![format!(
            "{} of {} candidates are not measured",
            rows.len() - measured,
            rows.len()
        )];
        parts.push(format!(
            "{} do not fit in {} usable",
            count("does not fit"),
            gib(usable)
        ));
        let broke = rows
            .iter()
            .filter(|r| {
                r.rejected
                    .iter()
                    .any(|w| !w.starts_with("not measured") && w != "does not fit")
            })
            .count();
        parts.push(format!("{broke} break a constraint"));
        return format!("No candidate is acceptable: {}.", parts.join(", "));
    };
    let r = &rows[*i];
    let kld = format!(
        "{:.6} ± {:.6}",
        r.kld_mean.unwrap_or(f64::NAN),
        r.kld_mean_stderr.unwrap_or(f64::NAN)
    );
    let speed = format!("{:.1} tokens/s", r.decode_tokens_per_s);
    let others: Vec<&str> = ties
        .iter()
        .filter(|&&t| t != *i)
        .map(|&t| rows[t].name.as_str())
        .collect();
    if others.is_empty() {
        format!(
            "{} has the lowest mean KLD ({kld}) of the {ok} acceptable candidates (fit in {} usable and meet every constraint), needing {} and decoding at {speed}.",
            r.name,
            gib(usable),
            gib(r.memory_bytes)
        )
    } else {
        format!(
            "{} ties on KLD within two standard errors with {} (its KLD {kld}) and decodes fastest of them at {speed}, needing {} of {} usable.",
            r.name,
            others.join(", "),
            gib(r.memory_bytes),
            gib(usable)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn row(name: &str, mem: u64, kld: Option<(f64, f64)>, tps: f64) -> Row {
        Row {
            name: name.into(),
            file: None,
            sha256: None,
            bytes: mem / 2,
            bits_per_weight: 4.0,
            memory_bytes: mem,
            kv_cache_bytes: 0,
            compute_buffer_bytes: 0,
            fits: true,
            decode_tokens_per_s: tps,
            prefill_tokens_per_s: 10.0 * tps,
            kld_mean: kld.map(|k| k.0),
            kld_mean_stderr: kld.map(|k| k.1),
            top1_agreement: kld.map(|_| 0.95),
            ppl_ratio: kld.map(|k| 1.0 + k.0),
            evidence: kld.map(|_| "r.json".into()),
            error: None,
            rejected: Vec::new(),
            frontier: false,
        }
    }

    #[test]
    fn ties_go_to_the_faster() {
        // B is 0.0010 ± 0.0002, A 0.0012 ± 0.0002: difference 0.0002 < 2·√(2)·0.0002: tied.
        let mut rows = vec![
            row("A", 100, Some((0.0012, 0.0002)), 30.0),
            row("B", 200, Some((0.0010, 0.0002)), 20.0),
            row("C", 50, Some((0.0100, 0.0002)), 60.0),
        ];
        reject(&mut rows, &Constraints::default());
        let p = pick(&rows).unwrap();
        assert_eq!(p, (0, vec![0, 1]));
        let why = reason(&rows, Some(&p), 1000);
        assert!(
            why.starts_with("A ties on KLD within two standard errors with B"),
            "{why}"
        );
        // Tight standard errors: no tie, the most accurate wins although slower.
        rows[0].kld_mean_stderr = Some(0.00001);
        rows[1].kld_mean_stderr = Some(0.00001);
        let p = pick(&rows).unwrap();
        assert_eq!(p, (1, vec![1]));
        assert!(reason(&rows, Some(&p), 1000).starts_with("B has the lowest mean KLD"));
        println!("checked 2 tie cases");
    }

    #[test]
    fn constraints_and_not_measured() {
        let mut rows = vec![
            row("A", 100, Some((0.0012, 0.0001)), 30.0),
            row("B", 200, None, 20.0),
            row("C", 5000, Some((0.0001, 0.00001)), 5.0),
            row("D", 50, Some((0.02, 0.001)), 60.0),
        ];
        rows[2].fits = false;
        let c = Constraints {
            max_kld: Some(0.01),
            min_decode_tps: Some(10.0),
            ..Constraints::default()
        };
        reject(&mut rows, &c);
        assert_eq!(rows[1].rejected, ["not measured"]);
        assert_eq!(
            rows[2].rejected,
            ["does not fit", "decode 5.00 tokens/s < min_decode_tps 10"]
        );
        assert_eq!(rows[3].rejected, ["kld_mean 0.020000 > max_kld 0.01"]);
        assert_eq!(pick(&rows).unwrap().0, 0);
        // The unmeasured B is never picked, even when it is the only one left.
        let c = Constraints {
            max_memory: Some(200),
            max_kld: Some(0.001),
            ..Constraints::default()
        };
        reject(&mut rows, &c);
        assert!(pick(&rows).is_none());
        let why = reason(&rows, None, 1000);
        assert_eq!(
            why,
            "No candidate is acceptable: 1 of 4 candidates are not measured, 1 do not fit in 0.00 GiB usable, 3 break a constraint."
        );
        println!("checked 6 constraint cases");
    }

    #[test]
    fn frontier_over_memory_kld_speed() {
        let mut rows = vec![
            row("small", 100, Some((0.01, 0.001)), 50.0),
            row("big", 400, Some((0.001, 0.0001)), 20.0),
            row("worse", 400, Some((0.002, 0.0001)), 20.0),
            row("unmeasured", 10, None, 90.0),
            row("mid", 200, Some((0.005, 0.001)), 30.0),
        ];
        mark_frontier(&mut rows);
        let f: Vec<bool> = rows.iter().map(|r| r.frontier).collect();
        assert_eq!(f, [true, true, false, false, true]);
        println!("checked 5 frontier flags");
    }

    #[test]
    fn bad_constraints_are_named() {
        let c = Constraints {
            min_top1: Some(1.5),
            ..Constraints::default()
        };
        assert_eq!(
            c.validate("flags").unwrap_err(),
            "flags: min_top1 = 1.5 must be a fraction between 0 and 1"
        );
        assert!(Constraints {
            max_kld: Some(f64::NAN),
            ..Constraints::default()
        }
        .validate("x")
        .is_err());
        println!("checked 2 validation cases");
    }
}
