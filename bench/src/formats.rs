//! The products `g4q bench` times: for each weight format, the decode (one token's
//! matrix-vector product) and prefill (a batch of tokens) products at Gemma 4's real layer
//! shapes, on a chosen kernel path and thread count, over a working set of several copies of
//! the matrix so the weights stream from memory as a model's layers do.
//!
//! GGUF formats run through `kernels::matmul::matmul_with`, the product `g4q verify
//! --gguf-math ggml` uses: activations quantized to the weight type's `vec_dot_type`, then one
//! ggml dot product per output. AWQ int4 runs through [`crate::awq`].

use std::fmt;
use std::str::FromStr;
use std::time::Instant;

use convert::{Gemma4Config, LayerType, Variant};
use kernels::simd::Path;
use kernels::GgmlType;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::awq::AwqMatrix;

/// A weight format `g4q bench` measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Format {
    /// A GGUF tensor type (weights only: not Q8_1 / Q8_K, which are activation formats).
    Ggml(GgmlType),
    /// AWQ int4 as compressed-tensors `pack-quantized` stores it, with this group size.
    AwqInt4 { group: usize },
}

/// Every GGUF weight type in the order the tables list them.
pub const GGML_TYPES: [GgmlType; 15] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q8_0,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q2K,
    GgmlType::Q3K,
    GgmlType::Q4K,
    GgmlType::Q5K,
    GgmlType::Q6K,
    GgmlType::IQ4NL,
    GgmlType::IQ4XS,
];

/// AWQ group sizes measured.
pub const AWQ_GROUPS: [usize; 3] = [32, 64, 128];

impl Format {
    /// Every format, GGUF types first.
    pub fn all() -> Vec<Format> {
        let mut v: Vec<Format> = GGML_TYPES.iter().map(|t| Format::Ggml(*t)).collect();
        v.extend(AWQ_GROUPS.iter().map(|g| Format::AwqInt4 { group: *g }));
        v
    }

    /// The bytes of a `rows × cols` matrix, or `None` when `cols` is not a whole number of
    /// blocks or groups.
    pub fn matrix_bytes(self, rows: usize, cols: usize) -> Option<usize> {
        match self {
            Format::Ggml(t) => t.row_bytes(cols)?.checked_mul(rows),
            Format::AwqInt4 { group } => AwqMatrix::bytes(rows, cols, group),
        }
    }
}

impl fmt::Display for Format {
    /// ggml's type names in upper case (`Q4_K`, `IQ4_XS`, `BF16`); AWQ as `AWQ_INT4_G128`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Format::Ggml(t) => {
                let n = t.name();
                // ggml writes the K of K-quants in upper case; everything else is upper too.
                f.write_str(&n.to_ascii_uppercase())
            }
            Format::AwqInt4 { group } => write!(f, "AWQ_INT4_G{group}"),
        }
    }
}

impl FromStr for Format {
    type Err = String;

    /// Parses a format name case-insensitively (`q4_k`, `Q4_K`, `awq_int4_g128`).
    fn from_str(s: &str) -> Result<Self, String> {
        Format::all()
            .into_iter()
            .find(|f| f.to_string().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                let names: Vec<String> = Format::all().iter().map(|f| f.to_string()).collect();
                format!("unknown type '{s}' (expected one of {})", names.join(", "))
            })
    }
}

/// One weight matrix of the model: `rows` outputs × `cols` inputs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shape {
    /// `attn_q`, `attn_kv`, `attn_o` (sliding layers), the same with `_full` (full-attention
    /// layers, twice the head width), `ffn_up` (= gate), `ffn_down`, `ffn_up_wide` /
    /// `ffn_down_wide` (E2B's double-wide KV-shared layers), `expert_gate_up` / `expert_down`
    /// (26B-A4B, one expert), `output` (the tied head).
    pub name: String,
    pub rows: usize,
    pub cols: usize,
}

/// The decode and prefill products.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    Decode,
    Prefill(usize),
}

impl Op {
    /// Tokens per product.
    pub fn tokens(self) -> usize {
        match self {
            Op::Decode => 1,
            Op::Prefill(n) => n,
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Decode => f.write_str("decode"),
            Op::Prefill(n) => write!(f, "prefill{n}"),
        }
    }
}

