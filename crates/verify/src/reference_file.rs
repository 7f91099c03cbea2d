//! A stored reference pass (`g4q verify --save-reference` / `--reference-logits`): what the
//! metrics read from the reference at each scored position, so a pipeline that verifies files
//! in separate jobs runs the f32 reference once.
//!
//! Layout (little-endian throughout):
//!
//! | bytes | field |
//! |---|---|
//! | 8 | magic `G4QREF\0\0` |
//! | 4 | version (1) |
//! | 4 | flags: bit 0 = exact (full logit rows) |
//! | 64 | the reference's sha256 as the verify report records it (ASCII hex) |
//! | 64 | the evaluation tokens' sha256 (ASCII hex, as the report's `tokens_sha256`) |
//! | 8 | ctx |
//! | 8 | chunks |
//! | 4 | span: 0 = second half, 1 = all positions |
//! | 4 | k (0 when exact) |
//! | 8 | vocab |
//! | 8 | scored positions `n` |
//!
//! then `n` records in chunk order, then position order. Exact: `vocab` f32 logits. Top-k:
//! f64 log-sum-exp of the row, f64 log-prob of the token that follows, u32 argmax (first on
//! ties), then `k` pairs (u32 token id, f64 log-prob), ids ascending, of the `k` most likely
//! tokens (ties broken towards the lower id).
//!
//! # KLD from the top-k
//!
//! `KLD = Σ_i p_i (log p_i − log q_i)` splits into the stored ids (exact) and the tail `T` with
//! reference mass `m = 1 − Σ_topk p_i` and candidate mass `Q = Σ_tail q_i`. The log-sum
//! inequality gives `T ≥ m log(m / Q)`, an equality when the tail distributions are
//! proportional; that lower bound is the estimate the metrics use. Every tail `p_i` is at most
//! the smallest stored `p_k` (the top-k are the largest), and every tail `log q_i` is at least
//! `min_tail log q`, so `T ≤ Σ_tail p_i (log p_k − min_tail log q) = m (log p_k − min_tail log q)`.
//! The per-position gap between the two bounds, averaged, is the report's `kld_bound`: the true
//! mean KLD lies in `[kld_mean, kld_mean + kld_bound]` (up to f64 rounding). With `k = vocab`
//! the tail is empty and both are exact.

use std::io::Read;
use std::path::Path;

use crate::data::ScoreSpan;
use crate::error::{Result, VerifyError};
use crate::metrics::{argmax, log_softmax, score_position, PositionScore};

const MAGIC: &[u8; 8] = b"G4QREF\0\0";
const VERSION: u32 = 1;
const HEADER: usize = 8 + 4 + 4 + 64 + 64 + 8 + 8 + 4 + 4 + 8 + 8;

/// What identifies the run a stored reference belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The reference's sha256 as the report records it.
    pub reference_sha256: String,
    /// The evaluation tokens' sha256.
    pub tokens_sha256: String,
    pub ctx: usize,
    pub chunks: usize,
    pub span: ScoreSpan,
    pub vocab: usize,
}

/// How much of each row is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Detail {
    /// Every logit: the metrics equal the in-process run bit for bit.
    Exact,
    /// The `k` most likely tokens: KLD is approximated (see the module doc).
    TopK(usize),
}

/// Collects the reference's scored rows while it runs; [`ReferenceWriter::bytes`] is the file.
pub struct ReferenceWriter {
    buf: Vec<u8>,
    detail: Detail,
    vocab: usize,
    positions: u64,
}

impl ReferenceWriter {
    /// A writer for `id`; top-k above the vocabulary stores the vocabulary.
    pub fn new(id: &Identity, detail: Detail) -> Result<Self> {
        let detail = match detail {
            Detail::TopK(0) => return Err(VerifyError::Input("--reference-top-k 0".into())),
            Detail::TopK(k) => Detail::TopK(k.min(id.vocab)),
            d => d,
        };
        let mut buf = Vec::with_capacity(HEADER);
        buf.extend_from_slice(MAGIC);
        buf.extend_from_slice(&VERSION.to_le_bytes());
        buf.extend_from_slice(&u32::from(detail == Detail::Exact).to_le_bytes());
        for h in [&id.reference_sha256, &id.tokens_sha256] {
            let mut field = [b' '; 64];
            let b = h.as_bytes();
            field[..b.len().min(64)].copy_from_slice(&b[..b.len().min(64)]);
            buf.extend_from_slice(&field);
        }
        buf.extend_from_slice(&(id.ctx as u64).to_le_bytes());
        buf.extend_from_slice(&(id.chunks as u64).to_le_bytes());
        buf.extend_from_slice(&span_code(id.span).to_le_bytes());
        let k = match detail {
            Detail::TopK(k) => k as u32,
            Detail::Exact => 0,
        };
        buf.extend_from_slice(&k.to_le_bytes());
        buf.extend_from_slice(&(id.vocab as u64).to_le_bytes());
        buf.extend_from_slice(&0u64.to_le_bytes()); // positions, patched in bytes()
        Ok(ReferenceWriter {
            buf,
            detail,
            vocab: id.vocab,
            positions: 0,
        })
    }

