//! Accuracy metrics of a candidate against the reference, from the two models' logits at the
//! same positions: perplexity of each, KL divergence (reference ‖ candidate), top-1 agreement
//! and the change Δp of the probability of the correct next token.
//!
//! Everything is computed in f64 from the f32 logits, so identical logits give exactly zero
//! (each KLD term is `p_ref * (log p_ref - log p_cand)` with the two logs bit-equal). Standard
//! errors follow llama.cpp's perplexity tool: for a per-token quantity `x` over `n` tokens,
//! `stderr(mean) = sqrt((mean(x²) - mean(x)²) / (n - 1))`, and for perplexity
//! `stderr = ppl * stderr(mean nll)`.

use serde::{Deserialize, Serialize};

/// What one scored position contributes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PositionScore {
    /// `-log p_ref(target)`.
    pub nll_reference: f64,
    /// `-log p_cand(target)`.
    pub nll_candidate: f64,
    /// `Σ_v p_ref(v) (log p_ref(v) - log p_cand(v))`.
    pub kld: f64,
    /// Whether both models' most likely tokens are the same (first index on ties).
    pub same_top1: bool,
    /// `p_cand(target) - p_ref(target)`.
    pub delta_p: f64,
}

/// Log-softmax of `logits` in f64.
pub fn log_softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits
        .iter()
        .fold(f64::NEG_INFINITY, |m, &x| m.max(x as f64));
    let sum: f64 = logits.iter().map(|&x| (x as f64 - max).exp()).sum();
    let lse = max + sum.ln();
    logits.iter().map(|&x| x as f64 - lse).collect()
}

/// Index of the largest value (the first one on ties).
pub fn argmax(values: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if v > values[best] {
            best = i;
        }
    }
    best
}

/// Scores one position: `reference` and `candidate` are the two models' logits for the token
/// after it, `target` the token that actually follows.
pub fn score_position(reference: &[f32], candidate: &[f32], target: usize) -> PositionScore {
    let lr = log_softmax(reference);
    let lc = log_softmax(candidate);
    let kld = lr
        .iter()
        .zip(&lc)
        .map(|(&r, &c)| r.exp() * (r - c))
        .sum::<f64>();
    PositionScore {
        nll_reference: -lr[target],
        nll_candidate: -lc[target],
        kld,
        same_top1: argmax(reference) == argmax(candidate),
        delta_p: lc[target].exp() - lr[target].exp(),
    }
}

/// Running sums of per-position scores; [`MetricSums::finish`] turns them into [`Metrics`].
#[derive(Clone, Debug, Default)]
pub struct MetricSums {
    n: usize,
    nll_ref: Moments,
    nll_cand: Moments,
    nll_diff: Moments,
    kld: Moments,
    top1: Moments,
    delta_p: Moments,
    delta_p_sq: Moments,
    kld_values: Vec<f64>,
    /// Σ of the per-position KLD bound gaps, when the KLD is top-k approximated.
    kld_gap: Option<f64>,
}

/// Sum and sum of squares of a quantity.
#[derive(Clone, Copy, Debug, Default)]
struct Moments {
    sum: f64,
    sum_sq: f64,
}

impl Moments {
    fn add(&mut self, x: f64) {
        self.sum += x;
        self.sum_sq += x * x;
    }

    /// Mean and llama.cpp's standard error of the mean (0 with fewer than two samples).
    fn mean_stderr(&self, n: usize) -> (f64, f64) {
        if n == 0 {
            return (0.0, 0.0);
        }
        let mean = self.sum / n as f64;
        if n < 2 {
            return (mean, 0.0);
        }
        let var = (self.sum_sq / n as f64 - mean * mean).max(0.0);
        (mean, (var / (n - 1) as f64).sqrt())
    }
}

impl MetricSums {
    /// Adds one scored position.
    pub fn add(&mut self, s: &PositionScore) {
        self.n += 1;
        self.nll_ref.add(s.nll_reference);
        self.nll_cand.add(s.nll_candidate);
        self.nll_diff.add(s.nll_candidate - s.nll_reference);
        self.kld.add(s.kld);
        self.top1.add(if s.same_top1 { 1.0 } else { 0.0 });
        self.delta_p.add(s.delta_p);
        self.delta_p_sq.add(s.delta_p * s.delta_p);
        self.kld_values.push(s.kld);
    }

