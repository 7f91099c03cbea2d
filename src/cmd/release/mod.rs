//! `g4q release`: a whole verified release in one command: every file of the release written
//! atomically, all of them verified in one pass over the evaluation text, one report per file and
//! a combined one, the Hugging Face model card, `SHA256SUMS` and `release.json`.
//!
//! It lives in the binary rather than in `quantize` because it glues commands together: the
//! imatrix and AWQ runs with their progress bars (`cmd::imatrix`, `cmd::awq`), the gate
//! configuration of `g4q verify`, and the file writers of `convert`. Its own logic is small and
//! split by concern:
//!
//! - [`recipe`]: the options that define a release, and the header every part records;
//! - [`outputs`]: the list of files a recipe makes, their names, and the partition into shards;
//! - [`state`]: the per-output records that make a run resumable;
//! - [`build`]: making one output;
//! - [`check`]: the one verification pass and its reports;
//! - [`finish`]: combined report, `release.json`, `SHA256SUMS`, model card ([`card`]);
//! - [`shard`]: `--plan`, `--shard I/N`, `--merge`.
//!
//! A run is a sequence of idempotent steps, each finished by an atomic write: build the outputs
//! that are not up to date, verify those without a current report, then assemble. A run killed
//! at any point leaves complete files (and at worst an output without its state record, which
//! the next run makes again); a re-run redoes only what is missing.

mod build;
mod card;
mod check;
mod devices;
mod finish;
mod outputs;
mod recipe;
mod shard;
mod state;

use std::path::{Path, PathBuf};

use anyhow::Context;
use convert::output::{check_target, Kind};

use super::awq::AwqArgs;
use super::mix_args::ImatrixArg;
use super::usage;
use outputs::Output;
use recipe::{Header, Recipe};

/// The GGUF types of a release when `--types` is not given: llama.cpp's usual ladder.
pub const DEFAULT_TYPES: &str = "Q8_0,Q6_K,Q5_K_M,Q4_K_M,IQ4_XS,Q3_K_M,Q2_K";

/// Release formats (`--formats`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum FormatArg {
    /// One GGUF file per `--types` entry.
    Gguf,
    /// The AWQ int4 compressed-tensors folder (needs --data).
    Awq,
    /// The ONNX release folder (`--onnx-type`).
    Onnx,
}

/// What `--plan` prints.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlanFormat {
    /// A GitHub Actions `strategy.matrix` (JSON, one line).
    Github,
    /// A Kubernetes Indexed Job manifest (YAML).
    K8s,
}

/// Flags of `g4q release`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The checkpoint folder (config.json, safetensors, tokenizer.json).
    #[arg(required_unless_present = "merge")]
    pub model: Option<PathBuf>,
    /// The release folder (created if needed; a re-run into it resumes).
    #[arg(long)]
    pub out: PathBuf,
    /// File name prefix (`NAME-Q4_K_M.gguf`); default: the checkpoint folder's name.
    #[arg(long)]
    pub name: Option<String>,
    /// GGUF types, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = DEFAULT_TYPES, value_parser = parse_ftype)]
    pub types: Vec<quantize::FileType>,
    /// Formats to release, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "gguf")]
    pub formats: Vec<FormatArg>,
    /// Importance matrix for the GGUF files: `auto` computes it from --data (once, shipped as
    /// imatrix.gguf); a FILE (llama.cpp's GGUF imatrix or .dat) is shipped as imatrix.gguf.
    #[arg(long, value_name = "FILE|auto", value_parser = super::mix_args::parse_imatrix)]
    pub imatrix: Option<ImatrixArg>,
    /// Calibration text for `--imatrix auto`, `--awq` and `--formats awq`.
    #[arg(long, value_name = "FILE.txt")]
    pub data: Option<PathBuf>,
    /// `--imatrix auto`: tokens per calibration chunk (llama-imatrix `-c`).
    #[arg(long, default_value_t = 512, value_name = "N")]
    pub imatrix_ctx: usize,
    /// `--imatrix auto`: at most N calibration chunks (default: all the text fills).
    #[arg(long, value_name = "N")]
    pub imatrix_chunks: Option<usize>,
    /// Fold AWQ scales (searched on --data) into the weights before the GGUF k-quants; the
    /// imatrix is then computed on the scaled weights, as `g4q convert --awq` does.
    #[arg(long)]
    pub awq: bool,
    #[command(flatten)]
    pub awq_args: AwqArgs,
    /// Ship the vision/audio projector as mmproj-NAME-F16.gguf (what `g4q convert --mmproj`
    /// writes), for llama.cpp's multimodal tools. On by default when config.json has a
    /// vision_config; this flag makes a checkpoint without towers an error.
    #[arg(long, conflicts_with = "no_mmproj")]
    pub mmproj: bool,
    /// Leave the projector out of a multimodal checkpoint's release (text only).
    #[arg(long)]
    pub no_mmproj: bool,
    /// The projector's type: F16 (default), BF16, F32 or Q8_0 (llama.cpp converter's
    /// `--outtype`; norms, biases and convolutions stay F32 as it writes them).
    #[arg(long, value_name = "TYPE", value_parser = parse_mmproj_type)]
    pub mmproj_type: Option<convert::mmproj::OutType>,
    /// `--formats onnx`: the weight type (f32, f16, int8, int4).
    #[arg(long, default_value = "int4", value_parser = parse_onnx_type)]
    pub onnx_type: quantize::onnx_release::OnnxType,
    /// Evaluation text for the verification pass (default: the bundled data/eval.txt).
    #[arg(long, value_name = "TEXT")]
    pub eval: Option<PathBuf>,
    /// Verification: tokens per chunk (llama-perplexity `-c`).
    #[arg(long, default_value_t = 512)]
    pub ctx: usize,
    /// Verification: at most this many chunks (default: every whole chunk of the text).
    #[arg(long)]
    pub chunks: Option<usize>,
    /// Verification: skip the per-layer hidden-state errors in the reports.
    #[arg(long)]
    pub no_layer_errors: bool,
    /// Gates on every verified file, as `g4q verify` takes them.
    #[command(flatten)]
    pub gates: super::verify::GateArgs,
    /// `quantized_by` in the model card.
    #[arg(long, default_value = "g4q")]
    pub quantized_by: String,
    /// Worker threads (default: all cores). No output depends on it.
    #[arg(long, value_parser = super::threads::parse)]
    pub threads: Option<usize>,
    /// Print release.json on stdout when done.
    #[arg(long)]
    pub json: bool,
    /// Print a job matrix that splits the release over --shards workers, and do nothing else.
    #[arg(long, requires = "shards", conflicts_with_all = ["shard", "merge"])]
    pub plan: bool,
    /// `--plan`: the number of workers.
    #[arg(long, value_name = "N", requires = "plan")]
    pub shards: Option<usize>,
    /// `--plan`: GitHub Actions matrix (JSON) or Kubernetes Indexed Job (YAML).
    #[arg(long, value_enum, default_value = "github", requires = "plan")]
    pub format: PlanFormat,
    /// `--plan --format k8s`: the container image that has g4q.
    #[arg(long, default_value = "ghcr.io/g4q/g4q:latest", requires = "plan")]
    pub image: String,
    /// Make and verify only shard I of N (0-based) into --out, for `--merge`.
    #[arg(long, value_name = "I/N", value_parser = shard::parse_shard, conflicts_with = "merge")]
    pub shard: Option<(usize, usize)>,
    /// Assemble the parts written by `--shard` runs into --out (no MODEL needed).
    #[arg(long, value_name = "PART", num_args = 1.., conflicts_with = "model")]
    pub merge: Vec<PathBuf>,
}