    /// Adds one chunk's scored positions `first .. len - 1`, given their logits only
    /// (`[len - 1 - first, vocab]`, row-major).
    pub fn add_chunk(&mut self, logits: &[f32], chunk: &[u32], first: usize) {
        let v = self.vocab;
        for j in first..chunk.len().saturating_sub(1) {
            let row = &logits[(j - first) * v..(j - first + 1) * v];
            self.positions += 1;
            match self.detail {
                Detail::Exact => {
                    for x in row {
                        self.buf.extend_from_slice(&x.to_le_bytes());
                    }
                }
                Detail::TopK(k) => {
                    let lr = log_softmax(row);
                    let target = chunk[j + 1] as usize;
                    // log p_i = x_i − lse for every i; any one entry gives it back.
                    let lse = row[0] as f64 - lr[0];
                    self.buf.extend_from_slice(&lse.to_le_bytes());
                    self.buf.extend_from_slice(&lr[target].to_le_bytes());
                    self.buf
                        .extend_from_slice(&(argmax(row) as u32).to_le_bytes());
                    let mut ids: Vec<u32> = (0..v as u32).collect();
                    let by_prob = |a: &u32, b: &u32| {
                        lr[*b as usize].total_cmp(&lr[*a as usize]).then(a.cmp(b))
                    };
                    if k < v {
                        ids.select_nth_unstable_by(k - 1, by_prob);
                        ids.truncate(k);
                    }
                    ids.sort_unstable();
                    for id in ids {
                        self.buf.extend_from_slice(&id.to_le_bytes());
                        self.buf.extend_from_slice(&lr[id as usize].to_le_bytes());
                    }
                }
            }
        }
    }

    /// The whole file.
    pub fn bytes(mut self) -> Vec<u8> {
        self.buf[HEADER - 8..HEADER].copy_from_slice(&self.positions.to_le_bytes());
        self.buf
    }
}

fn span_code(span: ScoreSpan) -> u32 {
    match span {
        ScoreSpan::SecondHalf => 0,
        ScoreSpan::All => 1,
    }
}

/// A stored reference, read and checked.
pub struct ReferenceFile {
    file: String,
    identity: Identity,
    detail: Detail,
    positions: usize,
    body: Vec<u8>,
}

impl ReferenceFile {
    /// Reads `path`, checking the header and that the file is exactly as long as it says
    /// before the body is allocated.
    pub fn open(path: &Path) -> Result<Self> {
        let file = path.display().to_string();
        let bad = |why: String| VerifyError::Input(format!("reference logits {file}: {why}"));
        let io = |e: std::io::Error| bad(e.to_string());
        let mut f = std::fs::File::open(path).map_err(io)?;
        let len = f.metadata().map_err(io)?.len();
        if len < HEADER as u64 {
            return Err(bad(format!(
                "{len} bytes, shorter than the {HEADER}-byte header"
            )));
        }
        let mut h = [0u8; HEADER];
        f.read_exact(&mut h).map_err(io)?;
        if &h[..8] != MAGIC {
            return Err(bad("not a g4q reference file (bad magic)".into()));
        }
        let u32_at = |o: usize| u32::from_le_bytes(h[o..o + 4].try_into().unwrap());
        let u64_at = |o: usize| u64::from_le_bytes(h[o..o + 8].try_into().unwrap());
        let version = u32_at(8);
        if version != VERSION {
            return Err(bad(format!("version {version}, this g4q reads {VERSION}")));
        }
        let flags = u32_at(12);
        if flags > 1 {
            return Err(bad(format!("unknown flags {flags:#x}")));
        }
        let hex = |o: usize| -> Result<String> {
            let s = std::str::from_utf8(&h[o..o + 64])
                .map_err(|_| bad("a sha256 field is not text".into()))?;
            Ok(s.trim_end().to_string())
        };
        let reference_sha256 = hex(16)?;
        let tokens_sha256 = hex(80)?;
        let to_usize = |v: u64, what: &str| -> Result<usize> {
            usize::try_from(v).map_err(|_| bad(format!("{what} {v} is too large")))
        };
        let ctx = to_usize(u64_at(144), "ctx")?;
        let chunks = to_usize(u64_at(152), "chunks")?;
        let span = match u32_at(160) {
            0 => ScoreSpan::SecondHalf,
            1 => ScoreSpan::All,
            s => return Err(bad(format!("unknown span {s}"))),
        };
        let k = u32_at(164) as usize;
        let vocab = to_usize(u64_at(168), "vocab")?;
        let positions = to_usize(u64_at(176), "positions")?;
        let detail = match (flags, k) {
            (1, 0) => Detail::Exact,
            (0, k) if k >= 1 && k <= vocab => Detail::TopK(k),
            _ => return Err(bad(format!("k {k} does not fit vocab {vocab}"))),
        };
        let record = record_bytes(detail, vocab)
            .ok_or_else(|| bad(format!("vocab {vocab} is too large")))?;
        let body_len = positions
            .checked_mul(record)
            .filter(|b| (*b as u64).checked_add(HEADER as u64) == Some(len))
            .ok_or_else(|| {
                bad(format!(
                    "{len} bytes, but {positions} positions of {record} bytes need {}: truncated \
                     or corrupt",
                    (positions as u128) * (record as u128) + HEADER as u128
                ))
            })?;
        let mut body = vec![0u8; body_len];
        f.read_exact(&mut body).map_err(io)?;
        let r = ReferenceFile {
            file: file.clone(),
            identity: Identity {
                reference_sha256,
                tokens_sha256,
                ctx,
                chunks,
                span,
                vocab,
            },
            detail,
            positions,
            body,
        };
        r.check_records()?;
        Ok(r)
    }