impl FromStr for Op {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "decode" => Ok(Op::Decode),
            "prefill128" => Ok(Op::Prefill(128)),
            "prefill512" => Ok(Op::Prefill(512)),
            _ => Err(format!(
                "unknown op '{s}' (expected decode, prefill128 or prefill512)"
            )),
        }
    }
}

/// Parses a variant name as `g4q synth --variant` spells it.
pub fn parse_variant(s: &str) -> Result<Variant, String> {
    [Variant::E2B, Variant::E4B, Variant::A26B, Variant::B31]
        .into_iter()
        .find(|v| v.cli_name().eq_ignore_ascii_case(s.trim()))
        .ok_or_else(|| format!("unknown variant '{s}' (expected e2b, e4b, 26b-a4b or 31b)"))
}

/// The released variant's full config (all its layers), as `g4q synth` writes it.
pub fn variant_config(v: Variant) -> Gemma4Config {
    let json = convert::synth::synth_config(v, convert::synth::real_layers(v), 0);
    Gemma4Config::from_json_str(&json.to_string(), v.cli_name())
        .expect("the synth config of a released variant parses")
}

/// The distinct matrix shapes of a model's layers, named as [`Shape::name`] lists.
pub fn shapes(cfg: &Gemma4Config) -> Vec<Shape> {
    let h = cfg.hidden_size;
    let mut out = Vec::new();
    let mut push = |name: &str, rows: usize, cols: usize| {
        if rows > 0 && cols > 0 && !out.iter().any(|s: &Shape| s.name == name) {
            out.push(Shape {
                name: name.to_string(),
                rows,
                cols,
            });
        }
    };
    for l in 0..cfg.num_hidden_layers {
        let hd = cfg.head_dim_of(l);
        let q = cfg.num_attention_heads * hd;
        let kv = cfg.num_kv_heads(l) * hd;
        let suffix = if cfg.layer_type(l) == LayerType::Full {
            "_full"
        } else {
            ""
        };
        push(&format!("attn_q{suffix}"), q, h);
        push(&format!("attn_kv{suffix}"), kv, h);
        push(&format!("attn_o{suffix}"), h, q);
    }
    push("ffn_up", cfg.intermediate_size, h);
    push("ffn_down", h, cfg.intermediate_size);
    if cfg.use_double_wide_mlp && cfg.num_kv_shared_layers > 0 {
        push("ffn_up_wide", 2 * cfg.intermediate_size, h);
        push("ffn_down_wide", h, 2 * cfg.intermediate_size);
    }
    if cfg.enable_moe_block {
        push("expert_gate_up", 2 * cfg.moe_intermediate_size, h);
        push("expert_down", h, cfg.moe_intermediate_size);
    }
    push("output", cfg.vocab_size, h);
    out
}

/// One timed product.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    /// ggml's type name (`Q4_K`, …) or `AWQ_INT4_G128`.
    #[serde(rename = "type")]
    pub ty: String,
    /// `decode`, `prefill128`, `prefill512`.
    pub op: String,
    pub shape: String,
    pub rows: usize,
    pub cols: usize,
    /// Kernel path (`scalar`, `avx2`, `avx512`, `neon`; AWQ: `f32-widen`).
    pub path: String,
    pub threads: usize,
    /// Bytes of the matrix copies cycled through.
    pub working_set_bytes: u64,
    /// Bytes of one matrix.
    pub matrix_bytes: u64,
    /// Seconds per product (best round's mean).
    pub time_s: f64,
    /// Matrix bytes / time, 10^9 bytes per second.
    pub weight_gbs: f64,
    /// weight_gbs as a percentage of the streaming read bandwidth measured on the same
    /// number of threads.
    pub percent_of_bandwidth: f64,
    /// 2 · rows · cols · tokens / time, 10^9 per second.
    pub gflops: f64,
}

/// How long and over how much memory to measure.
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    /// Bytes the copies of the matrix add up to at least (one copy if it alone is larger).
    pub working_set_bytes: u64,
    /// Seconds each of the rounds runs at least (at least one product each).
    pub min_round_s: f64,
    /// Rounds; the best one is reported.
    pub rounds: usize,
}

