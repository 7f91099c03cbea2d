//! Layer-major passes read the model once: a multi-chunk comparison (reference and candidate)
//! and a multi-chunk imatrix fetch every tensor from their weight source exactly once, and
//! release each layer's tensors once, after the last chunk has used them. The results equal
//! one pass per chunk bit for bit, whether the chunks' states stay in memory or are spilled.

use std::collections::BTreeMap;
use std::sync::Mutex;

use convert::{Checkpoint, Gemma4Config};
use quantize::calibrate::{compute_imatrix_with, ImatrixOptions};
use testkit::fixtures_dir;
use verify::compare::{compare_many, compare_many_with, CompareOptions};
use verify::data::ScoreSpan;
use verify::spill::MemoryBudget;
use verify::{forward_streaming, LayerMajor, Matrix, NoObserver, Result, Weights};

/// Delegates to a checkpoint and counts, per tensor name, fetches and releases, and records
/// whether a tensor was fetched again after a release.
struct Counting<'a> {
    inner: &'a Checkpoint,
    fetched: Mutex<BTreeMap<String, usize>>,
    released: Mutex<BTreeMap<String, usize>>,
}

impl<'a> Counting<'a> {
    fn new(inner: &'a Checkpoint) -> Self {
        Counting {
            inner,
            fetched: Mutex::new(BTreeMap::new()),
            released: Mutex::new(BTreeMap::new()),
        }
    }

    fn fetch(&self, name: &str) {
        let released = self.released.lock().unwrap();
        // Fetching a released layer tensor would read its pages from disk again.
        assert!(
            name.starts_with("embed_tokens") || !released.contains_key(name),
            "{name} fetched after its release"
        );
        *self.fetched.lock().unwrap().entry(name.into()).or_default() += 1;
    }

    /// Every tensor fetched exactly once; every layer tensor released exactly once.
    fn check_once(&self, what: &str) -> usize {
        let fetched = self.fetched.lock().unwrap();
        let released = self.released.lock().unwrap();
        assert!(!fetched.is_empty(), "{what}: nothing fetched");
        for (name, &n) in fetched.iter() {
            assert_eq!(n, 1, "{what}: {name} fetched {n} times");
            if name.starts_with("layers.") {
                assert_eq!(released.get(name), Some(&1), "{what}: {name} releases");
            }
        }
        fetched.len()
    }
}

impl Weights for Counting<'_> {
    fn config(&self) -> &Gemma4Config {
        self.inner.config()
    }
    fn has(&self, name: &str) -> bool {
        Weights::has(self.inner, name)
    }
    fn matrix(&self, name: &str) -> Result<Matrix<'_>> {
        self.fetch(name);
        self.inner.matrix(name)
    }
    fn vector(&self, name: &str) -> Result<Vec<f32>> {
        self.fetch(name);
        self.inner.vector(name)
    }
    fn release(&self, name: &str) {
        *self
            .released
            .lock()
            .unwrap()
            .entry(name.into())
            .or_default() += 1;
        self.inner.release(name)
    }
}

/// `n` chunks of `t` pseudo-random ids inside the vocabulary, each starting with BOS.
fn chunks(cfg: &Gemma4Config, n: usize, t: usize) -> Vec<Vec<u32>> {
    let mut x = 0x9e37_79b9u64;
    (0..n)
        .map(|_| {
            (0..t)
                .map(|i| {
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    if i == 0 {
                        cfg.bos_token_id
                    } else {
                        ((x >> 33) % cfg.vocab_size as u64) as u32
                    }
                })
                .collect()
        })
        .collect()
}

/// The s0 fixtures: E2B (per-layer inputs, KV sharing), 26B-A4B (experts), 31B.
fn models() -> Vec<(String, Checkpoint, Checkpoint)> {
    let mut out = Vec::new();
    for name in ["e2b-s0", "26b-a4b-s0", "31b-s0"] {
        let dir = fixtures_dir().join(name);
        let (r, c) = (dir.join("causal-f32"), dir.join("released-bf16"));
        if !r.is_dir() || !c.is_dir() {
            testkit::oracles::skip(format!("{name}: no causal-f32 and released-bf16 folders"));
            continue;
        }
        out.push((
            name.to_string(),
            Checkpoint::open(&r).unwrap(),
            Checkpoint::open(&c).unwrap(),
        ));
    }
    out
}