fn parse_ftype(s: &str) -> Result<quantize::FileType, String> {
    s.parse()
}

fn parse_mmproj_type(s: &str) -> Result<convert::mmproj::OutType, String> {
    s.parse::<quantize::FileType>()
        .ok()
        .and_then(|t| super::mmproj::projector_type(t).ok())
        .ok_or_else(|| format!("'{s}' is not F16, BF16, F32 or Q8_0"))
}

fn parse_onnx_type(s: &str) -> Result<quantize::onnx_release::OnnxType, String> {
    quantize::onnx_release::OnnxType::parse(s)
        .ok_or_else(|| format!("'{s}' is not f32, f16, int8 or int4"))
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if !args.merge.is_empty() {
        return shard::merge(&args.merge, &args.out, args.json);
    }
    let model = args
        .model
        .clone()
        .ok_or_else(|| usage("MODEL is required (except with --merge)"))?;
    let recipe = Recipe::from_args(&args, &model)?;
    if args.plan {
        let shards = args.shards.unwrap_or(1);
        let out = shard::plan(&recipe, &args, shards)?;
        print!("{out}");
        return Ok(());
    }
    let inputs: Vec<&Path> = [
        Some(model.as_path()),
        args.data.as_deref(),
        args.eval.as_deref(),
        args.gates.config.as_deref(),
        match &args.imatrix {
            Some(ImatrixArg::File(p)) => Some(p.as_path()),
            _ => None,
        },
    ]
    .into_iter()
    .flatten()
    .collect();
    check_target(&args.out, Kind::Folder, &inputs)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let pool = super::threads::pool(args.threads)?;
    pool.install(|| make(&args, &model, &recipe))
}

/// Builds and verifies this run's outputs (all, or one shard's), then assembles the release
/// (or, for a shard, writes its part record).
fn make(args: &Args, model: &Path, recipe: &Recipe) -> anyhow::Result<()> {
    let header = Header::new(model, recipe)?;
    let all = outputs::list(recipe);
    let mine: Vec<Output> = match args.shard {
        Some((i, n)) => outputs::shard(&all, i, n)?,
        None => all.clone(),
    };
    let mut builder = build::Builder::new(model, &args.out, recipe, &header)?;
    for o in &mine {
        builder.ensure(o)?;
    }
    drop(builder); // the AWQ-scaled scratch checkpoint, if any, goes now
    check::verify_pending(model, &args.out, recipe, &header, &mine)?;
    match args.shard {
        Some((i, n)) => shard::write_part(&args.out, &header, i, n, &mine),
        None => finish::assemble(&args.out, &header, &all, args.json),
    }
}