/// Rows quantized from random data; the matrix is these rows repeated (memory traffic does
/// not depend on the values, and quantizing a 262144-row head would dominate the run).
const SEED_ROWS: usize = 64;

/// A `rows × cols` matrix in `format`, built from [`SEED_ROWS`] rows of random N(0, 0.02)-like
/// values.
fn make_matrix(format: Format, rows: usize, cols: usize) -> Result<Matrix, String> {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let seed_rows = rows.min(SEED_ROWS);
    let vals: Vec<f32> = (0..seed_rows * cols)
        .map(|_| (rng.gen::<f32>() - 0.5) * 0.04)
        .collect();
    match format {
        Format::Ggml(t) => {
            let rb = t
                .row_bytes(cols)
                .ok_or_else(|| format!("{cols} columns are not whole {} blocks", t.name()))?;
            let mut seed = vec![0u8; rb * seed_rows];
            kernels::quantize_rows(t, &vals, cols, None, &mut seed).map_err(|e| e.to_string())?;
            let mut bytes = Vec::with_capacity(rb * rows);
            while bytes.len() < rb * rows {
                let take = (rb * rows - bytes.len()).min(seed.len());
                bytes.extend_from_slice(&seed[..take]);
            }
            Ok(Matrix::Ggml(t, bytes))
        }
        Format::AwqInt4 { group } => Ok(Matrix::Awq(AwqMatrix::quantize_tiled(
            &vals, seed_rows, rows, cols, group,
        )?)),
    }
}

enum Matrix {
    Ggml(GgmlType, Vec<u8>),
    Awq(AwqMatrix),
}

impl Matrix {
    fn bytes(&self) -> usize {
        match self {
            Matrix::Ggml(_, b) => b.len(),
            Matrix::Awq(m) => m.byte_len(),
        }
    }
}

/// The kernel path name a measurement of `format` on `path` reports.
pub fn path_name(format: Format, path: Path) -> String {
    match format {
        Format::Ggml(_) => path.name().to_string(),
        Format::AwqInt4 { .. } => crate::awq::PATH_NAME.to_string(),
    }
}

/// One product ready to run: the matrix copies of a working set, the activations and the
/// output, cycling to the next copy on every run.
pub struct Product {
    mats: Vec<Matrix>,
    rows: usize,
    cols: usize,
    t: usize,
    x: Vec<f32>,
    y: Vec<f32>,
    next: usize,
}

impl Product {
    /// `op` of `format` at `shape` over copies of the matrix adding up to at least
    /// `working_set_bytes` (one copy if it alone is larger).
    pub fn new(
        format: Format,
        shape: &Shape,
        op: Op,
        working_set_bytes: u64,
    ) -> Result<Product, String> {
        let (rows, cols) = (shape.rows, shape.cols);
        let one = make_matrix(format, rows, cols)?;
        let copies = (working_set_bytes as usize)
            .div_ceil(one.bytes().max(1))
            .max(1);
        let mut mats = Vec::with_capacity(copies);
        for _ in 1..copies {
            mats.push(match &one {
                Matrix::Ggml(t, b) => Matrix::Ggml(*t, b.clone()),
                Matrix::Awq(a) => Matrix::Awq(a.clone()),
            });
        }
        mats.push(one);
        let t = op.tokens();
        let mut rng = ChaCha8Rng::seed_from_u64(12);
        let x = (0..t * cols).map(|_| rng.gen::<f32>() - 0.5).collect();
        Ok(Product {
            mats,
            rows,
            cols,
            t,
            x,
            y: vec![0f32; t * rows],
            next: 0,
        })
    }

    /// Bytes of one matrix.
    pub fn matrix_bytes(&self) -> usize {
        self.mats[0].bytes()
    }

    /// Copies in the working set.
    pub fn copies(&self) -> usize {
        self.mats.len()
    }