#[test]
fn multi_chunk_verify_reads_each_tensor_once() {
    let mut tensors = 0;
    for (name, r, c) in models() {
        let (rw, cw) = (Counting::new(&r), Counting::new(&c));
        let data = chunks(r.config(), 3, 24);
        let opts = CompareOptions {
            span: ScoreSpan::SecondHalf,
            layer_errors: true,
        };
        compare_many(&rw, &[&cw as &dyn Weights], &data, opts, &mut |_, _| {}).unwrap();
        tensors += rw.check_once(&format!("{name} reference"));
        tensors += cw.check_once(&format!("{name} candidate"));
    }
    println!("checked {tensors} tensors read once by a 3-chunk verify");
}

#[test]
fn multi_chunk_imatrix_reads_each_tensor_once() {
    let mut tensors = 0;
    for (name, _, c) in models() {
        let cw = Counting::new(&c);
        let tokens: Vec<u32> = chunks(c.config(), 1, 4 * 20).remove(0);
        let opts = ImatrixOptions {
            ctx: 20,
            max_chunks: None,
            dataset: "t".into(),
        };
        let im = compute_imatrix_with(
            &cw,
            &tokens,
            &opts,
            &MemoryBudget::default(),
            &mut |_, _| {},
        )
        .unwrap();
        assert_eq!(im.chunk_count, 4, "{name}");
        tensors += cw.check_once(&format!("{name} imatrix"));
    }
    println!("checked {tensors} tensors read once by a 4-chunk imatrix");
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn layer_major_logits_equal_one_pass_per_chunk_in_memory_and_spilled() {
    let mut cases = 0;
    for (name, _, c) in models() {
        // Chunks of two lengths, so the per-length RoPE tables are exercised too.
        let mut data = chunks(c.config(), 3, 20);
        data[1].truncate(13);
        let alone: Vec<Vec<f32>> = data
            .iter()
            .map(|ids| {
                let out =
                    forward_streaming(&c, ids, Default::default(), &mut NoObserver, &mut |_, _| {})
                        .unwrap();
                out.logits.iter().copied().collect()
            })
            .collect();
        for limit in [usize::MAX, 0] {
            let budget = MemoryBudget::new(limit);
            let mut pass = LayerMajor::start(&c, &data, &budget, &mut NoObserver).unwrap();
            while pass.layers_done() < pass.num_layers() {
                pass.step(&mut NoObserver).unwrap();
            }
            assert_eq!(budget.spilled(), limit == 0, "{name}");
            // Heads over two groups: chunk 0 alone with every position, then chunks 1 and 2
            // together over their second halves only (what verify scores).
            let vocab = c.config().vocab_size;
            let half = |len: usize| len / 2..len - 1;
            let first = pass.logits(0..1, |len| 0..len, &mut NoObserver).unwrap();
            let rest = pass.logits(1..3, half, &mut NoObserver).unwrap();
            let got = [first.chunk(0), rest.chunk(0), rest.chunk(1)].map(Option::unwrap);
            assert!(rest.chunk(2).is_none(), "{name}");
            for (ci, (a, b)) in alone.iter().zip(got).enumerate() {
                let rows = if ci == 0 {
                    0..data[ci].len()
                } else {
                    half(data[ci].len())
                };
                let a = &a[rows.start * vocab..rows.end * vocab];
                assert!(bits(a) == bits(b), "{name} chunk {ci} budget {limit}");
                cases += 1;
            }
        }
    }
    println!("checked {cases} chunks' logits bit-equal to one pass per chunk");
}

#[test]
fn spilling_changes_no_comparison() {
    let mut cases = 0;
    for (name, r, c) in models() {
        let data = chunks(r.config(), 3, 24);
        let opts = CompareOptions {
            span: ScoreSpan::All,
            layer_errors: true,
        };
        let cands = [&c as &dyn Weights, &r as &dyn Weights];
        let run = |limit| {
            compare_many_with(
                &r,
                &cands,
                &data,
                opts,
                &MemoryBudget::new(limit),
                &mut |_, _| {},
            )
            .unwrap()
        };
        let (all, none) = (run(usize::MAX), run(0));
        for (a, b) in all.iter().zip(&none) {
            assert_eq!(a.metrics, b.metrics, "{name}");
            assert_eq!(a.layers, b.layers, "{name}");
            cases += 1;
        }
        // The reference against itself: zero divergence.
        assert_eq!(all[1].metrics.kld_mean, 0.0, "{name}");
    }
    println!("checked {cases} comparisons equal with and without spilling");
}