    /// Token ids in range and ascending, log-probs finite or −∞ and at most 0.
    fn check_records(&self) -> Result<()> {
        let Detail::TopK(k) = self.detail else {
            return Ok(());
        };
        for p in 0..self.positions {
            let r = self.topk(p);
            let ok = r.argmax < self.identity.vocab
                && r.target_logprob <= 0.0
                && !r.target_logprob.is_nan()
                && r.lse.is_finite()
                && r.top.windows(2).all(|w| w[0].0 < w[1].0)
                && r.top.len() == k
                && r.top.iter().all(|&(id, lp)| {
                    (id as usize) < self.identity.vocab && lp <= 0.0 && !lp.is_nan()
                });
            if !ok {
                return Err(VerifyError::Input(format!(
                    "reference logits {}: position {p} holds an id out of range or a bad \
                     log-prob",
                    self.file
                )));
            }
        }
        Ok(())
    }

    /// The run this file was made for.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// Exact rows or top-k.
    pub fn detail(&self) -> Detail {
        self.detail
    }

    /// Scored positions stored.
    pub fn positions(&self) -> usize {
        self.positions
    }

    /// Fails with one line naming the file and the first field that differs from this run's.
    pub fn check_matches(&self, run: &Identity, positions: usize) -> Result<()> {
        let s = &self.identity;
        let fields: [(&str, String, String); 7] = [
            (
                "reference sha256",
                s.reference_sha256.clone(),
                run.reference_sha256.clone(),
            ),
            (
                "data tokens sha256",
                s.tokens_sha256.clone(),
                run.tokens_sha256.clone(),
            ),
            ("ctx", s.ctx.to_string(), run.ctx.to_string()),
            ("chunks", s.chunks.to_string(), run.chunks.to_string()),
            ("span", s.span.name().into(), run.span.name().into()),
            ("vocab", s.vocab.to_string(), run.vocab.to_string()),
            (
                "positions",
                self.positions.to_string(),
                positions.to_string(),
            ),
        ];
        for (name, stored, this) in fields {
            if stored != this {
                return Err(VerifyError::Input(format!(
                    "reference logits {}: made with {name} {stored}, this run has {this}",
                    self.file
                )));
            }
        }
        Ok(())
    }

    /// Scores stored position `p` against the candidate's `row`: the score and, for top-k,
    /// the gap between the KLD's upper and lower bounds (module doc).
    pub fn score(&self, p: usize, row: &[f32], target: usize) -> (PositionScore, Option<f64>) {
        match self.detail {
            Detail::Exact => {
                let v = self.identity.vocab;
                let raw = &self.body[p * v * 4..(p + 1) * v * 4];
                let reference: Vec<f32> = raw
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                    .collect();
                (score_position(&reference, row, target), None)
            }
            Detail::TopK(_) => {
                let r = self.topk(p);
                let (s, gap) = score_topk(&r, row, target);
                (s, Some(gap))
            }
        }
    }

    fn topk(&self, p: usize) -> TopK {
        let Detail::TopK(k) = self.detail else {
            unreachable!("topk() is only called on top-k files")
        };
        let rec = &self.body[p * (20 + 12 * k)..(p + 1) * (20 + 12 * k)];
        let f64_at = |o: usize| f64::from_le_bytes(rec[o..o + 8].try_into().unwrap());
        let u32_at = |o: usize| u32::from_le_bytes(rec[o..o + 4].try_into().unwrap());
        TopK {
            lse: f64_at(0),
            target_logprob: f64_at(8),
            argmax: u32_at(16) as usize,
            top: (0..k)
                .map(|i| (u32_at(20 + 12 * i), f64_at(24 + 12 * i)))
                .collect(),
        }
    }
}