    /// Adds one position's gap between the upper and lower bound of a top-k approximated KLD
    /// (`reference_file`): the report then carries `kld_bound`.
    pub fn add_kld_gap(&mut self, gap: f64) {
        *self.kld_gap.get_or_insert(0.0) += gap;
    }

    /// Number of positions added.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Whether nothing was added.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// The summary statistics.
    pub fn finish(&self) -> Metrics {
        let n = self.n;
        let (nll_r, nll_r_se) = self.nll_ref.mean_stderr(n);
        let (nll_c, nll_c_se) = self.nll_cand.mean_stderr(n);
        let (diff, diff_se) = self.nll_diff.mean_stderr(n);
        let (kld_mean, kld_se) = self.kld.mean_stderr(n);
        let (top1, top1_se) = self.top1.mean_stderr(n);
        let (dp, dp_se) = self.delta_p.mean_stderr(n);
        let (dp2, dp2_se) = self.delta_p_sq.mean_stderr(n);
        let rms = dp2.sqrt();
        let mut sorted = self.kld_values.clone();
        sorted.sort_by(f64::total_cmp);
        let ppl_r = nll_r.exp();
        let ppl_c = nll_c.exp();
        let ratio = diff.exp();
        Metrics {
            tokens: n,
            ppl_reference: ppl_r,
            ppl_reference_stderr: ppl_r * nll_r_se,
            ppl_candidate: ppl_c,
            ppl_candidate_stderr: ppl_c * nll_c_se,
            ppl_ratio: ratio,
            // The paired difference of the log-likelihoods cancels most of the text's own
            // variance, so the ratio is far better determined than either perplexity.
            ppl_ratio_stderr: ratio * diff_se,
            kld_mean,
            kld_mean_stderr: kld_se,
            kld_median: quantile(&sorted, 0.5),
            kld_p99: quantile(&sorted, 0.99),
            kld_max: sorted.last().copied().unwrap_or(0.0),
            top1_agreement: top1,
            top1_agreement_stderr: top1_se,
            delta_p_mean: dp,
            delta_p_mean_stderr: dp_se,
            delta_p_rms: rms,
            // d sqrt(m) = dm / (2 sqrt(m)).
            delta_p_rms_stderr: if rms > 0.0 { dp2_se / (2.0 * rms) } else { 0.0 },
            kld_bound: self.kld_gap.map(|g| if n > 0 { g / n as f64 } else { 0.0 }),
        }
    }
}

/// The `q`-quantile of ascending `sorted` by linear interpolation between the closest ranks
/// (position `q * (n - 1)`, numpy's default); 0 for no values.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    match sorted.len() {
        0 => 0.0,
        n => {
            let pos = q.clamp(0.0, 1.0) * (n - 1) as f64;
            let lo = pos.floor() as usize;
            let hi = pos.ceil() as usize;
            sorted[lo] + (pos - lo as f64) * (sorted[hi] - sorted[lo])
        }
    }
}

/// The summary of a comparison over every scored position.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Scored positions (tokens predicted).
    pub tokens: usize,
    pub ppl_reference: f64,
    pub ppl_reference_stderr: f64,
    pub ppl_candidate: f64,
    pub ppl_candidate_stderr: f64,
    /// `ppl_candidate / ppl_reference` (= exp of the mean log-likelihood difference).
    pub ppl_ratio: f64,
    pub ppl_ratio_stderr: f64,
    pub kld_mean: f64,
    pub kld_mean_stderr: f64,
    pub kld_median: f64,
    pub kld_p99: f64,
    pub kld_max: f64,
    /// Share of positions where both models' top token agrees.
    pub top1_agreement: f64,
    pub top1_agreement_stderr: f64,
    /// Mean of `p_cand(correct) - p_ref(correct)`.
    pub delta_p_mean: f64,
    pub delta_p_mean_stderr: f64,
    /// Root mean square of Δp.
    pub delta_p_rms: f64,
    pub delta_p_rms_stderr: f64,
    /// Only when KLD is approximated from a stored top-k reference: the true `kld_mean` lies in
    /// `[kld_mean, kld_mean + kld_bound]` (`reference_file` derives the bounds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kld_bound: Option<f64>,
}