    /// Runs the product on the next copy, on the calling rayon pool.
    pub fn run(&mut self, path: Path) -> Result<(), String> {
        let m = &self.mats[self.next % self.mats.len()];
        self.next += 1;
        let (rows, cols, t) = (self.rows, self.cols, self.t);
        match m {
            Matrix::Ggml(ty, w) => {
                kernels::matmul::matmul_with(path, *ty, w, rows, cols, &self.x, t, &mut self.y)
                    .map_err(|e| e.to_string())
            }
            Matrix::Awq(a) => {
                a.matmul(&self.x, t, &mut self.y);
                Ok(())
            }
        }
    }
}

/// Times `op` of `format` at `shape` on `path` with `threads` threads, against the streaming
/// read bandwidth `bandwidth_gbs` measured on the same thread count.
pub fn measure(
    format: Format,
    shape: &Shape,
    op: Op,
    path: Path,
    threads: usize,
    budget: Budget,
    bandwidth_gbs: f64,
) -> Result<Measurement, String> {
    let mut p = Product::new(format, shape, op, budget.working_set_bytes)?;
    let (mb, copies, t) = (p.matrix_bytes(), p.copies(), op.tokens());
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| e.to_string())?;
    let mut best = f64::INFINITY;
    pool.install(|| -> Result<(), String> {
        // Warm-up (page faults, pool start): decode touches every copy once, as the timed
        // rounds will; prefill runs one product (it is compute-bound, and one pass over all
        // copies would cost more than the measurement).
        for _ in 0..if t == 1 { copies } else { 1 } {
            p.run(path)?;
        }
        for _ in 0..budget.rounds.max(1) {
            let start = Instant::now();
            let mut n = 0usize;
            while n == 0 || start.elapsed().as_secs_f64() < budget.min_round_s {
                p.run(path)?;
                n += 1;
            }
            best = best.min(start.elapsed().as_secs_f64() / n as f64);
        }
        Ok(())
    })?;
    std::hint::black_box(&p.y);
    let weight_gbs = mb as f64 / best / 1e9;
    Ok(Measurement {
        ty: format.to_string(),
        op: op.to_string(),
        shape: shape.name.clone(),
        rows: shape.rows,
        cols: shape.cols,
        path: path_name(format, path),
        threads,
        working_set_bytes: (mb * copies) as u64,
        matrix_bytes: mb as u64,
        time_s: best,
        weight_gbs,
        percent_of_bandwidth: if bandwidth_gbs > 0.0 {
            100.0 * weight_gbs / bandwidth_gbs
        } else {
            0.0
        },
        gflops: 2.0 * (shape.rows * shape.cols * t) as f64 / best / 1e9,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_names_round_trip() {
        for f in Format::all() {
            assert_eq!(f.to_string().parse::<Format>().unwrap(), f);
        }
        assert_eq!("q4_k".parse::<Format>(), Ok(Format::Ggml(GgmlType::Q4K)));
        assert_eq!(Format::Ggml(GgmlType::IQ4XS).to_string(), "IQ4_XS");
        assert!("Q7_K".parse::<Format>().is_err());
        assert_eq!(Format::all().len(), 18);
    }

    #[test]
    fn e2b_shapes() {
        let s = shapes(&variant_config(Variant::E2B));
        let find = |n: &str| s.iter().find(|x| x.name == n).map(|x| (x.rows, x.cols));
        assert_eq!(find("attn_q"), Some((2048, 1536)));
        assert_eq!(find("attn_kv"), Some((256, 1536)));
        assert_eq!(find("attn_q_full"), Some((4096, 1536)));
        assert_eq!(find("attn_o_full"), Some((1536, 4096)));
        assert_eq!(find("ffn_up"), Some((6144, 1536)));
        assert_eq!(find("ffn_down_wide"), Some((1536, 12288)));
        assert_eq!(find("output"), Some((262_144, 1536)));
        assert_eq!(find("expert_down"), None);
        let a = shapes(&variant_config(Variant::A26B));
        let find = |n: &str| a.iter().find(|x| x.name == n).map(|x| (x.rows, x.cols));
        assert_eq!(find("expert_gate_up"), Some((1408, 2816)));
        assert_eq!(find("expert_down"), Some((2816, 704)));
        assert_eq!(find("attn_kv_full"), Some((1024, 2816)));
    }
}