/// Bytes of one position's record.
fn record_bytes(detail: Detail, vocab: usize) -> Option<usize> {
    match detail {
        Detail::Exact => vocab.checked_mul(4),
        Detail::TopK(k) => k.checked_mul(12)?.checked_add(20),
    }
}

/// One top-k record.
struct TopK {
    lse: f64,
    target_logprob: f64,
    argmax: usize,
    /// (token id, log-prob), ids ascending.
    top: Vec<(u32, f64)>,
}

/// The score of one position from a top-k record: PPL, top-1 and Δp are exact; KLD is the
/// stored terms plus the tail's lower bound `m log(m / Q)`; the second value is the gap to the
/// upper bound `m (log p_k − min_tail log q)` (module doc).
fn score_topk(r: &TopK, candidate: &[f32], target: usize) -> (PositionScore, f64) {
    let lc = log_softmax(candidate);
    // Stored terms summed in id order (as score_position sums the whole row), so with
    // k = vocab the sum is the in-process one bit for bit.
    let mut kld = 0.0;
    let mut sum_p = 0.0;
    let mut min_logp = f64::INFINITY;
    let mut tail_q = 0.0;
    let mut tail_min_logq = f64::INFINITY;
    let mut tail_len = 0usize;
    let mut next = r.top.iter().peekable();
    for (i, &c) in lc.iter().enumerate() {
        match next.peek() {
            Some(&&(id, lp)) if id as usize == i => {
                next.next();
                kld += lp.exp() * (lp - c);
                sum_p += lp.exp();
                min_logp = min_logp.min(lp);
            }
            _ => {
                tail_len += 1;
                tail_q += c.exp();
                tail_min_logq = tail_min_logq.min(c);
            }
        }
    }
    let m = (1.0 - sum_p).max(0.0);
    let gap = if tail_len == 0 || m == 0.0 {
        0.0
    } else {
        let lower = m * (m / tail_q).ln();
        let upper = m * (min_logp - tail_min_logq);
        kld += lower;
        (upper - lower).max(0.0)
    };
    let score = PositionScore {
        nll_reference: -r.target_logprob,
        nll_candidate: -lc[target],
        kld,
        same_top1: r.argmax == argmax(candidate),
        delta_p: lc[target].exp() - r.target_logprob.exp(),
    };
    (score, gap)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(vocab: usize) -> Identity {
        Identity {
            reference_sha256: "a".repeat(64),
            tokens_sha256: "b".repeat(64),
            ctx: 4,
            chunks: 1,
            span: ScoreSpan::All,
            vocab,
        }
    }

    #[test]
    fn top_k_bounds_hold_and_vanish_at_full_k() {
        let mut rng = 7u32;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 17;
            rng ^= rng << 5;
            (rng % 1000) as f32 / 100.0
        };
        let v = 40;
        let chunk = [1u32, 5, 9, 3];
        let reference: Vec<f32> = (0..4 * v).map(|_| next()).collect();
        let cand: Vec<f32> = reference.iter().map(|&x| x + next() / 5.0).collect();
        let mut cases = 0;
        for k in [1, 3, 10, v] {
            let mut w = ReferenceWriter::new(&id(v), Detail::TopK(k)).unwrap();
            w.add_chunk(&reference, &chunk, 0);
            let dir = std::env::temp_dir().join(format!("g4q-refk-{}-{k}", std::process::id()));
            std::fs::write(&dir, w.bytes()).unwrap();
            let f = ReferenceFile::open(&dir).unwrap();
            std::fs::remove_file(&dir).unwrap();
            for p in 0..3 {
                let row = p * v..(p + 1) * v;
                let t = chunk[p + 1] as usize;
                let exact = score_position(&reference[row.clone()], &cand[row.clone()], t);
                let (s, gap) = f.score(p, &cand[row], t);
                let gap = gap.unwrap();
                assert!(
                    s.kld <= exact.kld + 1e-12,
                    "k {k}: {} > {}",
                    s.kld,
                    exact.kld
                );
                assert!(exact.kld <= s.kld + gap + 1e-12, "k {k}");
                assert_eq!(s.nll_reference, exact.nll_reference);
                assert_eq!(s.delta_p, exact.delta_p);
                assert_eq!(s.same_top1, exact.same_top1);
                if k == v {
                    assert_eq!(gap, 0.0);
                    assert_eq!(s, exact);
                }
                cases += 1;
            }
        }
        println!("{cases} positions checked");
    }
}