impl Metrics {
    /// Every figure by its report name, in report order.
    pub fn figures(&self) -> [(&'static str, f64); 18] {
        [
            ("ppl_reference", self.ppl_reference),
            ("ppl_reference_stderr", self.ppl_reference_stderr),
            ("ppl_candidate", self.ppl_candidate),
            ("ppl_candidate_stderr", self.ppl_candidate_stderr),
            ("ppl_ratio", self.ppl_ratio),
            ("ppl_ratio_stderr", self.ppl_ratio_stderr),
            ("kld_mean", self.kld_mean),
            ("kld_mean_stderr", self.kld_mean_stderr),
            ("kld_median", self.kld_median),
            ("kld_p99", self.kld_p99),
            ("kld_max", self.kld_max),
            ("top1_agreement", self.top1_agreement),
            ("top1_agreement_stderr", self.top1_agreement_stderr),
            ("delta_p_mean", self.delta_p_mean),
            ("delta_p_mean_stderr", self.delta_p_mean_stderr),
            ("delta_p_rms", self.delta_p_rms),
            ("delta_p_rms_stderr", self.delta_p_rms_stderr),
            ("tokens", self.tokens as f64),
        ]
    }

    /// The first figure that is NaN or infinite, with its value: such a figure can neither
    /// pass nor fail a gate honestly, nor be written as JSON.
    pub fn first_non_finite(&self) -> Option<(&'static str, f64)> {
        self.figures().into_iter().find(|(_, v)| !v.is_finite())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_logits_score_zero_kld() {
        let l = [0.5f32, -1.0, 3.25, 2.0];
        let s = score_position(&l, &l, 2);
        assert_eq!(s.kld, 0.0);
        assert_eq!(s.delta_p, 0.0);
        assert!(s.same_top1);
        assert_eq!(s.nll_reference, s.nll_candidate);
    }

    #[test]
    fn kld_matches_a_hand_computation() {
        let r = [0.0f32, 1.0];
        let c = [1.0f32, 0.0];
        let s = score_position(&r, &c, 0);
        let pr = [1.0 / (1.0 + 1f64.exp()), 1f64.exp() / (1.0 + 1f64.exp())];
        let pc = [pr[1], pr[0]];
        let want = pr[0] * (pr[0] / pc[0]).ln() + pr[1] * (pr[1] / pc[1]).ln();
        assert!((s.kld - want).abs() < 1e-15);
        assert!(!s.same_top1);
        assert!((s.delta_p - (pc[0] - pr[0])).abs() < 1e-15);
    }

    #[test]
    fn non_finite_logits_give_a_named_non_finite_figure() {
        let mut sums = MetricSums::default();
        sums.add(&score_position(&[0.0, 1.0], &[f32::NAN, 1.0], 0));
        sums.add(&score_position(&[0.0, 1.0], &[0.0, 1.0], 1));
        let m = sums.finish();
        let (name, v) = m.first_non_finite().expect("NaN logits give NaN figures");
        assert_eq!(name, "ppl_candidate");
        assert!(v.is_nan());
        let mut clean = MetricSums::default();
        clean.add(&score_position(&[0.0, 1.0], &[0.5, 1.0], 1));
        assert_eq!(clean.finish().first_non_finite(), None);
    }

    #[test]
    fn stderr_follows_llama_cpp() {
        let mut sums = MetricSums::default();
        for kld in [0.1, 0.2, 0.3, 0.6] {
            sums.add(&PositionScore {
                nll_reference: 1.0,
                nll_candidate: 1.0,
                kld,
                same_top1: true,
                delta_p: 0.0,
            });
        }
        let m = sums.finish();
        let mean: f64 = 0.3;
        let var = (0.01 + 0.04 + 0.09 + 0.36) / 4.0 - mean * mean;
        assert!((m.kld_mean - mean).abs() < 1e-12);
        assert!((m.kld_mean_stderr - (var / 3.0).sqrt()).abs() < 1e-12);
        assert!((m.kld_median - 0.25).abs() < 1e-12);
        assert_eq!(m.kld_max, 0.6);
        assert!((m.ppl_reference - 1f64.exp()).abs() < 1e-12);
        assert_eq!(m.ppl_reference_stderr, 0.0);
    }
}
